"""The onnxruntime backend: the bundle's exported ``scorer.onnx`` on the CPU execution provider."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np

from engine.bundle import WEIGHTS, Bundle, BundleError
from engine.runtime.base import BACKENDS, Backend, BackendError, check_threads
from engine.runtime.contract import INPUT_NAMES, METADATA_PREFIX, OUTPUT_NAMES, PRECISIONS
from stream.errors import ConfigError

log = logging.getLogger(__name__)


def _graph(bundle: Bundle, precision: str | None = None) -> Path | None:
    """The bundle's ONNX scorer of a precision (newest first); precision None: FP32 if listed,
    else the newest of any precision."""
    if precision is not None:
        found = bundle.artifacts("onnx", precision)
    else:
        found = bundle.artifacts("onnx", "fp32") or bundle.artifacts("onnx")
    return bundle.file(found[0][0]) if found else None


@BACKENDS.register("onnxruntime")
class OnnxRuntimeBackend(Backend):
    """Runs the exported ONNX window scorer with onnxruntime.

    The graph's embedded metadata must match the bundle (feature digest and weights hash), so a
    graph exported from another model is refused rather than run (a graph without that metadata,
    e.g. from a quantization tool that drops it, is run with a warning).

    Args:
        bundle: the bundle.
        path: the ONNX graph; None: the bundle's (FP32 preferred, or of `precision`).
        precision: with path None, run the bundle's graph of this precision ("fp32", "fp16",
            "int8": ``scorer.int8.onnx`` from ``mespot quantize``); None: FP32 preferred.
        window: W; None: the graph's own (its ``mespot.window`` metadata).
        threads: onnxruntime intra-op threads (default 1: the scorer is small, and a live process
            shares its cores with capture, face tracking and optical flow).
        providers: onnxruntime execution providers (default CPU only).
    """

    name = "onnxruntime"

    def __init__(
        self,
        bundle: Bundle,
        *,
        path: str | Path | None = None,
        precision: str | None = None,
        window: int | None = None,
        threads: int = 1,
        providers: tuple[str, ...] = ("CPUExecutionProvider",),
    ) -> None:
        import onnxruntime as ort

        if path is not None and precision is not None:
            raise ConfigError("onnxruntime backend: give path or precision, not both")
        if precision is not None and precision not in PRECISIONS:
            raise ConfigError(f"onnxruntime backend precision={precision!r}: choose one of {PRECISIONS}")
        graph = Path(path) if path is not None else _graph(bundle, precision)
        if graph is None and precision is not None:
            hint = "mespot quantize" if precision == "int8" else f"mespot export --precision {precision}"
            raise BackendError(f"{bundle.path}: no {precision} ONNX scorer; run `{hint} {bundle.path} ...`")
        if graph is None:
            raise BackendError(
                f"{bundle.path}: no ONNX scorer; run `mespot export {bundle.path} --format onnx`"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = check_threads(threads)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(graph), options, providers=list(providers))
        except Exception as exc:
            raise BundleError(graph, f"onnxruntime cannot load the graph: {exc}") from exc
        meta = {
            k[len(METADATA_PREFIX) :]: v
            for k, v in self.session.get_modelmeta().custom_metadata_map.items()
            if k.startswith(METADATA_PREFIX)
        }
        for key, want in (
            ("feature_digest", bundle.feature_digest),
            ("weights_sha256", bundle.files[WEIGHTS]["sha256"]),
        ):
            if key not in meta:  # e.g. a quantized graph whose tool dropped the metadata
                log.warning("%s carries no mespot.%s: cannot check it belongs to %s", graph, key, bundle.path)
            elif meta[key] != want:
                raise BundleError(
                    graph, f"exported from another model: its {key} is {meta[key]!r}, the bundle's {want!r}"
                )
        # The look-ahead is no weight: a graph of the same weights with another L scores other rows.
        # Graphs exported before look-ahead existed carry no key and are strictly causal (L = 0).
        if meta and int(meta.get("lookahead", "0")) != bundle.lookahead:
            raise BundleError(
                graph,
                f"exported with a look-ahead of {meta.get('lookahead', '0')} snippets, the bundle's network "
                f"has {bundle.lookahead}; export it again (mespot export {bundle.path} --format onnx)",
            )
        super().__init__(
            bundle, window=int(meta["window"]) if window is None and "window" in meta else window
        )
        self.path = graph
        self.precision = meta.get("precision", "fp32")
        inputs = {i.name: i for i in self.session.get_inputs()}
        if set(inputs) != set(INPUT_NAMES):
            raise BundleError(graph, f"inputs {sorted(inputs)}, expected {list(INPUT_NAMES)}")
        self._float = np.float16 if inputs["motion"].type == "tensor(float16)" else np.float32

    @classmethod
    def unavailable(cls, bundle: Bundle) -> str | None:
        if importlib.util.find_spec("onnxruntime") is None:
            return "onnxruntime is not installed"
        if _graph(bundle) is None:
            return "the bundle has no ONNX scorer (mespot export BUNDLE --format onnx)"
        return None

    def _score(
        self, motion: np.ndarray, geometry: np.ndarray, valid: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        cls, act = self.session.run(
            list(OUTPUT_NAMES),
            {"motion": motion.astype(self._float), "geometry": geometry.astype(self._float), "valid": valid},
        )
        return cls, act  # (B, T, 2), (B, T)

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]
        super().close()
