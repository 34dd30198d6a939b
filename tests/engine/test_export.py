"""Export: the ONNX window scorer (checker, metadata, parity with torch), the format table, the CLI,
and TensorRT (GPU only)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from engine.bundle import BundleError, load_bundle, save_bundle, sha256_file
from engine.cli.export import add_parser as add_export_parser
from engine.export import (
    EXPORT_FORMATS,
    TOLERANCE,
    ExportError,
    ExportFormat,
    export,
    random_windows,
    reference_scorer,
    register_format,
)
from engine.models import NetworkConfig, build_network
from engine.runtime import OnnxRuntimeBackend, TorchBackend
from engine.runtime.contract import read_onnx_metadata
from engine.runtime.torch_backend import WindowScorer
from engine.train import TrainConfig
from stream.config import FeatureConfig
from stream.errors import ConfigError

# single-scale flow without eye openness: 153 motion + 153 geometry inputs, a small network
FEATURES = FeatureConfig(flow_scales_s=(0.1,), eye_openness=False)


def max_diff(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> float:
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))


def rounded_scores(bundle, precision: str, motion, geometry, valid) -> tuple[np.ndarray, np.ndarray]:
    """What an exact graph of `precision` computes: torch with weights and inputs rounded to it."""
    dt = np.float16 if precision == "fp16" else np.float32
    scorer = reference_scorer(bundle, precision)
    m, g = (torch.from_numpy(x.astype(dt).astype(np.float32)) for x in (motion, geometry))
    with torch.no_grad():
        cls, act = scorer(m, g, torch.from_numpy(valid))
    return cls.numpy(), act.numpy()


def test_onnx_graph_passes_the_checker_and_describes_itself(exported: Path) -> None:
    bundle = load_bundle(exported)  # hashes verified, scorer.onnx included
    model = onnx.load(str(exported / "scorer.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["motion", "geometry", "valid"]
    assert [o.name for o in model.graph.output] == ["class_scores", "actionness"]
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        assert dims[0].dim_param and dims[1].dim_param  # dynamic batch and time axes
    meta = read_onnx_metadata(exported / "scorer.onnx")
    assert meta["bundle_format"] == "mespot-bundle/1"
    assert meta["feature_digest"] == FEATURES.digest()
    assert json.loads(meta["feature_config"]) == FEATURES.to_dict()
    assert meta["window"] == str(bundle.window) and meta["receptive_field"] == str(bundle.receptive_field)
    assert meta["classes"] == "me,mae" and meta["method"] == "full" and meta["precision"] == "fp32"
    assert meta["network"] == bundle.network_config.network
    assert meta["lookahead"] == "0" and float(meta["lookahead_s"]) == 0.0  # strictly causal
    assert meta["weights_sha256"] == bundle.files["weights.pt"]["sha256"]
    entry = bundle.files["scorer.onnx"]
    assert entry["format"] == "onnx" and entry["precision"] == "fp32" and entry["window"] == bundle.window
    assert entry["sha256"] == sha256_file(exported / "scorer.onnx")
    assert entry["max_abs_diff"] <= TOLERANCE["fp32"]
    assert bundle.artifacts("onnx")[0][0] == "scorer.onnx"


def test_onnxruntime_matches_torch_on_random_windows(exported: Path) -> None:
    bundle = load_bundle(exported)
    with TorchBackend(bundle) as reference, OnnxRuntimeBackend(bundle, threads=2) as ort:
        assert ort.window == reference.window == bundle.window
        for seed, (batch, length) in enumerate([(3, bundle.window), (1, 1), (2, 5), (4, bundle.window - 1)]):
            inputs = random_windows(batch, length, 153, 153, seed=seed + 10)
            want, got = reference.score(*inputs), ort.score(*inputs)
            assert got[0].shape == (batch, length, 2) and got[1].shape == (batch, length)
            assert got[0].dtype == np.float32 and got[1].dtype == np.float32
            assert max_diff(got, want) <= 1e-4


def test_the_scorer_module_is_the_method_over_the_network(exported: Path) -> None:
    bundle = load_bundle(exported)
    network = bundle.network()
    scorer = WindowScorer(network, bundle.method(network))
    m, g, v = (torch.from_numpy(a) for a in random_windows(2, 16, 153, 153))
    members = list(getattr(network, "members", [network]))
    with torch.no_grad():
        cls, act = scorer(m, g, v)
        p = torch.stack([torch.softmax(n(m, g, v)["tcam"], dim=-1) for n in members])  # (N, B, T, 3)
    # an ensemble's scores are the mean of its members' (each the method over its network)
    torch.testing.assert_close(cls, p[..., 1:].mean(dim=0))
    torch.testing.assert_close(act, (1 - p[..., 0]).mean(dim=0))


def test_a_damaged_graph_is_caught_on_load(exported: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(exported, tmp_path / "copy.mespot"))
    data = bytearray((copy / "scorer.onnx").read_bytes())
    data[-10] ^= 0xFF
    (copy / "scorer.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="damaged") as info:
        load_bundle(copy)
    assert info.value.path == copy / "scorer.onnx"


def test_a_graph_of_another_model_is_refused(exported: Path, tmp_path: Path, make_bundle) -> None:
    other = load_bundle(make_bundle(tmp_path / "other.mespot", "gim", seed=1))
    with pytest.raises(BundleError, match="exported from another model"):
        OnnxRuntimeBackend(other, path=exported / "scorer.onnx")


# 10 s or more: run with -m slow (the fast tier streams the same look-ahead graphs through
# onnxruntime against the whole-sequence forward: test_runtime's lookahead tests)
@pytest.mark.slow
@pytest.mark.parametrize("name", ["mcwes", "gim"])
def test_onnx_export_of_a_lookahead_network(tmp_path: Path, name: str) -> None:
    """The exported graph pads the window's end with the look-ahead itself: rows equal torch on
    any window length, the last L rows included (what the live scorer reads at the flush)."""
    torch.manual_seed(0)
    network = build_network(NetworkConfig(network=name, embed_dim=16, lookahead=2)).eval()
    config = TrainConfig(network=network.config, method="full", epochs=1)
    folder = save_bundle(tmp_path / "m.mespot", network, config, FEATURES)
    export(folder, "onnx")
    bundle = load_bundle(folder)
    meta = read_onnx_metadata(folder / "scorer.onnx")
    assert meta["lookahead"] == "2" and float(meta["lookahead_s"]) == pytest.approx(2 * FEATURES.hop_s)
    assert "row T-1-2 scores the newest snippet" in meta["outputs"]
    with TorchBackend(bundle) as reference, OnnxRuntimeBackend(bundle) as ort:
        assert ort.lookahead == reference.lookahead == 2
        for seed, (batch, length) in enumerate([(2, bundle.window), (1, 1), (1, 2), (3, 3), (1, 7)]):
            inputs = random_windows(batch, length, 153, 153, seed=seed + 20)
            assert max_diff(ort.score(*inputs), reference.score(*inputs)) <= 1e-4
        # Row t of a window sees rows <= t + 2 and the padding beyond: never row t + 3.
        m, g, v = random_windows(1, 12, 153, 153, seed=30)
        act = ort.score(m, g, v)[1]
        m2 = m.copy()
        m2[0, 9:] += 3.0
        act2 = ort.score(m2, g, v)[1]
        np.testing.assert_array_equal(act[0, :7], act2[0, :7])
        assert not np.array_equal(act[0, 7:], act2[0, 7:])


def test_export_refuses_a_non_causal_network(tmp_path: Path, make_bundle) -> None:
    folder = make_bundle(tmp_path / "offline.mespot", causal=False)
    with pytest.raises(ExportError, match="non-causal"):
        export(folder, "onnx")
    assert "scorer.onnx" not in load_bundle(folder).files


def test_export_refuses_bad_options(tmp_path: Path, make_bundle) -> None:
    folder = make_bundle(tmp_path / "m.mespot")
    rf = load_bundle(folder).receptive_field
    with pytest.raises(ConfigError, match="choose one of"):
        export(folder, "tflite")
    with pytest.raises(ConfigError, match="receptive field"):
        export(folder, "onnx", window=rf - 1)
    with pytest.raises(ConfigError, match="precision"):
        export(folder, "onnx", precision="int8")
    with pytest.raises(ConfigError, match="overwrite the bundle's own"):
        export(folder, "onnx", out=folder / "weights.pt")


def test_the_format_table_refuses_duplicates() -> None:
    assert set(EXPORT_FORMATS) >= {"onnx", "tensorrt"}
    assert EXPORT_FORMATS["tensorrt"].gpu and not EXPORT_FORMATS["onnx"].gpu
    with pytest.raises(ValueError, match="already registered"):
        register_format(ExportFormat("onnx", ".onnx", False, "again", lambda *a, **k: Path()))


def test_the_fp16_reference_holds_the_weights_float16_stores(tmp_path: Path, make_bundle) -> None:
    bundle = load_bundle(make_bundle(tmp_path / "g.mespot", "gim"))
    exact, rounded = reference_scorer(bundle, "fp32"), reference_scorer(bundle, "fp16")
    changed = 0
    for (name, a), (_, b) in zip(exact.state_dict().items(), rounded.state_dict().items(), strict=True):
        if a.is_floating_point():
            assert b.dtype == torch.float32, name  # FP32 arithmetic on rounded values
            assert torch.equal(b, a.half().float()), name
            changed += int(not torch.equal(a, b))
    assert changed > 0  # the FP32 weights are not all representable in FP16


@pytest.mark.slow  # 10 s or more: run with -m slow
def test_cli_exports_fp16_with_a_window_and_an_out_path(tmp_path: Path, make_bundle) -> None:
    folder = make_bundle(tmp_path / "g.mespot", "gim")
    bundle = load_bundle(folder)
    rf = bundle.receptive_field
    out = tmp_path / "elsewhere" / "g.fp16.onnx"
    parser = argparse.ArgumentParser(prog="mespot")
    add_export_parser(parser.add_subparsers(dest="command", required=True))
    argv = ["export", str(folder), "--format", "onnx", "--precision", "fp16"]
    args = parser.parse_args([*argv, "--window", str(rf), "--out", str(out)])
    assert args.func(args) == 0
    assert out.is_file()
    assert set(load_bundle(folder).files) == {"weights.pt"}  # written outside the bundle: not listed
    model = onnx.load(str(out))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert all(init.data_type != onnx.TensorProto.FLOAT for init in model.graph.initializer)
    meta = read_onnx_metadata(out)
    assert meta["precision"] == "fp16" and meta["window"] == str(rf)
    with OnnxRuntimeBackend(bundle, path=out) as half:
        assert half.window == rf
        inputs = random_windows(2, rf, 153, 153, seed=3)
        assert max_diff(half.score(*inputs), rounded_scores(bundle, "fp16", *inputs)) <= TOLERANCE["fp16"]


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_tensorrt_export_without_tensorrt_says_how_to_install(tmp_path: Path, make_bundle) -> None:
    folder = make_bundle(tmp_path / "m.mespot", "gim")
    with pytest.raises(ExportError, match=r"pip install 'mespot\[gpu\]'"):
        export(folder, "tensorrt")


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_engine_matches_torch(tmp_path: Path, precision: str, make_bundle) -> None:
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install 'mespot[gpu]')")
    from engine.runtime.tensorrt_backend import TensorRTBackend, cuda_problem

    if (problem := cuda_problem()) is not None:
        pytest.skip(problem)
    folder = make_bundle(tmp_path / "m.mespot")
    path = export(folder, "tensorrt", precision=precision, max_batch=4)
    bundle = load_bundle(folder)
    assert path.name == f"scorer.{precision}.engine" and path.name in bundle.files
    entry = bundle.files[path.name]
    assert entry["max_abs_diff"] <= TOLERANCE[precision] and entry["max_abs_diff_fp32"] >= 0
    with TensorRTBackend(bundle) as engine:
        for batch, length in [(1, bundle.window), (4, bundle.window), (1, 1), (2, 7)]:
            inputs = random_windows(batch, length, 153, 153, seed=length)
            want = rounded_scores(bundle, precision, *inputs)
            assert max_diff(engine.score(*inputs), want) <= TOLERANCE[precision]
