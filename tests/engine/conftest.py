"""Fixtures shared by the engine tests: small untrained bundles."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from engine.bundle import save_bundle
from engine.models import NetworkConfig, build_ensemble
from engine.train import TrainConfig
from stream.config import FeatureConfig

# single-scale flow without eye openness: 153 motion + 153 geometry inputs, a small network
SMALL_FEATURES = FeatureConfig(flow_scales_s=(0.1,), eye_openness=False)


def small_bundle(
    folder: Path,
    name: str = "mcwes",
    causal: bool = True,
    *,
    seed: int = 0,
    lookahead: int = 0,
    members: int = 1,
    **save: object,
) -> Path:
    """A bundle of an untrained network (`name`: mcwes or gim, 16 wide, seeded), or of an ensemble
    of `members` of them, for the `full` method on `SMALL_FEATURES`; `save` goes to `save_bundle`
    (window, operating_point, metadata, overwrite)."""
    torch.manual_seed(seed)
    network = build_ensemble(
        NetworkConfig(network=name, embed_dim=16, causal=causal, lookahead=lookahead), members
    ).eval()
    config = TrainConfig(network=network.config, method="full", epochs=1, ensemble=members)
    return save_bundle(folder, network, config, SMALL_FEATURES, **save)


@pytest.fixture(scope="session")
def make_bundle() -> Callable[..., Path]:
    """`small_bundle`: makes a small untrained bundle in a folder."""
    return small_bundle


@pytest.fixture(scope="session", params=["mcwes", "gim", "gim-ensemble"])
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small untrained causal bundle of each network, and an ensemble of three (scores
    averaged), with its FP32 ONNX scorer, exported once for the whole session (tests read it;
    one that changes a bundle copies it first)."""
    from engine.export import export

    name, _, ensemble = request.param.partition("-")
    folder = small_bundle(
        tmp_path_factory.mktemp(request.param) / f"{request.param}.mespot", name, members=3 if ensemble else 1
    )
    path = export(folder, "onnx")
    assert path == folder / "scorer.onnx"
    return folder
