"""Export a bundle's scorer: one table of formats (`EXPORT_FORMATS`), one entry point (`export`).

The exported artifact is the *window scorer* (`WindowScorer`): the causal network followed by the
method's ``score_tensors`` over a window of snippets,

    inputs   motion (B, T, Dm) float, geometry (B, T, Dg) float, valid (B, T) bool
    outputs  class_scores (B, T, 2) ME/MaE in [0, 1], actionness (B, T) in [0, 1]

with a dynamic batch axis B and a dynamic time axis 1 <= T <= W. Row t depends only on rows <= t
+ L, L being the network's look-ahead (``NetworkConfig.lookahead``; 0: strictly causal); rows past
the window's end are the network's own invalid zero padding. The live runtime feeds the newest
min(n, W) snippets and reads row T - 1 - L, the newest snippet whose look-ahead is complete (the
last row when L = 0); at the end of a stream it reads the last L rows, which see the padding
exactly as the whole-sequence forward's last L rows do. With W >= max(receptive field, L + 1)
this equals the whole-sequence forward exactly (``engine.runtime.StreamScorer``).
The time axis is dynamic rather than fixed at W because the first snippets of a stream have less
history than W: feeding them unpadded reproduces the whole-sequence forward's zero padding exactly,
whereas padding with invalid snippets does not for every network (the CSCM's attention output at
an invalid snippet is its bias, not zero, and reaches the next snippets through eq. 4's
convolution).

Formats:

- ``onnx``: ``scorer.onnx`` (FP32) or ``scorer.fp16.onnx`` (FP16: the torch module is exported in
  half precision, so initializers, inputs, outputs and every constant are float16, and masking
  constants are float16's own limits). The graph carries its description in ``metadata_props``
  (bundle format, feature digest and configuration, window, receptive field, classes, method,
  network, precision, weights hash), passes ``onnx.checker`` and is compared against torch on
  random windows before it is written. The check compares the graph's arithmetic: the reference
  is the torch scorer with its weights and inputs rounded to the graph's precision, and the max
  abs difference must stay <= 1e-4 (FP32) or <= 2e-2 (FP16). Rounding the weights to float16 is
  not the graph's error but the precision's own, and on a steep network it alone moves a score by
  as much as the arithmetic (1.6e-2 on random windows for the calibration tests' bundle): the
  difference from the FP32 scorer is recorded beside it (``max_abs_diff_fp32``), and whether it
  costs accuracy is the F1 check's question (``mespot quantize --precision fp16``).
- ``tensorrt``: ``scorer.PRECISION.engine``, a serialized engine built with the TensorRT 11 Python
  API from the ONNX graph of that precision (networks are strongly typed in TensorRT 11: the
  precision is the graph's own). INT8 takes an explicitly quantized (Q/DQ) ONNX graph made by
  the calibration step (``onnx=PATH``). ``tensorrt`` is imported only here, lazily.

Exports written into the bundle folder are listed in its ``bundle.json`` with their SHA-256.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch import nn

from engine.bundle import (
    MANIFEST,
    WEIGHTS,
    Bundle,
    add_file,
    check_window,
    load_bundle,
    sha256_file,
    write_atomic,
)
from engine.runtime.contract import (
    INPUT_NAMES,
    OUTPUT_NAMES,
    PRECISIONS,
    default_onnx_name,
    onnx_metadata,
    read_onnx_metadata,
    require_causal,
)
from engine.runtime.tensorrt_backend import build_engine, import_tensorrt
from engine.runtime.torch_backend import WindowScorer
from stream.errors import ConfigError, MespotError

log = logging.getLogger(__name__)

# Largest max abs difference an export may show on random windows from the torch scorer whose
# weights and inputs are rounded to the export's precision (its arithmetic error alone). FP16:
# measured up to 8.8e-3 over 12 seeds on the calibration tests' bundle; an export bug moves
# scores by 1e-1 or more.
TOLERANCE: Mapping[str, float] = MappingProxyType({"fp32": 1e-4, "fp16": 2e-2})


class ExportError(MespotError):
    """An export cannot be made (non-causal network, missing library, failed check)."""


@dataclass(frozen=True)
class ExportFormat:
    """One row of the export table.

    Attributes:
        name: the format's name (``--format``).
        suffix: file name suffix of its artifact.
        gpu: needs an NVIDIA GPU and its libraries.
        description: one line for the CLI help.
        run: ``run(bundle_path, out, **options) -> Path``.
    """

    name: str
    suffix: str
    gpu: bool
    description: str
    run: Callable[..., Path]


EXPORT_FORMATS: dict[str, ExportFormat] = {}


def register_format(fmt: ExportFormat) -> ExportFormat:
    """Add a row to `EXPORT_FORMATS`; a second row of the same name is refused."""
    if fmt.name in EXPORT_FORMATS:
        raise ValueError(f"export format registry: the name {fmt.name!r} is already registered")
    EXPORT_FORMATS[fmt.name] = fmt
    return fmt


def export(bundle_path: str | Path, fmt: str, out: str | Path | None = None, **opts: Any) -> Path:
    """Export a bundle's window scorer in a format of `EXPORT_FORMATS`.

    Args:
        bundle_path: the bundle folder.
        fmt: "onnx" or "tensorrt".
        out: the artifact's path; None: the format's default name inside the bundle (listed in
            bundle.json). A path outside the bundle is written there and not listed.
        **opts: the format's options (`export_onnx`, `export_tensorrt`).

    Returns:
        The artifact's path.

    Raises:
        ConfigError: unknown format or bad options.
        BundleError: the bundle cannot be read.
        ExportError: the export failed (see the message).
    """
    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"export format {fmt!r}: choose one of {', '.join(sorted(EXPORT_FORMATS))}")
    return EXPORT_FORMATS[fmt].run(bundle_path, out, **opts)


# --------------------------------------------------------------------------------------------
# ONNX
# --------------------------------------------------------------------------------------------


def _check_precision(precision: object, allowed: tuple[str, ...]) -> str:
    if precision not in allowed:
        raise ConfigError(f"export precision={precision!r}: choose one of {', '.join(allowed)}")
    return str(precision)


def _dtype(precision: str) -> torch.dtype:
    return torch.float16 if precision == "fp16" else torch.float32


def random_windows(
    batch: int, window: int, motion_dim: int, geometry_dim: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random inputs for parity checks: standard-normal features, ~15 % invalid snippets.

    Returns:
        motion (B, W, Dm) float32, geometry (B, W, Dg) float32, valid (B, W) bool.
    """
    rng = np.random.default_rng(seed)
    motion = rng.standard_normal((batch, window, motion_dim)).astype(np.float32)
    geometry = rng.standard_normal((batch, window, geometry_dim)).astype(np.float32)
    valid = rng.random((batch, window)) > 0.15
    valid[:, -1] = True
    motion[~valid] = 0.0  # invalid snippets carry zeros, as the pipeline emits them
    geometry[~valid] = 0.0
    return motion, geometry, valid


def _torch_scores(
    scorer: nn.Module, motion: np.ndarray, geometry: np.ndarray, valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        cls, act = scorer(torch.from_numpy(motion), torch.from_numpy(geometry), torch.from_numpy(valid))
    return cls.float().numpy(), act.float().numpy()


def reference_scorer(bundle: Bundle, precision: str) -> nn.Module:
    """The bundle's torch scorer in FP32, its weights rounded to float16 for ``precision="fp16"``:
    what an exact implementation of a graph of that precision computes (otherwise the scorer)."""
    network = bundle.network()
    scorer = WindowScorer(network, bundle.method(network)).eval()
    if precision == "fp16":
        with torch.no_grad():
            for tensor in (*scorer.parameters(), *scorer.buffers()):
                if tensor.is_floating_point():
                    tensor.copy_(tensor.half().float())
    return scorer


@dataclass(frozen=True)
class Parity:
    """Max abs score differences of an export on random windows."""

    arithmetic: float  # from the scorer with weights and inputs rounded to the export's precision
    fp32: float  # from the FP32 scorer on the unrounded inputs


def _parity(
    run: Callable[[np.ndarray, np.ndarray, np.ndarray], Any],
    bundle: Bundle,
    precision: str,
    seed: int,
    shapes: tuple[tuple[int, int], ...],
) -> Parity:
    """Compare `run(motion, geometry, valid)` (inputs already in the export's dtype) against the
    rounded-weight reference and against the FP32 scorer."""
    half = precision == "fp16"  # only FP16 rounds weights and inputs; INT8 is compared with FP32
    exact = reference_scorer(bundle, "fp32")
    rounded = reference_scorer(bundle, precision) if half else exact
    nc = bundle.network_config
    arithmetic = fp32 = 0.0
    for batch, length in shapes:
        m, g, v = random_windows(batch, length, nc.motion_dim, nc.geometry_dim, seed)
        mq, gq = (m.astype(np.float16), g.astype(np.float16)) if half else (m, g)
        got = [np.asarray(x, dtype=np.float32) for x in run(mq, gq, v)]
        exact_want = _torch_scores(exact, m, g, v)
        rounded_want = (
            _torch_scores(rounded, mq.astype(np.float32), gq.astype(np.float32), v) if half else exact_want
        )
        arithmetic = max(arithmetic, _max_abs(got, rounded_want))
        fp32 = max(fp32, _max_abs(got, exact_want))
    return Parity(arithmetic, fp32)


def _max_abs(got: Any, want: Any) -> float:
    return max(float(np.max(np.abs(a - b))) for a, b in zip(got, want, strict=True))


@contextmanager
def _quiet_loggers(*names: str) -> Iterator[None]:
    """Hold the exporter's chatty INFO logs (graph rewrites) at WARNING for the block."""
    loggers = [logging.getLogger(n) for n in names]
    before = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for lg, level in zip(loggers, before, strict=True):
            lg.setLevel(level)


def _to_onnx(scorer: nn.Module, window: int, motion_dim: int, geometry_dim: int, dtype: torch.dtype):
    """The torch exporter's ONNX ModelProto of `scorer` with dynamic batch and time axes."""
    example = (
        torch.zeros(2, window, motion_dim, dtype=dtype),
        torch.zeros(2, window, geometry_dim, dtype=dtype),
        torch.ones(2, window, dtype=torch.bool),
    )
    batch = torch.export.Dim("batch", min=1, max=65536)
    time = torch.export.Dim("time", min=1, max=window)
    axes = {0: batch, 1: time}
    with warnings.catch_warnings(), _quiet_loggers("onnxscript", "onnx_ir", "torch.onnx"):
        warnings.simplefilter("ignore", category=UserWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        program = torch.onnx.export(
            scorer,
            example,
            None,
            dynamo=True,
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes={"motion": axes, "geometry": axes, "valid": axes},
            verbose=False,
        )
    return program.model_proto


def _onnx_parity(model_bytes: bytes, bundle: Bundle, window: int, precision: str, seed: int) -> Parity:
    """onnxruntime on the graph against the torch scorer (see `Parity`)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])

    def run(m: np.ndarray, g: np.ndarray, v: np.ndarray) -> Any:
        return session.run(list(OUTPUT_NAMES), {"motion": m, "geometry": g, "valid": v})

    shapes = ((2, window), (1, min(3, window)))  # a full window and a short start
    return _parity(run, bundle, precision, seed, shapes)


def _inside(folder: Path, path: Path) -> bool:
    """Whether `path` is a file directly in the bundle folder (refusing the bundle's own files)."""
    inside = path.resolve().parent == folder.resolve()
    if inside and path.name in (MANIFEST, WEIGHTS):
        raise ConfigError(f"export out={str(path)!r}: would overwrite the bundle's own {path.name}")
    return inside


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def onnx_scorer_entry(model: Any, precision: str, window: int, **details: Any) -> dict[str, Any]:
    """The bundle manifest entry of an ONNX window scorer (FP32, FP16 or a quantised graph)."""
    return {
        "role": "scorer",
        "format": "onnx",
        "precision": precision,
        "window": window,
        "opset": max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
        "inputs": list(INPUT_NAMES),
        "outputs": list(OUTPUT_NAMES),
        **details,
        "created": _now(),
    }


def export_onnx(
    bundle_path: str | Path,
    out: str | Path | None = None,
    *,
    precision: str = "fp32",
    window: int | None = None,
    seed: int = 0,
) -> Path:
    """Export the window scorer as ONNX (see the module docstring).

    Args:
        bundle_path: the bundle folder.
        out: the graph's path; None: ``scorer.onnx`` / ``scorer.fp16.onnx`` in the bundle.
        precision: "fp32" or "fp16".
        window: W recorded in the graph (the largest T it is meant for); None: the bundle's.
        seed: seed of the random parity-check windows.

    Returns:
        The graph's path.

    Raises:
        ExportError: non-causal network, or the graph fails onnx.checker or the parity check.
        ConfigError: bad precision or window.
    """
    import onnx

    precision = _check_precision(precision, ("fp32", "fp16"))
    bundle = load_bundle(bundle_path)
    require_causal(bundle, ExportError)
    window = check_window(
        bundle.window if window is None else window, bundle.receptive_field, "window", bundle.lookahead
    )
    target = Path(out) if out is not None else bundle.path / default_onnx_name(precision)
    listed = _inside(bundle.path, target)
    nc = bundle.network_config
    network = bundle.network()
    exported = WindowScorer(network, bundle.method(network)).eval().to(_dtype(precision))
    try:
        model = _to_onnx(exported, window, nc.motion_dim, nc.geometry_dim, _dtype(precision))
    except Exception as exc:
        raise ExportError(f"{bundle.path}: the torch ONNX exporter failed: {exc}") from exc
    model.doc_string = (
        f"mespot window scorer ({nc.network} network, method {bundle.method_name}, {precision}); "
        f"bundle {bundle.path.name}"
    )
    model.producer_name = "mespot"
    del model.metadata_props[:]
    for key, value in onnx_metadata(bundle, window, precision).items():
        model.metadata_props.add(key=key, value=value)
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"{bundle.path}: the exported graph fails onnx.checker: {exc}") from exc
    data = model.SerializeToString()
    parity = _onnx_parity(data, bundle, window, precision, seed)
    if parity.arithmetic > TOLERANCE[precision]:
        raise ExportError(
            f"{bundle.path}: the {precision} ONNX graph differs from torch (weights and inputs in "
            f"{precision}) by {parity.arithmetic:.3g} on random windows (allowed "
            f"{TOLERANCE[precision]:g}); not written"
        )
    log.info(
        "ONNX %s scorer: max abs difference %.3g from torch in %s, %.3g from torch FP32",
        precision,
        parity.arithmetic,
        precision,
        parity.fp32,
    )
    write_atomic(target, data)
    if listed:
        add_file(
            bundle.path,
            target.name,
            onnx_scorer_entry(
                model, precision, window, max_abs_diff=parity.arithmetic, max_abs_diff_fp32=parity.fp32
            ),
        )
    return target


# --------------------------------------------------------------------------------------------
# TensorRT
# --------------------------------------------------------------------------------------------


def export_tensorrt(
    bundle_path: str | Path,
    out: str | Path | None = None,
    *,
    precision: str = "fp32",
    window: int | None = None,
    onnx: str | Path | None = None,
    max_batch: int = 8,
    workspace_mb: int = 1024,
    check: bool = True,
) -> Path:
    """Build a TensorRT engine of the window scorer and list it in the bundle.

    Args:
        bundle_path: the bundle folder.
        out: the engine's path; None: ``scorer.PRECISION.engine`` in the bundle.
        precision: "fp32", "fp16" or "int8". FP32/FP16 build from the bundle's ONNX graph of that
            precision (exported first when missing); INT8 needs `onnx`.
        window: W, the engine's largest time length; None: the bundle's.
        onnx: build from this ONNX graph instead, e.g. the explicitly quantized (Q/DQ) graph the
            INT8 calibration step writes; its mespot metadata, when present, must match the bundle.
        max_batch: the largest batch the engine takes, in [1, 4096].
        workspace_mb: builder workspace in MiB.
        check: compare the engine against torch on random windows (FP32 <= 1e-4, FP16 <= 2e-2
            from the scorer with weights and inputs rounded to FP16; INT8 only logs the difference).

    Returns:
        The engine's path.

    Raises:
        ExportError: TensorRT missing, non-causal network, build or check failure.
        ConfigError: bad options.
    """
    precision = _check_precision(precision, PRECISIONS)
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or not 1 <= max_batch <= 4096:
        raise ConfigError(f"export max_batch={max_batch!r}: must be an integer in [1, 4096]")
    bundle = load_bundle(bundle_path)
    require_causal(bundle, ExportError)
    window = check_window(
        bundle.window if window is None else window, bundle.receptive_field, "window", bundle.lookahead
    )
    trt = import_tensorrt(ExportError)
    if onnx is not None:
        source = Path(onnx)
        if not source.is_file():
            raise ExportError(f"{source}: no such ONNX graph")
        meta = read_onnx_metadata(source)
        if meta.get("feature_digest", bundle.feature_digest) != bundle.feature_digest:
            raise ExportError(
                f"{source}: made for features {meta['feature_digest']}, "
                f"the bundle's are {bundle.feature_digest}"
            )
    elif precision == "int8":
        raise ConfigError(
            "export precision='int8' needs an explicitly quantized (Q/DQ) ONNX graph: pass onnx=PATH "
            "(--onnx), as written by the INT8 calibration step"
        )
    else:
        found = bundle.artifacts("onnx", precision)
        source = bundle.file(found[0][0]) if found else export_onnx(bundle.path, precision=precision)
    target = Path(out) if out is not None else bundle.path / f"scorer.{precision}.engine"
    listed = _inside(bundle.path, target)
    engine = build_engine(
        source, window=window, max_batch=max_batch, workspace_mb=workspace_mb, error=ExportError
    )
    write_atomic(target, engine)
    parity = None
    if check:
        parity = _tensorrt_parity(target, bundle, window, precision)
    if listed:
        add_file(
            bundle.path,
            target.name,
            {
                "role": "scorer",
                "format": "tensorrt",
                "precision": precision,
                "window": window,
                "max_batch": max_batch,
                "tensorrt_version": str(trt.__version__),
                "source": {"file": source.name, "sha256": sha256_file(source)},
                "max_abs_diff": None if parity is None else parity.arithmetic,
                "max_abs_diff_fp32": None if parity is None else parity.fp32,
                "created": _now(),
            },
        )
    return target


def _tensorrt_parity(engine_path: Path, bundle: Bundle, window: int, precision: str) -> Parity:
    """The engine against the torch scorer (see `Parity`); raises past tolerance (FP32, FP16)."""
    from engine.runtime.tensorrt_backend import TensorRTBackend

    with TensorRTBackend(bundle, engine=engine_path, window=window) as backend:
        parity = _parity(backend.score, bundle, precision, 0, ((1, window),))
    tol = TOLERANCE.get(precision)
    if tol is not None and parity.arithmetic > tol:
        engine_path.unlink(missing_ok=True)
        raise ExportError(
            f"{engine_path}: the {precision} engine differs from torch (weights and inputs in "
            f"{precision}) by {parity.arithmetic:.3g} (allowed {tol:g}); removed"
        )
    log.info(
        "TensorRT %s engine: max abs difference %.3g from torch in %s, %.3g from torch FP32",
        precision,
        parity.arithmetic,
        precision,
        parity.fp32,
    )
    return parity


register_format(
    ExportFormat("onnx", ".onnx", False, "ONNX graph for onnxruntime (CPU) and TensorRT", export_onnx)
)
register_format(
    ExportFormat("tensorrt", ".engine", True, "serialized TensorRT 11 engine (NVIDIA GPU)", export_tensorrt)
)


# --------------------------------------------------------------------------------------------
# CLI: mespot export BUNDLE --format onnx|tensorrt
# --------------------------------------------------------------------------------------------


__all__ = [
    "EXPORT_FORMATS",
    "TOLERANCE",
    "ExportError",
    "ExportFormat",
    "export",
    "export_onnx",
    "export_tensorrt",
    "random_windows",
    "register_format",
]
