"""`mespot extract`: outputs, cache keyed by the configuration, lists, bad inputs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.bundle import feature_dims
from engine.cli import main
from stream.config import FeatureConfig


def test_extract_the_bundled_clip_by_default(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["extract", "--out", str(tmp_path), "--quiet"]) == 0
    folder = tmp_path / FeatureConfig().digest()
    npz = next(folder.glob("*single_face.mp4.npz"))
    with np.load(npz) as data:
        n, valid = len(data["valid"]), int(data["valid"].sum())
        assert data["motion"].shape == (72 // FeatureConfig().hop_frames, feature_dims(FeatureConfig())[0])
        assert n == 18 and valid >= 14  # 72 frames; the first windows reach into the flow warm-up
    meta = json.loads(npz.with_suffix(".json").read_text())
    assert meta["snippets"] == n and meta["events"][0]["kind"] == "face_found"
    assert FeatureConfig.from_dict(json.loads((folder / "config.json").read_text())) == FeatureConfig()
    assert f"{n} snippets ({valid} valid" in capsys.readouterr().err


def test_cache_hit_and_new_config_folder(tmp_path: Path, videos: Path, capsys: pytest.CaptureFixture) -> None:
    clip = tmp_path / "clip.mp4"
    shutil.copy(videos / "single_face.mp4", clip)
    out = tmp_path / "out"
    assert main(["extract", str(clip), "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["extract", str(clip), "--out", str(out), "--quiet"]) == 0
    assert "cached" in capsys.readouterr().err
    # another configuration never reuses these features
    assert main(["extract", str(clip), "--out", str(out), "--quiet", "--flow-scales-s", "0.0667", "0.2"]) == 0
    assert "cached" not in capsys.readouterr().err
    assert len([p for p in out.iterdir() if p.is_dir()]) == 2


def test_dataset_list_with_a_bad_entry(tmp_path: Path, videos: Path, capsys: pytest.CaptureFixture) -> None:
    lst = tmp_path / "videos.txt"
    lst.write_text(f"# two clips and a missing one\n{videos / 'no_face.mp4'}\nmissing.mp4\n")
    assert main(["extract", str(lst), "--out", str(tmp_path / "o"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "no_face.mp4: " in err and "0 valid" in err
    assert "missing.mp4" in err and "error:" in err


def test_console_script_reports_a_bad_option(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", "extract", "--out", str(tmp_path), "--flow", "lk"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "flow='lk': choose one of" in proc.stderr


def test_plot_a_video_with_its_ground_truth(tmp_path: Path, videos: Path) -> None:
    clip = tmp_path / "clip.mp4"
    shutil.copy(videos / "single_face.mp4", clip)
    ann = tmp_path / "annotations.csv"
    ann.write_text("video,subject,onset,apex,offset,type\nclip,s1,20,26,35,mae\nclip,s1,50,53,58,me\n")
    png = tmp_path / "clip.png"
    args = [
        "plot",
        str(clip),
        "--out",
        str(png),
        "--annotations",
        str(ann),
        "--features",
        str(tmp_path / "f"),
    ]
    assert main([*args, "--quiet"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert main([*args, "--quiet", "--video", "other"]) == 2


def test_synth_then_train_leave_one_identity_out(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The whole researcher path on a tiny synthetic dataset: synth -> extract -> train --loso."""
    data = tmp_path / "synth"
    args = ["synth", "--out", str(data), "--videos", "2", "--subjects", "2", "--seconds", "8"]
    assert main([*args, "--seed", "3", "--density", "40", "--workers", "1", "--quiet"]) == 0
    out = tmp_path / "run"
    args = ["train", str(data / "annotations.csv"), "--features", str(tmp_path / "f"), "--loso"]
    # Both subjects are morphs of the one bundled face (subjects.json): one person, so
    # leave-one-identity-out (the default) has nothing to train on, and says so before extracting.
    capsys.readouterr()
    assert main([*args, "--epochs", "1", "--out", str(out), "--quiet"]) == 2
    assert "leave-one-identity-out needs at least 2 identities" in capsys.readouterr().err
    # subjects.json names each subject's person: two people, one subject each.
    subjects = json.loads((data / "subjects.json").read_text())
    for entry, person in zip(subjects, ("ann", "bob"), strict=True):
        entry["person"] = person
    (data / "subjects.json").write_text(json.dumps(subjects))
    assert main([*args, "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    assert "leave-one-identity-out over 2 identities" in capsys.readouterr().out
    report = json.loads((out / "loso_report.json").read_text())
    assert report["group"] == "identity" and report["protocol"] == "leave-one-identity-out"
    assert set(report["folds"]) == {"ann", "bob"}
    assert report["fold_subjects"] == {"ann": ["s01"], "bob": ["s02"]}
    assert report["train_config"]["method"] == "full"
    assert (out / "loso_predictions.csv").read_text().startswith("vid,pred_onset,pred_offset,type")
    assert sorted(p.name for p in (out / "folds").iterdir()) == ["ann.mespot", "bob.mespot"]
    meta = json.loads((out / "folds" / "ann.mespot" / "bundle.json").read_text())["metadata"]
    assert (meta["group"], meta["held_out"], meta["held_out_subjects"]) == ("identity", "ann", ["s01"])
    assert meta["train_subjects"] == ["s02"] and meta["held_out_subject"] == "s01"
    # `mespot eval` on the run re-scores each held-out identity with its fold's bundle and
    # reproduces the pooled counts the training run reported.
    common = [str(data / "annotations.csv"), "--features", str(tmp_path / "f"), "--quiet"]
    assert main(["eval", str(out), *common, "--out", str(tmp_path / "ev")]) == 0
    again = json.loads((tmp_path / "ev" / "eval_report.json").read_text())
    assert again["report"]["pooled"] == report["report"]["pooled"]
    assert set(again["folds"]) == {"ann", "bob"} and again["group"] == "identity"
    assert again["shared_identities"] == {}
    # The training-free baseline with subject folds names its folds by subject.
    assert main(["baseline", *common[:3], "--group", "subject", "--report", str(tmp_path / "bl")]) == 0
    assert "leave-one-subject-out over 2 subjects" in capsys.readouterr().out
    bl = json.loads((tmp_path / "bl" / "baseline_report.json").read_text())
    assert bl["group"] == "subject" and set(bl["folds"]) == {"s01", "s02"}
    # Told that both subjects are one person again, eval flags that each fold trained on the
    # held-out person's other variant.
    ann = data / "annotations.csv"  # an identity column wins over subjects.json
    rows = ann.read_text().splitlines()
    ann.write_text("\n".join([rows[0] + ",identity", *(r + ",one" for r in rows[1:])]) + "\n")
    assert main(["eval", str(out), *common, "--out", str(tmp_path / "ev1")]) == 0
    flagged = json.loads((tmp_path / "ev1" / "eval_report.json").read_text())
    assert flagged["shared_identities"] == {"ann": ["one"], "bob": ["one"]}
    # A weak method trained on everything gives a bundle that carries its operating point.
    model = tmp_path / "gim.mespot"
    args = ["train", *common[:3], "--method", "gim", "--epochs", "2", "--out", str(model), "--quiet"]
    assert main(args) == 0
    manifest = json.loads((model / "bundle.json").read_text())
    assert manifest["train_config"]["method"] == "gim"
    assert manifest["train_config"]["network"]["network"] == "gim"  # the paper's network by default
    assert manifest["operating_point"] is not None
    assert manifest["metadata"]["command"] == "mespot " + " ".join(args)  # how to make it again
    assert main(["eval", str(model), *common, "--subjects", "s02", "--out", str(tmp_path / "ev2")]) == 0
    scored = json.loads((tmp_path / "ev2" / "eval_report.json").read_text())["report"]["videos"]
    assert scored and all(video.startswith("s02") for video in scored)
    assert main(["eval", str(tmp_path), *common, "--out", str(tmp_path / "ev3")]) == 2  # not a run


def test_train_lookahead_option(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch) -> None:
    """`--lookahead-s` in seconds becomes NetworkConfig.lookahead in snippets of the feature
    configuration's hop; a value that is not a whole number of hops fails before any data is read."""
    import types

    import engine.cli as cli
    import engine.data.features
    import engine.train
    from stream.errors import MespotError

    args = [
        "train",
        str(tmp_path / "absent.csv"),
        "--features",
        str(tmp_path / "f"),
        "--out",
        str(tmp_path / "m"),
    ]
    capsys.readouterr()
    assert main([*args, "--lookahead-s", "0.1"]) == 2  # 0.75 hops of 4/30 s
    err = capsys.readouterr().err
    assert (
        "error: --lookahead-s=0.1 s is 0.750 snippets of hop_s=0.133333 s: it must be a whole number" in err
    )
    assert "absent.csv" not in err  # refused before the annotations are read
    assert main([*args, "--lookahead-s", "0.4", "--non-causal"]) == 2
    assert "a look-ahead applies to the causal network only" in capsys.readouterr().err
    assert main([*args, "--lookahead-s", "-1"]) == 2
    assert "--lookahead-s=-1.0: must be a number of seconds >= 0" in capsys.readouterr().err

    parser = cli.build_parser()
    for extra, want in (
        ([], 0),
        (["--lookahead-s", "0.4"], 3),
        (["--lookahead-s", "0.1", "--hop-s", "0.1"], 1),
    ):
        ns = parser.parse_args([*args, *extra])
        assert cli.lookahead_option(ns, cli.feature_config(ns)) == want

    # The value reaches the network configuration (hence run.json and bundle.json).
    seen = {}

    def fake_train(videos, config, progress=True):
        seen["network"] = config.network
        raise MespotError("stop here")

    dataset = types.SimpleNamespace(summary=lambda: "empty", videos=[], name="empty")
    monkeypatch.setattr(cli, "load_annotations", lambda a: (dataset, tmp_path))
    monkeypatch.setattr(engine.data.features, "dataset_features", lambda *a, **k: {})
    monkeypatch.setattr(engine.train, "train", fake_train)
    assert main([*args, "--lookahead-s", "0.2667", "--method", "gim"]) == 2
    assert seen["network"].lookahead == 2 and seen["network"].causal
