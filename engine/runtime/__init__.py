"""Runtime backends for a bundle's window scorer, chosen by name: torch, onnxruntime, tensorrt.

``open_backend(bundle, "auto")`` picks the fastest one that can run here: TensorRT when the
library, a CUDA device and an engine in the bundle are all present, else onnxruntime when the bundle
holds an ONNX scorer, else torch (always possible). GPU libraries are imported only when the
TensorRT backend is opened or probed, and torch only when the torch backend is used (it is
registered by its import path), so an ONNX or TensorRT deployment starts without it.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any

from engine.bundle import Bundle, load_bundle
from engine.runtime import onnx_backend, tensorrt_backend
from engine.runtime.base import BACKENDS, Backend, BackendError
from engine.runtime.scorer import SnippetScore, StreamScorer, sequence_snippets, stream_scores

log = logging.getLogger(__name__)

# "auto" tries these in order.
AUTO_ORDER: tuple[str, ...] = ("tensorrt", "onnxruntime", "torch")

BACKENDS.register_lazy("torch", "engine.runtime.torch_backend:TorchBackend")

OnnxRuntimeBackend = onnx_backend.OnnxRuntimeBackend
TensorRTBackend = tensorrt_backend.TensorRTBackend


def __getattr__(name: str) -> Any:
    """``TorchBackend``, imported (with torch) on first access."""
    if name == "TorchBackend":
        return BACKENDS.get("torch")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _accepted(cls: type, options: dict[str, Any]) -> dict[str, Any]:
    params = inspect.signature(cls.__init__).parameters
    return {k: v for k, v in options.items() if k in params}


def open_backend(bundle: Bundle | str | Path, name: str = "auto", **options: Any) -> Backend:
    """Open a backend on a bundle.

    Args:
        bundle: a loaded bundle or its folder.
        name: "auto", or a name in ``BACKENDS`` ("tensorrt", "onnxruntime", "torch").
        **options: the backend's options (e.g. window, threads, device, path, engine). With
            "auto", each candidate receives only the options its constructor takes.

    Returns:
        The open backend (a context manager).

    Raises:
        BackendError: the named backend cannot run here (the message says why).
        ConfigError: unknown backend name.
    """
    if not isinstance(bundle, Bundle):
        bundle = load_bundle(bundle)
    if name != "auto":
        cls = BACKENDS.get(name)
        reason = cls.unavailable(bundle)  # type: ignore[attr-defined]
        if reason is not None:
            raise BackendError(f"{bundle.path}: the {name} backend cannot run here: {reason}")
        return cls(bundle, **options)
    for candidate in AUTO_ORDER:
        cls = BACKENDS.get(candidate)
        reason = cls.unavailable(bundle)  # type: ignore[attr-defined]
        if reason is not None:
            log.info("backend %s skipped: %s", candidate, reason)
            continue
        try:
            backend = cls(bundle, **_accepted(cls, options))
        except BackendError as exc:
            if candidate == AUTO_ORDER[-1]:
                raise
            log.warning("backend %s could not be opened, trying the next: %s", candidate, exc)
            continue
        log.info("backend %s chosen for %s", candidate, bundle.path)
        return backend
    raise BackendError(f"{bundle.path}: no runtime backend can run it")  # pragma: no cover - torch always can


__all__ = [
    "AUTO_ORDER",
    "BACKENDS",
    "Backend",
    "BackendError",
    "OnnxRuntimeBackend",
    "SnippetScore",
    "StreamScorer",
    "TensorRTBackend",
    "TorchBackend",
    "open_backend",
    "sequence_snippets",
    "stream_scores",
]
