"""`mespot synth` end to end on a face it has never seen, and clear errors for bad faces."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import cv2
import pytest

from engine.cli.synth import add_parser as add_synth_parser
from stream.errors import ConfigError, MespotError, SourceCorrupt, SourceNotFound
from stream.synth.dataset import (
    CSV_COLUMNS,
    SYNTHSPOT_V1,
    annotation_rows,
    check_recipe_faces,
    plan_videos,
    recipe_from,
)
from stream.synth.identity import FaceNotFound, LandmarkDetector, find_face, load_face, load_faces


def synth(argv: list[str]) -> int:
    """Run the subcommand the way `mespot` does: a parser with its subparsers."""
    parser = argparse.ArgumentParser(prog="mespot")
    add_synth_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["synth", *argv])
    return args.func(args)


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


@pytest.mark.slow  # 10 s or more: run with -m slow
def test_synth_writes_a_small_dataset_from_an_unseen_face(
    astronaut_crop: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ds"
    argv = ["--faces", str(astronaut_crop), "--out", str(out), "--videos", "2", "--seconds", "6"]
    argv += ["--seed", "5", "--density", "60", "--workers", "1", "--quiet"]
    assert synth(argv) == 0
    printed = capsys.readouterr().out
    assert "expressions:" in printed and "background" in printed and "blinks" in printed

    header, rows = read_csv(out / "annotations.csv")
    assert header == list(CSV_COLUMNS) == ["video", "subject", "onset", "apex", "offset", "type", "fps"]
    assert rows, "density 60 per 100 s over 12 s should give expressions"
    videos = {r["video"] for r in rows} | {p.stem for p in (out / "videos").glob("*.mp4")}
    assert videos == {"s01_01", "s02_01"}
    for r in rows:
        onset, apex, offset = int(r["onset"]), int(r["apex"]), int(r["offset"])
        assert 0 <= onset <= apex <= offset < 180
        assert r["type"] in ("me", "mae") and r["fps"] == "30" and r["subject"] == r["video"][:3]
        assert ((offset - onset + 1) / 30 <= 0.5) == (r["type"] == "me")
    dheader, drows = read_csv(out / "distractors.csv")
    assert dheader == list(CSV_COLUMNS)
    assert {r["type"] for r in drows} <= {"blink", "head", "light"}

    # the annotation is the seeded timeline's, nothing else
    recipe = recipe_from(None, videos=2, seconds=6.0, seed=5, density=60.0)
    expected = [
        {k: str(v) for k, v in row.items()}
        for p in plan_videos(recipe)
        for row in annotation_rows(p.name, f"s{p.subject + 1:02d}", p.timeline)
    ]
    assert rows == expected

    stats = json.loads((out / "stats.json").read_text())
    assert stats["me"]["count"] + stats["mae"]["count"] == len(rows)
    assert stats["blink"]["count"] == sum(r["type"] == "blink" for r in drows)
    assert stats["subjects"] == 2 and stats["render"]["render_fps"] > 0
    assert [f["pose"]["yaw_deg"] for f in stats["faces"]] and all(
        abs(f["pose"]["yaw_deg"]) < 20 for f in stats["faces"]
    )  # the astronaut looks at the camera
    subjects = json.loads((out / "subjects.json").read_text())
    assert [s["spec"]["mirror"] for s in subjects] == [False, True]
    assert all(s["base_source"] == str(astronaut_crop) for s in subjects)

    cap = cv2.VideoCapture(str(out / "videos" / "s01_01.mp4"))
    n, ok = 0, True
    while ok:
        ok, img = cap.read()
        if ok:
            assert img.shape == (480, 640, 3)
            n += 1
    cap.release()
    assert n == 180


def test_an_image_without_a_face_is_a_clear_error(not_a_face: Path, tmp_path: Path) -> None:
    with pytest.raises(FaceNotFound, match=r"coffee\.png: no face found") as info:
        synth(["--faces", str(not_a_face), "--out", str(tmp_path / "x"), "--videos", "1", "--seconds", "2"])
    assert isinstance(info.value, MespotError) and info.value.source == str(not_a_face)
    assert not (tmp_path / "x" / "videos").exists()  # fails before rendering anything


def test_unreadable_and_missing_faces_name_the_file(tmp_path: Path) -> None:
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    with pytest.raises(SourceCorrupt, match=r"notes\.jpg"):
        load_faces([text])
    with pytest.raises(SourceNotFound, match=r"nowhere\.png"):
        load_faces([tmp_path / "nowhere.png"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceNotFound, match="no images"):
        load_faces([empty])


def test_a_tiny_face_is_refused(tmp_path: Path, bundled_face, detector: LandmarkDetector) -> None:
    small = cv2.resize(bundled_face.image, None, fx=0.12, fy=0.12, interpolation=cv2.INTER_AREA)
    canvas = cv2.copyMakeBorder(small, 200, 200, 200, 200, cv2.BORDER_REPLICATE)
    path = tmp_path / "tiny.png"
    cv2.imwrite(str(path), canvas)
    with pytest.raises(FaceNotFound, match=r"tiny\.png"):
        find_face(detector, load_face(path))


def test_the_benchmark_recipe_is_fixed(astronaut_crop: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="synthspot-v1"):
        check_recipe_faces(SYNTHSPOT_V1, load_faces([astronaut_crop]))
    with pytest.raises(ConfigError, match="contradicts recipe synthspot-v1"):
        synth(["--recipe", "synthspot-v1", "--seed", "1", "--out", str(tmp_path)])
    assert recipe_from(SYNTHSPOT_V1, seed=SYNTHSPOT_V1.seed, fps=30.0) is SYNTHSPOT_V1
    plans = plan_videos(SYNTHSPOT_V1)
    assert len(plans) == 24 and len({p.subject for p in plans}) == 12


def test_the_expression_size_is_part_of_the_recipe(tmp_path: Path) -> None:
    # every fixed recipe sizes by the photo, and says so by leaving the key out
    assert SYNTHSPOT_V1.expression_size == "photo" and "expression_size" not in SYNTHSPOT_V1.to_dict()
    unturned = recipe_from(None, videos=2, expression_size="unturned")
    assert unturned.to_dict()["expression_size"] == "unturned"
    with pytest.raises(ConfigError, match="expression_size='frontal'"):
        recipe_from(None, expression_size="frontal")
    with pytest.raises(ConfigError, match="contradicts recipe synthspot-v1"):
        synth(["--recipe", "synthspot-v1", "--expression-size", "unturned", "--out", str(tmp_path)])


def test_an_existing_dataset_is_not_overwritten_by_accident(tmp_path: Path) -> None:
    (tmp_path / "annotations.csv").write_text("video,subject,onset,apex,offset,type,fps\n")
    with pytest.raises(ConfigError, match="--force"):
        synth(["--out", str(tmp_path), "--videos", "1", "--seconds", "2"])
