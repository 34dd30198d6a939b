"""Model bundles: round trip, integrity (hashes, format version), feature checks, no pickle."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.bundle import (
    BUNDLE_FORMAT,
    MANIFEST,
    WEIGHTS,
    BundleError,
    FeatureMismatchError,
    add_file,
    default_window,
    load_bundle,
    min_window,
    save_bundle,
    sha256_file,
)
from engine.methods import METHODS
from engine.models import NetworkConfig, SpottingNetwork, build_network
from engine.proposals import ProposalConfig
from engine.train import TrainConfig
from stream.config import FeatureConfig
from stream.errors import ConfigError, MespotError

# single-scale flow without eye openness: 153 motion + 153 geometry inputs, a small network
FEATURES = FeatureConfig(flow_scales_s=(0.1,), eye_openness=False)


def small_network(name: str = "mcwes", causal: bool = True, seed: int = 0) -> SpottingNetwork:
    torch.manual_seed(seed)
    return build_network(NetworkConfig(network=name, embed_dim=16, causal=causal)).eval()


def rewrite_manifest(folder: Path, **changes) -> None:
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest.update(changes)
    (folder / MANIFEST).write_text(json.dumps(manifest))


class Payload:
    """An arbitrary object: pickling it into the weights must be refused on load."""

    def __init__(self) -> None:
        self.value = 1


@pytest.mark.parametrize("name", ["mcwes", "gim"])
def test_round_trip(tmp_path: Path, name: str) -> None:
    network = small_network(name)
    config = TrainConfig(
        network=network.config, method="full", epochs=1, method_options={"label_smoothing": 0.1}
    )
    point = ProposalConfig(thresholds=(0.3, 0.5), min_score=0.2, oic_source="actionness", type_rule="class")
    metadata = {
        "dataset": "SynthSpot-v1",
        "subjects": ["s01", "s02"],
        "command": "mespot train ...",
        "date": "2025-01-01",
        "metrics": {"f1": np.float32(0.5), "tp": np.int64(3)},  # numpy scalars become JSON numbers
    }
    folder = save_bundle(
        tmp_path / "m.mespot", network, config, FEATURES, operating_point=point, metadata=metadata
    )
    assert sorted(p.name for p in folder.iterdir()) == [MANIFEST, WEIGHTS]

    bundle = load_bundle(folder)
    assert bundle.path == folder
    assert bundle.train_config == config
    assert bundle.network_config == network.config
    assert bundle.method_name == "full" and dict(bundle.method_options) == {"label_smoothing": 0.1}
    assert bundle.feature_config == FEATURES and bundle.feature_digest == FEATURES.digest()
    assert bundle.operating_point == point and bundle.proposal_config() == point
    assert bundle.classes == ("me", "mae")
    assert bundle.receptive_field == network.receptive_field
    assert bundle.window == default_window(network.receptive_field) >= network.receptive_field
    assert bundle.metadata["metrics"] == {"f1": 0.5, "tp": 3}
    assert bundle.metadata["subjects"] == ["s01", "s02"]
    assert bundle.files[WEIGHTS]["sha256"] == sha256_file(folder / WEIGHTS)

    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["format"] == BUNDLE_FORMAT
    assert manifest["features"] == {"config": FEATURES.to_dict(), "digest": FEATURES.digest()}
    assert manifest["method"] == {"name": "full", "options": {"label_smoothing": 0.1}}
    assert manifest["network"] == network.config.to_dict()

    loaded = bundle.network()
    assert not loaded.training
    for key, value in network.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)
    motion, geometry = torch.randn(1, 20, 153), torch.randn(1, 20, 153)
    valid = torch.ones(1, 20, dtype=torch.bool)
    with torch.no_grad():
        want = network(motion, geometry, valid)["tcam"]
        got = loaded(motion, geometry, valid)["tcam"]
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert bundle.method(loaded).name == "full"
    # the weights are a plain tensor state dict: the restricted unpickler reads them
    state = torch.load(folder / WEIGHTS, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_load_accepts_the_manifest_path(tmp_path: Path, make_bundle) -> None:
    folder = make_bundle(tmp_path / "m.mespot")
    assert load_bundle(folder / MANIFEST).path == folder


@pytest.mark.parametrize(("rf", "window"), [(1, 2), (2, 2), (9, 16), (16, 16), (42, 64), (65, 128)])
def test_default_window_is_the_next_power_of_two(rf: int, window: int) -> None:
    assert default_window(rf) == window


def test_explicit_window(tmp_path: Path) -> None:
    network = small_network()
    rf = network.receptive_field
    config = TrainConfig(network=network.config, epochs=1)
    folder = save_bundle(tmp_path / "m.mespot", network, config, FEATURES, window=rf)
    assert load_bundle(folder).window == rf
    with pytest.raises(ConfigError, match="receptive field"):
        save_bundle(tmp_path / "short.mespot", network, config, FEATURES, window=rf - 1)


def test_damaged_weights_name_the_file(tmp_path: Path, make_bundle) -> None:
    folder = make_bundle(tmp_path / "m.mespot")
    data = bytearray((folder / WEIGHTS).read_bytes())
    data[len(data) // 2] ^= 0x01  # flip one bit in the middle
    (folder / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(BundleError, match="damaged") as info:
        load_bundle(folder)
    assert info.value.path == folder / WEIGHTS
    assert WEIGHTS in str(info.value)


def test_missing_weights_name_the_file(tmp_path: Path, make_bundle) -> None:
    folder = make_bundle(tmp_path / "m.mespot")
    (folder / WEIGHTS).unlink()
    with pytest.raises(BundleError, match="missing") as info:
        load_bundle(folder)
    assert info.value.path == folder / WEIGHTS


@pytest.mark.parametrize(
    ("fmt", "hint"),
    [("mespot-bundle/2", "upgrade mespot"), ("mespot-run/1", "not a mespot bundle"), (None, "not a mespot")],
)
def test_unknown_format_version(tmp_path: Path, fmt: str | None, hint: str, make_bundle) -> None:
    folder = make_bundle(tmp_path / "m.mespot")
    rewrite_manifest(folder, format=fmt)
    with pytest.raises(BundleError, match="unknown bundle format") as info:
        load_bundle(folder)
    assert hint in str(info.value) and MANIFEST in str(info.value)


def test_unreadable_or_missing_manifest(tmp_path: Path, make_bundle) -> None:
    with pytest.raises(BundleError, match="no such bundle folder"):
        load_bundle(tmp_path / "absent.mespot")
    empty = tmp_path / "empty.mespot"
    empty.mkdir()
    with pytest.raises(BundleError, match="missing") as info:
        load_bundle(empty)
    assert info.value.path == empty / MANIFEST
    folder = make_bundle(tmp_path / "m.mespot")
    (folder / MANIFEST).write_text('{"format": "mespot-bundle/1", ')  # truncated
    with pytest.raises(BundleError, match="not readable JSON"):
        load_bundle(folder)


def test_manifest_cannot_point_outside_the_bundle(tmp_path: Path, make_bundle) -> None:
    folder = make_bundle(tmp_path / "m.mespot")
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"]["../secret.onnx"] = {"sha256": "0" * 64}
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="not a plain file name"):
        load_bundle(folder)


def test_edited_feature_config_is_caught_by_its_digest(tmp_path: Path, make_bundle) -> None:
    folder = make_bundle(tmp_path / "m.mespot")
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["features"]["config"]["patch_radius"] = 6.0
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="feature digest"):
        load_bundle(folder)


def test_feature_mismatch_names_the_fields(tmp_path: Path, make_bundle) -> None:
    bundle = load_bundle(make_bundle(tmp_path / "m.mespot"))
    bundle.check_features(FEATURES)  # the same configuration passes
    with pytest.raises(FeatureMismatchError) as info:
        bundle.check_features(dataclasses.replace(FEATURES, patch_radius=6.0, flow="farneback"))
    assert set(info.value.fields) == {"patch_radius", "flow"}
    assert info.value.fields["patch_radius"] == (5.0, 6.0)
    message = str(info.value)
    assert "patch_radius" in message and "flow" in message and "farneback" in message
    assert "hop_s" not in message
    assert isinstance(info.value, BundleError) and isinstance(info.value, MespotError)


def test_pickled_objects_in_the_weights_are_refused(tmp_path: Path, make_bundle) -> None:
    folder = make_bundle(tmp_path / "m.mespot")
    torch.save({"payload": Payload()}, folder / WEIGHTS)  # an object, not a tensor state dict
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"][WEIGHTS]["sha256"] = sha256_file(folder / WEIGHTS)  # integrity passes...
    (folder / MANIFEST).write_text(json.dumps(manifest))
    bundle = load_bundle(folder)
    with pytest.raises(BundleError, match="weights_only") as info:  # ...the restricted unpickler does not
        bundle.network()
    assert info.value.path == folder / WEIGHTS


def test_weights_of_another_network_are_refused(tmp_path: Path, make_bundle) -> None:
    folder = make_bundle(tmp_path / "m.mespot")
    other = small_network("gim")
    torch.save(other.state_dict(), folder / WEIGHTS)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"][WEIGHTS]["sha256"] = sha256_file(folder / WEIGHTS)
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="do not fit"):
        load_bundle(folder).network()


def test_missing_operating_point_falls_back_to_the_method_default(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, make_bundle
) -> None:
    bundle = load_bundle(make_bundle(tmp_path / "m.mespot"))
    assert bundle.operating_point is None
    with caplog.at_level(logging.WARNING, logger="engine.bundle"):
        point = bundle.proposal_config()
    assert point == METHODS.get("full").default_proposals()
    assert any("no operating point" in r.getMessage() for r in caplog.records)


def test_save_refuses_inconsistent_inputs(tmp_path: Path) -> None:
    network = small_network()
    with pytest.raises(ConfigError, match="differs from"):
        other = TrainConfig(network=NetworkConfig(embed_dim=32), epochs=1)
        save_bundle(tmp_path / "a.mespot", network, other, FEATURES)
    wide = build_network(NetworkConfig(embed_dim=16, motion_dim=10, geometry_dim=10))
    with pytest.raises(ConfigError, match="motion_dim=10"):
        save_bundle(tmp_path / "b.mespot", wide, TrainConfig(network=wide.config, epochs=1), FEATURES)
    config = TrainConfig(network=network.config, epochs=1)
    with pytest.raises(ConfigError, match="not JSON serialisable"):
        save_bundle(tmp_path / "c.mespot", network, config, FEATURES, metadata={"x": object()})
    assert not (tmp_path / "c.mespot").exists()


@pytest.mark.parametrize(
    ("rf", "lookahead", "window"), [(9, 0, 16), (9, 8, 16), (9, 9, 16), (9, 16, 32), (1, 1, 2), (42, 3, 64)]
)
def test_default_window_exceeds_the_lookahead(rf: int, lookahead: int, window: int) -> None:
    assert default_window(rf, lookahead) == window
    assert min_window(rf, lookahead) == max(rf, lookahead + 1)


def test_a_bundle_carries_its_lookahead(tmp_path: Path) -> None:
    torch.manual_seed(0)
    network = build_network(NetworkConfig(network="gim", embed_dim=16, lookahead=20)).eval()
    rf = network.receptive_field
    assert rf < 21  # the look-ahead, not the history, sets the window here
    config = TrainConfig(network=network.config, method="full", epochs=1)
    folder = save_bundle(tmp_path / "m.mespot", network, config, FEATURES)
    bundle = load_bundle(folder)
    assert bundle.lookahead == 20 and bundle.receptive_field == rf
    assert bundle.lookahead_s == pytest.approx(20 * FEATURES.hop_s)
    assert bundle.window == default_window(rf, 20) == 32
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["network"]["lookahead"] == 20
    assert manifest["lookahead_s"] == pytest.approx(20 * 4 / 30)
    assert bundle.network().lookahead == 20
    with pytest.raises(ConfigError, match="more than its look-ahead of 20 snippets"):
        save_bundle(tmp_path / "short.mespot", network, config, FEATURES, window=20)
    tight = save_bundle(tmp_path / "tight.mespot", network, config, FEATURES, window=21)
    assert load_bundle(tight).window == 21
    # A manifest whose seconds disagree with its network's snippets is refused.
    rewrite_manifest(folder, lookahead_s=0.5)
    with pytest.raises(BundleError, match=r"lookahead_s=0\.5 disagrees with network\.lookahead=20"):
        load_bundle(folder)
    rewrite_manifest(folder, lookahead_s=20 * 4 / 30, window=16)
    with pytest.raises(BundleError, match="look-ahead"):
        load_bundle(folder)


def test_a_bundle_from_before_the_lookahead_loads_strictly_causal(tmp_path: Path, make_bundle) -> None:
    folder = make_bundle(tmp_path / "m.mespot")
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["lookahead_s"] == 0.0
    del manifest["lookahead_s"]
    for config in (manifest["network"], manifest["train_config"]["network"]):
        del config["lookahead"]
    (folder / MANIFEST).write_text(json.dumps(manifest))
    bundle = load_bundle(folder)
    assert bundle.lookahead == 0 and bundle.lookahead_s == 0.0 and bundle.network().lookahead == 0


def test_an_existing_bundle_is_replaced_only_on_request(tmp_path: Path, make_bundle) -> None:
    folder = make_bundle(tmp_path / "m.mespot")
    with pytest.raises(BundleError, match="already holds a bundle"):
        make_bundle(folder)
    make_bundle(folder, name="gim", overwrite=True)
    assert load_bundle(folder).network_config.network == "gim"


def test_non_causal_bundle_has_no_window(tmp_path: Path, make_bundle) -> None:
    bundle = load_bundle(make_bundle(tmp_path / "m.mespot", causal=False))
    assert not bundle.causal and bundle.receptive_field is None and bundle.window is None
    assert not bundle.network().config.causal


def test_add_file_lists_and_relists_an_artifact(tmp_path: Path, make_bundle) -> None:
    folder = make_bundle(tmp_path / "m.mespot")
    (folder / "scorer.onnx").write_bytes(b"first")
    bundle = add_file(folder, "scorer.onnx", {"role": "scorer", "format": "onnx", "precision": "fp32"})
    assert bundle.files["scorer.onnx"]["sha256"] == sha256_file(folder / "scorer.onnx")
    assert bundle.artifacts("onnx", "fp32")[0][0] == "scorer.onnx" and bundle.artifacts("tensorrt") == []
    (folder / "scorer.onnx").write_bytes(b"second")  # an export replacing the earlier one
    bundle = add_file(folder, "scorer.onnx", {"role": "scorer", "format": "onnx", "precision": "fp32"})
    assert bundle.files["scorer.onnx"]["bytes"] == len(b"second")
    with pytest.raises(BundleError, match="save_bundle only"):
        add_file(folder, WEIGHTS, {})
    with pytest.raises(BundleError, match="write the file"):
        add_file(folder, "absent.engine", {})
    (folder / WEIGHTS).write_bytes(b"damaged")
    (folder / "other.onnx").write_bytes(b"x")
    with pytest.raises(BundleError, match="damaged"):  # a damaged bundle is never re-signed
        add_file(folder, "other.onnx", {})


def test_no_pickle_in_the_bundle_and_runtime_code() -> None:
    import inspect

    import engine.bundle
    import engine.export
    from engine.runtime import base, onnx_backend, scorer, tensorrt_backend, torch_backend

    modules = [engine.bundle, engine.export, base, onnx_backend, scorer, tensorrt_backend, torch_backend]
    for module in modules:
        source = inspect.getsource(module)
        assert "import pickle" not in source and "pickle.load" not in source, module
        for line in source.splitlines():
            if "torch.load(" in line:
                assert "weights_only=True" in line, (module, line)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"classes": 5}, r"classes=5: must be a list of class names"),
        ({"classes": "me,mae"}, r"classes='me,mae': must be a list"),
        ({"classes": ["me", "happy"]}, r"classes: unknown names \['happy'\]"),
        ({"classes": [["me"], "mae"]}, r"must be a list of class names"),
    ],
)
def test_bad_classes_are_refused_naming_the_field(
    tmp_path: Path, changes: dict, message: str, make_bundle
) -> None:
    folder = make_bundle(tmp_path / "b.mespot")
    rewrite_manifest(folder, **changes)
    with pytest.raises(BundleError, match=message) as info:
        load_bundle(folder)
    assert str(folder / MANIFEST) in str(info.value)


@pytest.mark.parametrize("thresholds", [[-5], [0.5, 1.5], [float("inf")]])
def test_thresholds_outside_0_1_are_refused(tmp_path: Path, thresholds: list[float], make_bundle) -> None:
    folder = make_bundle(tmp_path / "b.mespot", operating_point=ProposalConfig())
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["operating_point"]["thresholds"] = thresholds
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"thresholds") as info:
        load_bundle(folder)
    assert str(folder / MANIFEST) in str(info.value)
