"""Shared data for the calibration tests: a tiny synthetic dataset and a bundle trained on it.

Built once per session through the real command line (``mespot synth``, ``mespot train``): four
10-second videos of two subjects with five MEs and six MaEs, and the ``full`` method trained for
20 epochs on all of them (its metadata records both subjects as training subjects). Tests copy
the bundle before changing it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from engine.cli import main


@dataclass(frozen=True)
class Synth:
    """The synthetic dataset: its annotation file and the feature cache of its videos."""

    annotations: Path
    features: Path
    bundle: Path  # trained on every video; never modified (copy it)


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    root = tmp_path_factory.mktemp("calibration-synth")
    data, features, bundle = root / "synth", root / "features", root / "model.mespot"
    args = ["synth", "--out", str(data), "--videos", "4", "--subjects", "2", "--seconds", "10"]
    args += ["--seed", "5", "--density", "50", "--me-share", "0.5", "--workers", "1", "--quiet"]
    assert main(args) == 0
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny network, busy CPU: one thread is faster
    try:
        args = ["train", str(data / "annotations.csv"), "--features", str(features)]
        assert main([*args, "--epochs", "20", "--out", str(bundle), "--quiet"]) == 0
    finally:
        torch.set_num_threads(before)
    return Synth(data / "annotations.csv", features, bundle)


@pytest.fixture
def bundle_copy(synth: Synth, tmp_path: Path) -> Path:
    """A private copy of the trained bundle."""
    return Path(shutil.copytree(synth.bundle, tmp_path / "model.mespot"))
