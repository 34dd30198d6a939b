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
    assert "no_face.mp4: yields no valid snippet" in err and "none with a face" in err
    assert "missing.mp4" in err and "error:" in err
    # Asked for: inputs without a valid snippet are skipped with a warning.
    lst.write_text(f"{videos / 'no_face.mp4'}\n")
    assert main(["extract", str(lst), "--out", str(tmp_path / "o"), "--quiet", "--skip-empty"]) == 0
    assert "warning: skipped: " in capsys.readouterr().err


def test_inputs_that_yield_no_snippet_are_named_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A 1-frame clip and a PNG renamed .mp4: extract, and the dataset features train and eval
    read, fail naming the file (before: exit 0 with an empty result, then a torch error)."""
    import cv2

    from engine.data import load_dataset
    from engine.data.features import dataset_features
    from stream.errors import SourceEmpty

    media = tmp_path / "videos"
    media.mkdir()
    frame = np.full((120, 160, 3), 128, np.uint8)
    writer = cv2.VideoWriter(str(media / "one.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (160, 120))
    writer.write(frame)
    writer.release()
    cv2.imwrite(str(media / "picture.png"), frame)
    (media / "picture.png").rename(media / "picture.mp4")
    for name in ("one.mp4", "picture.mp4"):
        code = main(["extract", str(media / name), "--out", str(tmp_path / "o"), "--quiet"])
        err = capsys.readouterr().err
        assert code in (1, 2) and f"{media / name}: " in err and "error:" in err, err
        assert not list((tmp_path / "o").rglob(f"*{name}.npz"))  # nothing empty was cached
    annotations = tmp_path / "annotations.csv"
    annotations.write_text("video,subject,onset,apex,offset,type\none,p1,,,,\n")
    with pytest.raises(SourceEmpty, match=r"videos/one\.mp4: yields no snippet"):
        dataset_features(load_dataset("csv", annotations), media, tmp_path / "f")


def test_train_and_eval_name_an_empty_video_or_skip_it_when_asked(
    tmp_path: Path, videos: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    """A dataset with a video that yields no snippet: train fails naming it before any training,
    or, with --skip-empty, trains on the rest and warns; eval does the same."""
    import cv2

    media = tmp_path / "videos"
    media.mkdir()
    shutil.copy(videos / "single_face.mp4", media / "good.mp4")
    writer = cv2.VideoWriter(str(media / "one.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (160, 120))
    writer.write(np.full((120, 160, 3), 128, np.uint8))
    writer.release()
    annotations = tmp_path / "annotations.csv"
    annotations.write_text("video,subject,onset,apex,offset,type\ngood,p1,10,20,40,MaE\none,p2,,,,\n")
    common = [str(annotations), "--features", str(tmp_path / "f"), "--quiet"]
    out = tmp_path / "run"
    code = main(["train", *common, "--method", "gim", "--epochs", "1", "--out", str(out)])
    err = capsys.readouterr().err
    assert code != 0 and f"{media / 'one.mp4'}: yields no snippet" in err, err
    assert "Traceback" not in err and not out.exists()  # refused before training, nothing saved
    code = main(["train", *common, "--method", "gim", "--epochs", "1", "--out", str(out), "--skip-empty"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert f"skipped (--skip-empty): {media / 'one.mp4'}: yields no snippet" in caplog.text
    assert (out / "bundle.json").is_file()
    caplog.clear()
    code = main(["eval", str(out), *common, "--out", str(tmp_path / "ev"), "--subjects", "p1", "p2"])
    err = capsys.readouterr().err
    assert code != 0 and f"{media / 'one.mp4'}: yields no snippet" in err and "Traceback" not in err, err
    code = main(
        ["eval", str(out), *common, "--out", str(tmp_path / "ev"), "--subjects", "p1", "p2", "--skip-empty"]
    )
    capsys.readouterr()
    assert code == 0 and "skipped (--skip-empty)" in caplog.text


def test_a_binary_list_file_is_refused_with_its_name(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    lst = tmp_path / "videos.txt"
    lst.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)))  # a video named .txt
    assert main(["extract", str(lst), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"error: {lst}: not a list file: binary data" in err and "Traceback" not in err
    latin = tmp_path / "latin.txt"
    latin.write_bytes("vidéo.mp4\n".encode("latin-1"))
    assert main(["extract", str(latin), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert f"{latin}: not a list file: not UTF-8 text" in capsys.readouterr().err


def three_snippets(config: FeatureConfig):
    """An extraction result of three valid snippets for `config` (what the cache stores)."""
    from stream.pipeline import Extraction

    dm, dg = feature_dims(config)
    return Extraction(
        np.ones((3, dm), np.float32),
        np.ones((3, dg), np.float32),
        np.ones(3, bool),
        np.arange(3.0),
        [],
        config,
    )


def test_the_feature_cache_tells_apart_names_that_differ_in_non_ascii_or_spaces(tmp_path: Path) -> None:
    import os

    from stream.extract_cache import FeatureCache

    config = FeatureConfig()
    cache = FeatureCache(tmp_path / "out", config)
    names = ["café 1.mp4", "cafè 1.mp4", "caf_ 1.mp4", "café_1.mp4"]
    for k, name in enumerate(names):
        path = tmp_path / name
        path.write_bytes(bytes([k]) * 4096)  # same size
        os.utime(path, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))  # same mtime
    first = tmp_path / names[0]
    result = three_snippets(config)
    npz = cache.store(first, result)
    assert cache.lookup(first) == npz
    for name in names[1:]:
        assert cache.lookup(tmp_path / name) is None, name
    # The same name with other content of the same size and mtime is not the cached file either.
    first.write_bytes(b"\xff" * 4096)
    os.utime(first, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    assert cache.lookup(first) is None


def test_a_cache_of_the_earlier_layout_is_taken_over_only_for_its_own_source(tmp_path: Path) -> None:
    """Files keyed and stamped the earlier way (path's last parts; size and mtime) are renamed and
    restamped for the source their record names, never for another under the same readable name."""
    import json
    import os
    import re

    from stream.extract_cache import FeatureCache

    config = FeatureConfig()
    cache = FeatureCache(tmp_path / "out", config)
    result = three_snippets(config)
    video, twin = tmp_path / "a" / "v 1.mp4", tmp_path / "a" / "v_1.mp4"
    video.parent.mkdir()
    for p in (video, twin):
        p.write_bytes(b"x" * 4096)
    stored = cache.store(video, result)
    new_npz, new_meta = cache.paths(video)
    legacy = re.sub(r"[^A-Za-z0-9._-]+", "_", "__".join(video.resolve().parts[-3:])).strip("_")
    info = json.loads(new_meta.read_text())
    info["stamp"] = {"size": float(video.stat().st_size), "mtime": video.stat().st_mtime}
    info["source"] = str(video.resolve())
    os.replace(stored, cache.folder / f"{legacy}.npz")
    (cache.folder / f"{legacy}.json").write_text(json.dumps(info))
    new_meta.unlink()
    assert cache.lookup(twin) is None  # the same readable name, another source
    assert cache.lookup(video) == new_npz and new_npz.exists()
    assert not (cache.folder / f"{legacy}.npz").exists()
    assert cache.lookup(video) == new_npz  # restamped: current in the new layout


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


@pytest.mark.slow  # 10 s or more: run with -m slow
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
    assert report["latency_budget_s"] == {"me": 0.5, "mae": 1.5}
    assert set(report["event_latency"]) == {"me", "mae", "lookahead_s", "processing_s"}
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
    assert again["event_latency"]["me"]["events"] + again["event_latency"]["mae"]["events"] >= 0
    assert again["event_latency"]["processing_s"] == report["event_latency"]["processing_s"]
    assert set(again["folds"]) == {"ann", "bob"} and again["group"] == "identity"
    assert again["shared_identities"] == {}
    # --retune chooses each fold's point again on its training identity and reports that
    # identity's F1 at the new point (the number a choice between retuned runs may use).
    retune = ["--retune", "min_score=0.1,0.5", "--retune", "offset_shift_s=[0,0],[-0.1,0.2]"]
    assert main(["eval", str(out), *common, *retune, "--out", str(tmp_path / "rt")]) == 0
    retuned = json.loads((tmp_path / "rt" / "eval_report.json").read_text())
    assert set(retuned["operating_points"]) == set(retuned["train_f1"]) == {"ann", "bob"}
    assert all(p["min_score"] in (0.1, 0.5) for p in retuned["operating_points"].values())
    assert all(p["offset_shift_s"] in ([0, 0], [-0.1, 0.2]) for p in retuned["operating_points"].values())
    assert all(0.0 <= f <= 1.0 for f in retuned["train_f1"].values())
    # --every-video: each fold network scores every video, its own training video included,
    # and the counts pool over the networks; a fold's own held-out video keeps its counts.
    assert main(["eval", str(out), *common, "--every-video", "--out", str(tmp_path / "all")]) == 0
    every = json.loads((tmp_path / "all" / "eval_report.json").read_text())
    videos = again["report"]["videos"]
    assert set(every["report"]["videos"]) == {f"{f}/{v}" for f in ("ann", "bob") for v in videos}
    own = {"ann": "s01", "bob": "s02"}
    for fold, subject in own.items():
        video = next(v for v in again["report"]["videos"] if v.startswith(subject))
        assert every["report"]["videos"][f"{fold}/{video}"] == again["report"]["videos"][video]
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
    # A weak method trained on everything, as an ensemble of two networks, gives a bundle that
    # carries its operating point.
    model = tmp_path / "gim.mespot"
    args = ["train", *common[:3], "--method", "gim", "--epochs", "2", "--ensemble", "2", "--out", str(model)]
    args.append("--quiet")
    assert main(args) == 0
    manifest = json.loads((model / "bundle.json").read_text())
    assert manifest["train_config"]["method"] == "gim"
    assert manifest["train_config"]["ensemble"] == 2
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
    import engine.cli.train
    import engine.data.features
    import engine.train
    from engine.cli import options
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
        assert options.lookahead_option(ns, options.feature_config(ns)) == want

    # The value reaches the network configuration (hence run.json and bundle.json).
    seen = {}

    def fake_train(videos, config, progress=True):
        seen["network"] = config.network
        raise MespotError("stop here")

    dataset = types.SimpleNamespace(summary=lambda: "empty", videos=[], name="empty")
    monkeypatch.setattr(engine.cli.train, "load_annotations", lambda a: (dataset, tmp_path))
    monkeypatch.setattr(engine.data.features, "dataset_features", lambda *a, **k: {})
    monkeypatch.setattr(engine.train, "train", fake_train)
    assert main([*args, "--lookahead-s", "0.2667", "--method", "gim"]) == 2
    assert seen["network"].lookahead == 2 and seen["network"].causal


def test_extract_reads_an_annotation_file_as_train_does(
    tmp_path: Path, videos: Path, capsys: pytest.CaptureFixture
) -> None:
    """`mespot extract annotations.csv` extracts each annotated video once, from the videos folder
    beside it (the layout `mespot synth` writes), into the cache `mespot train` reads; a video
    the file names but the folder lacks is an error naming it."""
    from engine.data import load_dataset
    from engine.data.features import dataset_features

    media = tmp_path / "videos"
    media.mkdir()
    shutil.copy(videos / "single_face.mp4", media / "good.mp4")
    annotations = tmp_path / "annotations.csv"
    annotations.write_text("video,subject,onset,apex,offset,type\ngood,p1,10,20,40,MaE\ngood,p1,50,,60,ME\n")
    assert main(["extract", str(annotations), "--out", str(tmp_path / "f"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("good.mp4: ") == 1 and "snippets" in err, err
    dataset_features(load_dataset("csv", annotations), media, tmp_path / "f")  # all cached
    assert "extracting" not in capsys.readouterr().err
    annotations.write_text("video,subject,onset,apex,offset,type\nabsent,p1,10,20,40,MaE\n")
    assert main(["extract", str(annotations), "--out", str(tmp_path / "f"), "--quiet"]) != 0
    err = capsys.readouterr().err
    assert "absent" in err and "error:" in err and "Traceback" not in err, err


def test_train_refuses_a_bad_select_before_reading_data(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = [
        "train",
        str(tmp_path / "absent.csv"),
        "--features",
        str(tmp_path / "f"),
        "--out",
        str(tmp_path / "m"),
    ]
    capsys.readouterr()
    assert main([*args, "--select", "augment=0.5"]) == 2
    err = capsys.readouterr().err
    assert "--select 'augment=0.5': the values must be a JSON list" in err and "absent.csv" not in err
    assert main([*args, "--select", "augment=[0, 3]"]) == 2
    assert "--select candidate augment=3" in capsys.readouterr().err


def test_a_command_builds_only_its_own_parser_and_extract_does_not_import_torch() -> None:
    from engine import cli

    assert cli.command_of(["-v", "extract", "x.mp4", "--out", "f"]) == "extract"
    assert cli.command_of(["--help"]) is None
    one = cli.build_parser("extract")
    assert one.parse_args(["extract", "x.mp4", "--out", "f"]).command == "extract"
    with pytest.raises(SystemExit):  # the other commands are not in the one-command parser
        one.parse_args(["train", "a.csv", "--features", "f", "--out", "o"])
    every = cli.build_parser(None)  # --help and a misspelt command see every command
    assert every.parse_args(["listen", "tcp://127.0.0.1:1"]).command == "listen"
    # `mespot extract` and `mespot live` start without torch (about 2 s of imports here)
    for command in ("extract", "live"):
        probe = (
            "import sys\nfrom engine.cli import main\n"
            f"try:\n    main(['{command}', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)"
        )
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
        assert out.stdout.strip().splitlines()[-1] == "False", command
