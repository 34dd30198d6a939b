"""`mespot extract --ray`: a local Ray cluster of two workers writes what a serial run writes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from engine.cli import main
from stream.config import FeatureConfig

pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[ray]')")


@pytest.mark.timeout(300)
def test_ray_extraction_equals_the_serial_run(tmp_path: Path, videos: Path, capsys) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("single_face.mp4", "face_noface.mov", "no_face.mp4"):
        shutil.copy(videos / name, inputs / name)
    listed = tmp_path / "videos.txt"
    listed.write_text("\n".join(str(p) for p in sorted(inputs.iterdir())) + "\n")
    serial, spread = tmp_path / "serial", tmp_path / "ray"
    assert main(["extract", str(listed), "--out", str(serial), "--quiet", "--skip-empty"]) == 0
    capsys.readouterr()
    code = main(["extract", str(listed), "--out", str(spread), "--quiet", "--ray", "--ray-cpus", "2"])
    err = capsys.readouterr().err
    # no_face.mp4 has no face: an error naming it, as in a serial run; the others are stored.
    assert code == 1 and "error: " in err and "no_face.mp4: yields no valid snippet" in err, err
    assert "ray: 3 input(s) on 2 CPUs" in err
    folder = FeatureConfig().digest()
    a = sorted((serial / folder).glob("*.npz"))
    b = sorted((spread / folder).glob("*.npz"))
    assert [p.name for p in a] == [p.name for p in b] and len(a) == 2
    for x, y in zip(a, b, strict=True):
        with np.load(x) as da, np.load(y) as db:
            assert sorted(da.files) == sorted(db.files)
            for key in da.files:
                assert np.array_equal(da[key], db[key]), (x.name, key)  # bit for bit
        ma, mb = (
            json.loads(x.with_suffix(".json").read_text()),
            json.loads(y.with_suffix(".json").read_text()),
        )
        assert ma["events"] == mb["events"] and ma["snippets"] == mb["snippets"]
    # A second run finds everything cached and starts no cluster.
    assert main(["extract", str(inputs / "single_face.mp4"), "--out", str(spread), "--quiet", "--ray"]) == 0
    assert "cached" in capsys.readouterr().err
