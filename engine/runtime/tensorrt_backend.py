"""The TensorRT backend: a serialized engine from ``mespot export --format tensorrt``, on an NVIDIA GPU.

``tensorrt`` and ``pycuda`` (the optional ``gpu`` extra) are imported only when this backend is
opened or asked whether it can run, never at package import time (DESIGN invariant 5). Inference
uses the TensorRT 11 name-based I/O API: ``set_input_shape`` / ``set_tensor_address`` and
``execute_async_v3`` on a CUDA stream, with device buffers sized once for the engine's largest
profile shape (max_batch, window).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from engine.bundle import Bundle, BundleError
from engine.runtime.base import BACKENDS, Backend, BackendError
from engine.runtime.contract import INPUT_NAMES, OUTPUT_NAMES
from stream.errors import MespotError


def import_tensorrt(error: type[MespotError] = BackendError) -> Any:
    """Import ``tensorrt``, the one place it is imported (lazily: GPU libraries are never imported
    at package import time).

    Raises:
        error: TensorRT is not installed (`BackendError` for the backend, `ExportError` for an
            export).
    """
    try:
        import tensorrt
    except ImportError as exc:
        raise error(
            "TensorRT is not installed (it needs an NVIDIA GPU): pip install 'mespot[gpu]' "
            f"(tensorrt>=11, pycuda); {exc}"
        ) from exc
    return tensorrt


def build_engine(
    onnx_path: str | Path,
    *,
    window: int,
    max_batch: int = 8,
    workspace_mb: int = 1024,
    tf32: bool = False,
    error: type[MespotError] = BackendError,
) -> bytes:
    """Build a serialized TensorRT engine from an ONNX window-scorer graph (TensorRT 11 API).

    The network is strongly typed (TensorRT 11 has no other kind), so the engine's precision is
    the graph's: FP32, FP16 (a float16 graph) or INT8 (a Q/DQ graph). One optimization profile
    covers batch 1..max_batch and time 1..window, tuned for (1, window), the live shape.

    Args:
        onnx_path: the graph (``scorer.onnx``, ``scorer.fp16.onnx`` or a Q/DQ graph).
        window: W, the largest time length.
        max_batch: the largest batch.
        workspace_mb: builder workspace limit in MiB.
        tf32: allow TF32 math for FP32 layers (faster, ~1e-3 relative error); off by default so
            an FP32 engine matches torch.

    Returns:
        The serialized engine.

    Raises:
        error: TensorRT missing, or the graph cannot be parsed or built.
    """
    trt = import_tensorrt(error)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if strongly_typed is not None:  # implied (and ignored) in TensorRT 11, needed on 10.x
        flags |= 1 << int(strongly_typed)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise error(f"{onnx_path}: TensorRT cannot parse the ONNX graph: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if not tf32 and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        rest = tuple(int(d) for d in tuple(tensor.shape)[2:])  # feature width, () for valid
        profile.set_shape(tensor.name, (1, 1, *rest), (1, window, *rest), (max_batch, window, *rest))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise error(f"{onnx_path}: TensorRT could not build an engine (see its log above)")
    return bytes(serialized)


def import_gpu() -> tuple[Any, Any]:
    """Import (tensorrt, pycuda.driver), with a clear error when either is missing."""
    trt = import_tensorrt()
    try:
        import pycuda.driver as cuda
    except ImportError as exc:
        raise BackendError(f"the tensorrt backend needs pycuda: pip install 'mespot[gpu]'; {exc}") from exc
    return trt, cuda


def cuda_problem() -> str | None:
    """Why no CUDA device can be used here (libraries or device missing), or None."""
    for module in ("tensorrt", "pycuda"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install 'mespot[gpu]')"
    try:
        import pycuda.driver as cuda

        cuda.init()
        if cuda.Device.count() < 1:
            return "no CUDA device"
    except Exception as exc:  # a driver without a device raises its own error types
        return f"CUDA is unavailable: {exc}"
    return None


def _engine(bundle: Bundle) -> tuple[Path, dict[str, Any]] | None:
    found = bundle.artifacts("tensorrt")
    return (bundle.file(found[0][0]), dict(found[0][1])) if found else None


@BACKENDS.register("tensorrt")
class TensorRTBackend(Backend):
    """Runs a serialized TensorRT engine of the window scorer.

    Args:
        bundle: the bundle.
        engine: the engine file; None: the bundle's newest.
        window: W; None: the engine's (its manifest entry, else its profile's largest time length).
        device: CUDA device ordinal.
    """

    name = "tensorrt"

    def __init__(
        self,
        bundle: Bundle,
        *,
        engine: str | Path | None = None,
        window: int | None = None,
        device: int = 0,
    ) -> None:
        trt, cuda = import_gpu()
        entry: dict[str, Any] = {}
        if engine is None:
            found = _engine(bundle)
            if found is None:
                raise BackendError(
                    f"{bundle.path}: no TensorRT engine; run `mespot export --format tensorrt`"
                )
            path, entry = found
        else:
            path = Path(engine)
        cuda.init()
        self._cuda = cuda
        self._ctx = cuda.Device(device).retain_primary_context()
        self._ctx.push()
        self._buffers: dict[str, Any] = {}
        try:
            runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
            self.engine = runtime.deserialize_cuda_engine(path.read_bytes())
            if self.engine is None:
                raise BundleError(
                    path, "TensorRT cannot deserialize the engine (built by another TensorRT or GPU?)"
                )
            names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
            if sorted(names) != sorted(INPUT_NAMES + OUTPUT_NAMES):
                raise BundleError(
                    path, f"engine tensors {names}, expected {list(INPUT_NAMES + OUTPUT_NAMES)}"
                )
            _, _, largest = self.engine.get_tensor_profile_shape("motion", 0)  # (min, opt, max) shapes
            max_batch, max_time = int(largest[0]), int(largest[1])
            if window is None:
                window = int(entry.get("window", max_time))
            if window > max_time:
                raise BackendError(
                    f"{path}: window {window} exceeds the engine's largest time length {max_time}"
                )
            super().__init__(bundle, window=window)
            self.max_batch = max_batch
            self.path = path
            self.context = self.engine.create_execution_context()
            self._dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
            widths = {
                "motion": self.motion_dim,
                "geometry": self.geometry_dim,
                "valid": 1,
                "class_scores": 2,
                "actionness": 1,
            }
            # One device buffer and one page-locked host buffer per tensor, sized once for the
            # largest profile shape; a call uses their leading part.
            self._host: dict[str, np.ndarray] = {}
            for n in names:
                size = max_batch * self.window * widths[n]
                self._host[n] = cuda.pagelocked_empty(size, self._dtypes[n])
                self._buffers[n] = cuda.mem_alloc(size * self._dtypes[n].itemsize)
                self.context.set_tensor_address(n, int(self._buffers[n]))
            self.stream = cuda.Stream()
        except BaseException:
            self._free()
            self._ctx.pop()
            self._ctx.detach()
            raise
        self._ctx.pop()

    @classmethod
    def unavailable(cls, bundle: Bundle) -> str | None:
        if _engine(bundle) is None:
            return "the bundle has no TensorRT engine (mespot export BUNDLE --format tensorrt)"
        return cuda_problem()

    def _score(
        self, motion: np.ndarray, geometry: np.ndarray, valid: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        cuda = self._cuda
        self._ctx.push()
        try:
            # motion (B, T, Dm), geometry (B, T, Dg), valid (B, T)
            for name, array in (("motion", motion), ("geometry", geometry), ("valid", valid)):
                staged = self._host[name][: array.size].reshape(array.shape)
                staged[...] = array  # cast to the engine's dtype (float16 for an FP16 engine)
                if not self.context.set_input_shape(name, array.shape):
                    raise BackendError(f"{self.path}: the engine refuses {name} of shape {array.shape}")
                cuda.memcpy_htod_async(self._buffers[name], staged, self.stream)
            outputs = {}
            for name in OUTPUT_NAMES:  # class_scores (B, T, 2), actionness (B, T)
                shape = tuple(int(d) for d in self.context.get_tensor_shape(name))
                outputs[name] = self._host[name][: int(np.prod(shape))].reshape(shape)
            if not self.context.execute_async_v3(self.stream.handle):
                raise BackendError(f"{self.path}: TensorRT execution failed")
            for name, staged in outputs.items():
                cuda.memcpy_dtoh_async(staged, self._buffers[name], self.stream)
            self.stream.synchronize()
        finally:
            self._ctx.pop()
        # copies: the staging buffers are reused by the next call
        return outputs["class_scores"].astype(np.float32), outputs["actionness"].astype(np.float32)

    def _free(self) -> None:
        for buffer in self._buffers.values():
            buffer.free()
        self._buffers = {}
        self._host = {}

    def close(self) -> None:
        if self.closed:
            return
        self._ctx.push()
        try:
            self._free()
            self.context = None
            self.engine = None
        finally:
            self._ctx.pop()
            self._ctx.detach()
        super().close()
