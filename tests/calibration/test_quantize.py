"""INT8 quantisation: a Q/DQ graph calibrated on real feature windows, close to FP32, same F1.

Measured on the synthetic bundle of conftest.py (onnxruntime 1.32, x86 CPU without VNNI): the INT8
graph's scores differ from the FP32 graph's by at most ~0.017 (probability; mean ~0.002) on real
feature windows, and the counts (hence the F1) at the bundle's operating point are unchanged. The
score tolerance below leaves room for other CPUs' int8 kernels; with 11 ground truths one flipped
proposal moves the F1 by ~0.02, so "within 0.01" here means "the same counts".
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from calibration.operating_point import bundle_scores, dataset_videos
from calibration.quantize import (
    INT8_FILE,
    QUANTIZED_OP_TYPES,
    boundary_nodes,
    f1_check,
    feature_windows,
    int8_nodes,
    quantize_int8,
    weighted_nodes,
)
from engine.bundle import Bundle, load_bundle
from engine.cli.quantize import add_parser as add_quantize_parser
from engine.data import load_dataset
from engine.evaluate import evaluate
from engine.runtime import BackendError, OnnxRuntimeBackend, open_backend, stream_scores
from engine.runtime.contract import read_onnx_metadata
from engine.train import spot
from stream.errors import ConfigError

SCORE_TOLERANCE = 0.05  # max |INT8 - FP32| score on real windows (measured ~0.017)
F1_TOLERANCE = 0.01


def run_cli(*argv: str) -> int:
    """``mespot quantize ...`` through the subcommand's own parser (engine.cli wires the same one)."""
    parser = argparse.ArgumentParser(prog="mespot")
    add_quantize_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["quantize", *argv])
    return args.func(args)


def videos_of(synth, bundle: Bundle):
    dataset = load_dataset("csv", synth.annotations)
    return dataset_videos(dataset, synth.annotations.parent / "videos", synth.features, bundle)


@pytest.fixture(scope="module")
def quantized(synth, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the trained bundle after ``mespot quantize`` (which exports scorer.onnx first)."""
    folder = Path(shutil.copytree(synth.bundle, tmp_path_factory.mktemp("quantize") / "model.mespot"))
    common = [str(synth.annotations), "--features", str(synth.features), "--quiet"]
    assert run_cli(str(folder), *common, "--calibration-windows", "64") == 0
    return folder


def test_the_qdq_graph_is_valid_quantised_and_described(quantized: Path) -> None:
    bundle = load_bundle(quantized)  # both graphs listed, hashes verified
    assert bundle.artifacts("onnx", "fp32")[0][0] == "scorer.onnx"
    assert bundle.artifacts("onnx", "int8")[0][0] == INT8_FILE
    model = onnx.load(str(quantized / INT8_FILE))
    onnx.checker.check_model(model, full_check=True)
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > ops["QuantizeLinear"]  # + weights
    assert not any(op.startswith("QLinear") for op in ops)  # explicit Q/DQ, not QOperator
    # Symmetric int8 everywhere (TensorRT): every zero point is an int8 zero.
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            zero = inits[node.input[2]]
            assert zero.dtype == np.int8 and not zero.any()
    # Softmax, sigmoid and masking stay float: their outputs are never quantised.
    quantised_inputs = {n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    for node in model.graph.node:
        if node.op_type in ("Softmax", "Sigmoid", "Where"):
            assert not set(node.output) & quantised_inputs, node.name
    # Metadata: the FP32 graph's, with the precision and the calibration.
    fp32, int8 = read_onnx_metadata(quantized / "scorer.onnx"), read_onnx_metadata(quantized / INT8_FILE)
    assert int8["precision"] == "int8" and fp32["precision"] == "fp32"
    for key in ("feature_digest", "weights_sha256", "window", "receptive_field", "classes", "method"):
        assert int8[key] == fp32[key]
    details = json.loads(int8["quantization"])
    assert details["calibration_windows"] == 64 and details["format"] == "QDQ"
    assert details["subjects"] == ["s01", "s02"]  # the bundle's training subjects
    entry = bundle.files[INT8_FILE]
    assert entry["precision"] == "int8" and entry["source"]["file"] == "scorer.onnx"
    assert entry["quantization"]["quantized_nodes"] == len(int8_nodes(onnx.load(quantized / "scorer.onnx")))
    assert entry["max_abs_diff_fp32"] <= SCORE_TOLERANCE
    assert entry["f1_check"]["passed"] and entry["f1_check"]["videos"] == 4


def test_inner_learned_layers_are_quantised(quantized: Path) -> None:
    model = onnx.load(str(quantized / "scorer.onnx"))
    learned = weighted_nodes(model)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type in QUANTIZED_OP_TYPES:
            weight = inits.get(node.input[1])
            is_learned = weight is not None and np.ptp(weight) > 0  # not an activation, not all ones
            assert (node.name in learned) == is_learned, node.name
    assert any(n.op_type == "Conv" and n.name not in learned for n in model.graph.node)  # causal pooling
    first, last = boundary_nodes(model, learned)
    assert len(first) == 2  # the motion and geometry input projections
    assert first and last and not set(first) & set(last)
    inner = int8_nodes(model)
    assert set(inner) == set(learned) - set(first) - set(last) and inner
    # In the Q/DQ graph exactly those nodes read dequantized inputs (Q/DQ on inputs only).
    qdq = onnx.load(str(quantized / INT8_FILE))
    dequantized = {o for n in qdq.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    fed = {n.name for n in qdq.graph.node if n.op_type in QUANTIZED_OP_TYPES and set(n.input) & dequantized}
    assert fed == set(inner)
    quantised = {n.input[0] for n in qdq.graph.node if n.op_type == "QuantizeLinear"}
    logits = {o for n in qdq.graph.node if n.name in last for o in n.output}
    assert not quantised & logits  # the score logits stay float


def test_runs_in_onnxruntime_close_to_fp32_on_real_windows(synth, quantized: Path) -> None:
    bundle = load_bundle(quantized)
    windows = feature_windows(videos_of(synth, bundle), bundle.window, 24, seed=7)  # not the calibration draw
    with (
        open_backend(bundle, "onnxruntime") as fp32,
        open_backend(bundle, "onnxruntime", precision="int8") as int8,
    ):
        assert (fp32.precision, int8.precision) == ("fp32", "int8")
        assert int8.path == quantized / INT8_FILE
        worst = 0.0
        for w in windows:
            ok = w["valid"][0]
            for a, b in zip(fp32.infer(w).values(), int8.infer(w).values(), strict=True):
                worst = max(worst, float(np.abs(a[0][ok] - b[0][ok]).max()))
    assert 0 < worst <= SCORE_TOLERANCE


def test_f1_stays_within_0_01_of_fp32(synth, quantized: Path) -> None:
    bundle = load_bundle(quantized)
    videos = videos_of(synth, bundle)
    point = bundle.proposal_config()
    truths = {r.video: list(r.expressions) for r, _ in videos}
    fps = {r.video: f.fps for r, f in videos}

    def f1(scores) -> float:
        preds = {r.video: spot(scores[r.video], (r, f), point) for r, f in videos}
        return evaluate(preds, truths, fps).overall.f1

    reference = f1(bundle_scores(bundle, videos))  # torch, the whole-sequence forward
    with OnnxRuntimeBackend(bundle, precision="int8") as int8:  # the live path over the INT8 graph
        scores = {r.video: stream_scores(int8, f.motion, f.geometry, f.valid) for r, f in videos}
    assert reference > 0.3  # a model that finds expressions, so the comparison means something
    assert abs(f1(scores) - reference) <= F1_TOLERANCE
    check = f1_check(quantized, videos, quantized / INT8_FILE)
    assert check["passed"] and check["reference"]["f1"] == pytest.approx(reference)


def test_a_graph_written_outside_the_bundle_is_not_listed(synth, quantized: Path, tmp_path: Path) -> None:
    bundle = load_bundle(quantized)
    windows = feature_windows(videos_of(synth, bundle), bundle.window, 8, seed=3)
    before = (quantized / "bundle.json").read_text()
    out = quantize_int8(quantized, windows, out=tmp_path / "elsewhere.onnx", calibration_method="percentile")
    assert out.is_file() and read_onnx_metadata(out)["precision"] == "int8"
    assert (quantized / "bundle.json").read_text() == before
    with OnnxRuntimeBackend(bundle, path=out) as runner:  # any graph of the bundle's model runs
        assert runner.precision == "int8"


def test_feature_windows_are_real_seeded_and_valid(synth) -> None:
    bundle = load_bundle(synth.bundle)
    videos = videos_of(synth, bundle)
    a = feature_windows(videos, 16, 10, seed=1)
    b = feature_windows(videos, 16, 10, seed=1)
    assert len(a) == 10
    for x, y in zip(a, b, strict=True):
        assert x["motion"].shape == (1, 16, bundle.network_config.motion_dim)
        assert x["geometry"].shape == (1, 16, bundle.network_config.geometry_dim)
        assert x["valid"].dtype == bool and x["valid"].any()
        np.testing.assert_array_equal(x["motion"], y["motion"])
    whole = feature_windows(videos, 1000, 2)  # longer than every video: whole videos
    assert {w["valid"].shape[1] for w in whole} <= {len(f.valid) for _, f in videos}
    with pytest.raises(ConfigError, match="calibration windows"):
        feature_windows(videos, 16, 0)


def test_the_runtime_selects_a_graph_by_precision(quantized: Path) -> None:
    bundle = load_bundle(quantized)
    with pytest.raises(BackendError, match="no fp16 ONNX scorer"):
        OnnxRuntimeBackend(bundle, precision="fp16")
    with pytest.raises(ConfigError, match="path or precision"):
        OnnxRuntimeBackend(bundle, path=quantized / INT8_FILE, precision="int8")
    with pytest.raises(ConfigError, match="choose one of"):
        OnnxRuntimeBackend(bundle, precision="int4")
    with OnnxRuntimeBackend(bundle) as default:  # FP32 stays the default
        assert default.precision == "fp32"


@pytest.mark.slow
def test_fp16_graph_passes_the_f1_check(synth, quantized: Path) -> None:
    common = [str(synth.annotations), "--features", str(synth.features), "--quiet"]
    assert run_cli(str(quantized), *common, "--precision", "fp16") == 0
    entry = load_bundle(quantized).files["scorer.fp16.onnx"]
    assert entry["f1_check"]["passed"] and entry["precision"] == "fp16"


@pytest.mark.gpu
def test_tensorrt_int8_engine_from_the_qdq_graph(synth, quantized: Path) -> None:
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install 'mespot[gpu]')")
    from engine.export import export_tensorrt
    from engine.runtime.tensorrt_backend import TensorRTBackend, cuda_problem

    if (problem := cuda_problem()) is not None:
        pytest.skip(problem)
    path = export_tensorrt(quantized, precision="int8", onnx=quantized / INT8_FILE, max_batch=4)
    bundle = load_bundle(quantized)
    assert path.name == "scorer.int8.engine" and bundle.files[path.name]["precision"] == "int8"
    videos = videos_of(synth, bundle)
    with (
        TensorRTBackend(bundle, engine=path) as engine,
        OnnxRuntimeBackend(bundle, precision="int8") as qdq,
    ):
        for _, f in videos:
            got = stream_scores(engine, f.motion, f.geometry, f.valid)
            want = stream_scores(qdq, f.motion, f.geometry, f.valid)
            for g, w in zip(got, want, strict=True):
                np.testing.assert_allclose(g, w, rtol=0, atol=SCORE_TOLERANCE, equal_nan=True)
