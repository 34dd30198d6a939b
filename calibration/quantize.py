"""INT8 / FP16 scorers for TensorRT: explicit (Q/DQ) quantisation calibrated on real feature windows.

``mespot quantize BUNDLE ANNOTATIONS --features DIR --precision int8`` inserts QuantizeLinear /
DequantizeLinear pairs into the bundle's FP32 ONNX window scorer (``scorer.onnx``, exported first
when missing) with ``onnxruntime.quantization.quantize_static`` in the QDQ format, the ranges
calibrated on windows of W snippets drawn from the *training* videos' real feature caches. The
result, ``scorer.int8.onnx``, is listed in the bundle with its calibration details; TensorRT
builds an INT8 engine from it (``mespot export BUNDLE --format tensorrt --precision int8 --onnx
BUNDLE/scorer.int8.onnx``), and onnxruntime runs it on the CPU
(``OnnxRuntimeBackend(bundle, precision="int8")``).

What is quantised (`QUANTIZED_OP_TYPES`, `int8_nodes`): the network's inner learned layers:
Conv, MatMul and Gemm nodes whose weight is a learned initializer (`weighted_nodes`), except the
first learned layer on each input and the last one before each output (`boundary_nodes`), which
stay float, as is usual: the first sees the standardised features, whose rare large values are the
expressions themselves (a per-tensor int8 scale wide enough for them leaves the common small
values a few levels), and the last makes the logits the scores come from. Also float: softmax,
sigmoid, the validity masking, the attention products of two activations, and the causal pooling
convolutions whose kernel is a constant (all ones: moving sums, not learned). Q/DQ pairs sit on
the *inputs* of the quantised nodes only (weights and activations; outputs stay float until the
next quantised input), the placement TensorRT's explicit quantisation expects. Weights are
per-channel (output channel: Conv axis 0, MatMul/Gemm axis 1) and symmetric; activations are
per-tensor and symmetric (zero point 0), as TensorRT requires; biases stay float (TensorRT fuses
them).

Weights use 7 of the 8 bits by default (``reduce_range``). onnxruntime's x86 int8 kernels without
VNNI multiply u8 x s8 pairs into saturating 16-bit sums, so full-range weights can distort the CPU
scores: on an earlier revision of the network (raw features into a quantised first layer) by up
to 0.08 (probability) where the same Q/DQ arithmetic computed in float moved them by 0.005. 7-bit
weights cannot saturate, so the CPU run computes what TensorRT computes and the check below stands
for the engine. The eighth bit is worth little here (largest score change on the synthetic test
bundle 0.017 with 7-bit weights, 0.012 with 8-bit); ``--full-range-weights`` gives it to TensorRT.

The check this module makes (``f1_check``): every video of the dataset is scored through the
live path (``engine.runtime.StreamScorer`` over onnxruntime) with the FP32 graph and with the
quantised one, spotted at the bundle's operating point and evaluated; the overall F1 must stay
within `F1_TOLERANCE` (0.01) of the FP32 graph's. The result is stored in the graph's bundle
entry. ``--precision fp16`` exports ``scorer.fp16.onnx`` (``engine.export``) and makes the same
check.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from calibration.operating_point import bundle_scores
from engine.bundle import Bundle, add_file, load_bundle, sha256_file, write_atomic
from engine.evaluate import Report, evaluate
from engine.export import ExportError, export_onnx, onnx_scorer_entry
from engine.proposals import ProposalConfig
from engine.runtime.contract import INPUT_NAMES, METADATA_PREFIX, OUTPUT_NAMES
from engine.train import Scores, Video, spot
from stream.errors import ConfigError

log = logging.getLogger(__name__)

INT8_FILE = "scorer.int8.onnx"
QUANTIZED_OP_TYPES: tuple[str, ...] = ("Conv", "MatMul", "Gemm")
CALIBRATION_METHODS: tuple[str, ...] = ("minmax", "entropy", "percentile")
QUANTIZE_PRECISIONS: tuple[str, ...] = ("int8", "fp16")
F1_TOLERANCE = 0.01  # largest |F1 - F1 of the FP32 graph| the check accepts
DEFAULT_WINDOWS = 256


# --------------------------------------------------------------------------------------------
# Calibration data
# --------------------------------------------------------------------------------------------


def feature_windows(
    videos: Sequence[Video], window: int, count: int, *, seed: int = 0
) -> list[dict[str, np.ndarray]]:
    """Windows of real snippet features for range calibration (name -> array dicts).

    A video is drawn with probability proportional to its length, then a uniform start; a video
    shorter than the window gives the whole video (the graph's time axis is dynamic). Windows
    without a valid snippet are drawn again.

    Args:
        videos: the videos with their features (the bundle's training videos).
        window: W, snippets per window.
        count: how many windows, in [1, 100000].
        seed: the seed of the draw.

    Returns:
        ``count`` dicts: motion (1, T, Dm) float32, geometry (1, T, Dg) float32, valid (1, T) bool,
        T = min(W, video length).

    Raises:
        ConfigError: bad count or window, or no video with a valid snippet.
    """
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 100_000:
        raise ConfigError(f"calibration windows={count!r}: must be an integer in [1, 100000]")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ConfigError(f"window={window!r}: must be an integer >= 1")
    usable = [(rec, f) for rec, f in videos if len(f.valid) and np.asarray(f.valid, dtype=bool).any()]
    if not usable:
        raise ConfigError("calibration windows: no video with a valid snippet")
    rng = np.random.default_rng(seed)
    lengths = np.array([len(f.valid) for _, f in usable], dtype=np.float64)
    out: list[dict[str, np.ndarray]] = []
    tries = 0
    while len(out) < count:
        tries += 1
        if tries > 100 * count:
            raise ConfigError("calibration windows: too few windows hold a valid snippet")
        _, feats = usable[int(rng.choice(len(usable), p=lengths / lengths.sum()))]
        t = len(feats.valid)
        start = int(rng.integers(0, max(0, t - window) + 1))
        valid = np.asarray(feats.valid[start : start + window], dtype=bool)  # (T,)
        if not valid.any():
            continue
        out.append(
            {
                "motion": np.asarray(feats.motion[start : start + window], dtype=np.float32)[None],
                "geometry": np.asarray(feats.geometry[start : start + window], dtype=np.float32)[None],
                "valid": valid[None],
            }
        )
    return out


class _Reader:
    """onnxruntime's CalibrationDataReader protocol (``get_next``) over any iterable of dicts."""

    def __init__(self, windows: Iterable[Mapping[str, np.ndarray]]) -> None:
        self._it: Iterator[Mapping[str, np.ndarray]] = iter(windows)

    def get_next(self) -> dict[str, np.ndarray] | None:
        item = next(self._it, None)
        return None if item is None else {k: item[k] for k in INPUT_NAMES}


# --------------------------------------------------------------------------------------------
# Quantisation
# --------------------------------------------------------------------------------------------


def weighted_nodes(model: Any, op_types: Sequence[str] = QUANTIZED_OP_TYPES) -> list[str]:
    """Names of the nodes to quantise: `op_types` whose weight (input 1) is a learned initializer.

    A constant-valued kernel (the causal pooling convolutions' all-ones kernels) is not a learned
    layer and stays float, as do products of two activations (attention).
    """
    from onnx import numpy_helper

    initializers = {i.name: i for i in model.graph.initializer}
    names = []
    for node in model.graph.node:
        if node.op_type not in op_types or len(node.input) < 2 or node.input[1] not in initializers:
            continue
        weight = numpy_helper.to_array(initializers[node.input[1]])
        if weight.size > 1 and float(np.ptp(weight)) > 0.0:
            names.append(node.name)
    return names


def boundary_nodes(model: Any, nodes: Sequence[str]) -> tuple[list[str], list[str]]:
    """The first and the last of `nodes` along the graph's data flow.

    Returns:
        (nodes with no node of `nodes` upstream, nodes with no node of `nodes` downstream), in
        graph order.
    """
    chosen = set(nodes)
    graph = list(model.graph.node)  # ONNX graphs are topologically sorted
    after: set[str] = set()  # tensors downstream of a chosen node
    first = []
    for node in graph:
        upstream = any(t in after for t in node.input)
        if node.name in chosen and not upstream:
            first.append(node.name)
        if upstream or node.name in chosen:
            after.update(node.output)
    before: set[str] = set()  # tensors upstream of a chosen node
    last = []
    for node in reversed(graph):
        downstream = any(t in before for t in node.output)
        if node.name in chosen and not downstream:
            last.append(node.name)
        if downstream or node.name in chosen:
            before.update(node.input)
    return first, last[::-1]


def int8_nodes(model: Any) -> list[str]:
    """The nodes `quantize_int8` quantises: learned layers but the first and the last ones."""
    nodes = weighted_nodes(model)
    first, last = boundary_nodes(model, nodes)
    keep = set(first) | set(last)
    return [n for n in nodes if n not in keep]


class _DropPreprocessAdvice(logging.Filter):
    """onnxruntime.quantization advises shape pre-processing on the root logger on every call; the
    scorer graph keeps its exported structure on purpose (TensorRT parses it as exported)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing" not in record.getMessage()


@contextlib.contextmanager
def _quiet_root() -> Iterator[None]:
    root = logging.getLogger()
    flt = _DropPreprocessAdvice()
    root.addFilter(flt)
    try:
        yield
    finally:
        root.removeFilter(flt)


def _session(model: Any) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    data = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def window_differences(
    reference: Any, candidate: Any, windows: Iterable[Mapping[str, np.ndarray]]
) -> tuple[float, float]:
    """(max, mean) absolute difference of two graphs' scores over windows, valid snippets only.

    Args:
        reference: the FP32 graph (path or serialized bytes).
        candidate: the other graph.
        windows: input dicts (`feature_windows`).
    """
    a, b = _session(reference), _session(candidate)
    dtype = np.float16 if b.get_inputs()[0].type == "tensor(float16)" else np.float32
    worst, total, n = 0.0, 0.0, 0
    for win in windows:
        inputs = {k: win[k] for k in INPUT_NAMES}
        want = a.run(list(OUTPUT_NAMES), inputs)
        cast = {k: v.astype(dtype) if k != "valid" else v for k, v in inputs.items()}
        got = b.run(list(OUTPUT_NAMES), cast)
        ok = np.asarray(inputs["valid"], dtype=bool)  # (1, T)
        for w, g in zip(want, got, strict=True):
            d = np.abs(w.astype(np.float64) - g.astype(np.float64))[ok]  # rows of valid snippets
            worst = max(worst, float(d.max(initial=0.0)))
            total += float(d.sum())
            n += d.size
    return worst, total / max(n, 1)


def _fp32_graph(bundle: Bundle) -> Path:
    """The bundle's FP32 ONNX scorer, exported first when the bundle has none."""
    found = bundle.artifacts("onnx", "fp32")
    if found:
        return bundle.file(found[0][0])
    log.info("%s has no FP32 ONNX scorer; exporting it first", bundle.path)
    return export_onnx(bundle.path, precision="fp32")


def quantize_int8(
    bundle_path: str | Path,
    windows: Sequence[Mapping[str, np.ndarray]],
    *,
    out: str | Path | None = None,
    calibration_method: str = "minmax",
    reduce_range: bool = True,
    details: Mapping[str, Any] | None = None,
) -> Path:
    """Write the explicitly quantised (Q/DQ) INT8 scorer and list it in the bundle.

    Args:
        bundle_path: the bundle folder (its FP32 ``scorer.onnx`` is exported first when missing).
        windows: calibration inputs (`feature_windows` of the training videos).
        out: the graph's path; None: ``scorer.int8.onnx`` in the bundle (listed in bundle.json). A
            path outside the bundle is written there and not listed.
        calibration_method: "minmax" (default), "entropy" or "percentile".
        reduce_range: 7-bit weights (default; see the module docstring), False: 8-bit.
        details: more JSON-ready calibration facts for the graph's metadata and bundle entry
            (videos, subjects, seed, ...).

    Returns:
        The graph's path.

    Raises:
        ConfigError: bad options or no windows.
        ExportError: the quantised graph fails onnx.checker.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if calibration_method not in CALIBRATION_METHODS:
        raise ConfigError(
            f"calibration method={calibration_method!r}: choose one of {', '.join(CALIBRATION_METHODS)}"
        )
    windows = list(windows)
    if not windows:
        raise ConfigError("quantize: no calibration windows")
    bundle = load_bundle(bundle_path)
    source = _fp32_graph(bundle)
    bundle = load_bundle(bundle.path)  # re-read: the export may have listed scorer.onnx
    target = Path(out) if out is not None else bundle.path / INT8_FILE
    listed = target.resolve().parent == bundle.path.resolve()
    fp32 = onnx.load(str(source))
    nodes = int8_nodes(fp32)
    if not nodes:
        raise ExportError(
            f"{source}: no inner Conv / MatMul / Gemm layer with a learned weight to quantise "
            "(the first and last learned layers stay float)"
        )
    first, last = boundary_nodes(fp32, weighted_nodes(fp32))
    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[calibration_method]
    quantization: dict[str, Any] = {
        "format": "QDQ",
        "tool": "onnxruntime.quantization.quantize_static",
        "calibration_method": calibration_method,
        "calibration_windows": len(windows),
        "longest_window": int(max(w["valid"].shape[1] for w in windows)),
        "op_types": list(QUANTIZED_OP_TYPES),
        "quantized_nodes": len(nodes),
        "float_layers": {"first": first, "last": last},
        "weights": "int8 per-channel symmetric" + (" (7-bit range)" if reduce_range else ""),
        "activations": "int8 per-tensor symmetric",
        "bias": "float",
        "reduce_range": reduce_range,
        **dict(details or {}),
    }
    with tempfile.TemporaryDirectory(prefix="mespot-quantize-") as tmp, _quiet_root():
        raw = Path(tmp) / "int8.onnx"
        quantize_static(
            str(source),
            str(raw),
            _Reader(windows),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(QUANTIZED_OP_TYPES),
            nodes_to_quantize=nodes,
            per_channel=True,
            reduce_range=reduce_range,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=method,
            extra_options={
                "ActivationSymmetric": True,
                "WeightSymmetric": True,
                "QuantizeBias": False,
                "OpTypesToExcludeOutputQuantization": list(QUANTIZED_OP_TYPES),  # Q/DQ on inputs only
            },
        )
        model = onnx.load(str(raw))
    meta = {p.key: p.value for p in fp32.metadata_props}
    meta[f"{METADATA_PREFIX}precision"] = "int8"
    meta[f"{METADATA_PREFIX}quantization"] = json.dumps(quantization, sort_keys=True)
    meta[f"{METADATA_PREFIX}source_sha256"] = sha256_file(source)
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name = "mespot"
    model.doc_string = f"{fp32.doc_string} INT8 Q/DQ ({calibration_method}, {len(windows)} real windows)"
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"{bundle.path}: the quantised graph fails onnx.checker: {exc}") from exc
    data = model.SerializeToString()
    worst, mean = window_differences(str(source), data, windows)
    log.info("INT8 scorer: score change from FP32 on the calibration windows max %.3g mean %.3g", worst, mean)
    write_atomic(target, data)
    if listed:
        add_file(
            bundle.path,
            target.name,
            onnx_scorer_entry(
                model,
                "int8",
                int(meta.get(f"{METADATA_PREFIX}window", bundle.window or 0)),
                source={"file": source.name, "sha256": sha256_file(source)},
                quantization=quantization,
                max_abs_diff_fp32=worst,
                mean_abs_diff_fp32=mean,
            ),
        )
    return target


def fp16_graph(bundle_path: str | Path) -> Path:
    """The bundle's FP16 ONNX scorer, exported (``engine.export``) when the bundle has none."""
    bundle = load_bundle(bundle_path)
    found = bundle.artifacts("onnx", "fp16")
    if found:
        return bundle.file(found[0][0])
    return export_onnx(bundle.path, precision="fp16")


# --------------------------------------------------------------------------------------------
# The F1 check
# --------------------------------------------------------------------------------------------


def graph_report(
    bundle: Bundle, videos: Sequence[Video], graph: str | Path, point: ProposalConfig
) -> tuple[Report, dict[str, Scores]]:
    """Score videos with an ONNX graph through the live path, spot at `point`, evaluate.

    Returns:
        (the report, video id -> scores).
    """
    scores = bundle_scores(bundle, videos, backend="onnxruntime", graph=graph)
    preds = {rec.video: spot(scores[rec.video], (rec, feats), point) for rec, feats in videos}
    report = evaluate(
        preds, {rec.video: list(rec.expressions) for rec, _ in videos}, {r.video: f.fps for r, f in videos}
    )
    return report, scores


def _score_difference(a: Mapping[str, Scores], b: Mapping[str, Scores]) -> float:
    worst = 0.0
    for video, (cls_a, act_a) in a.items():
        cls_b, act_b = b[video]
        for x, y in ((cls_a, cls_b), (act_a, act_b)):
            d = np.abs(x - y)
            worst = max(worst, float(np.nanmax(d)) if np.isfinite(d).any() else 0.0)
    return worst


def _summary(report: Report) -> dict[str, float]:
    return {"f1": report.overall.f1, "me_f1": report.me.f1, "mae_f1": report.mae.f1}


def f1_check(
    bundle_path: str | Path,
    videos: Sequence[Video],
    graph: str | Path,
    *,
    reference: str | Path | None = None,
    point: ProposalConfig | None = None,
    tolerance: float = F1_TOLERANCE,
) -> dict[str, Any]:
    """Compare a reduced-precision graph's F1 with the FP32 graph's at the same operating point.

    Args:
        bundle_path: the bundle.
        videos: the videos to score (with the bundle's features).
        graph: the INT8 / FP16 graph.
        reference: the FP32 graph; None: the bundle's.
        point: the operating point; None: the bundle's (`Bundle.proposal_config`).
        tolerance: the largest |F1 difference| that passes.

    Returns:
        JSON-ready: per graph the overall / ME / MaE F1, the difference, the largest score
        difference on any valid snippet, and whether it passed.
    """
    bundle = load_bundle(bundle_path)
    point = point or bundle.proposal_config()
    reference = Path(reference) if reference is not None else _fp32_graph(bundle)
    ref_report, ref_scores = graph_report(bundle, videos, reference, point)
    report, scores = graph_report(bundle, videos, graph, point)
    diff = report.overall.f1 - ref_report.overall.f1
    return {
        "videos": len(videos),
        "subjects": sorted({rec.subject for rec, _ in videos}),
        "operating_point": point.to_dict(),
        "reference": {"file": Path(reference).name, **_summary(ref_report)},
        "candidate": {"file": Path(graph).name, **_summary(report)},
        "f1_difference": diff,
        "max_abs_score_difference": _score_difference(ref_scores, scores),
        "tolerance": tolerance,
        "passed": abs(diff) <= tolerance,
    }


def record_check(bundle_path: str | Path, name: str, check: Mapping[str, Any]) -> Bundle:
    """Store an F1 check in a listed graph's bundle entry (``f1_check``), keeping the rest."""
    bundle = load_bundle(bundle_path)
    entry = {k: v for k, v in bundle.files[name].items() if k not in ("sha256", "bytes")}
    return add_file(bundle.path, name, {**entry, "f1_check": dict(check)})


# --------------------------------------------------------------------------------------------
# CLI: mespot quantize BUNDLE ANNOTATIONS --features DIR [--precision int8|fp16]
# --------------------------------------------------------------------------------------------


__all__ = [
    "CALIBRATION_METHODS",
    "DEFAULT_WINDOWS",
    "F1_TOLERANCE",
    "INT8_FILE",
    "QUANTIZED_OP_TYPES",
    "QUANTIZE_PRECISIONS",
    "boundary_nodes",
    "f1_check",
    "feature_windows",
    "fp16_graph",
    "graph_report",
    "int8_nodes",
    "quantize_int8",
    "record_check",
    "weighted_nodes",
    "window_differences",
]
