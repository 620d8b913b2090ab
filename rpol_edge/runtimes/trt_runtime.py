"""Native TensorRT runtime: a serialized engine, run through cuda-python with no per-frame allocation.

The sidecar (``<engine>.json``) is read and checked against this machine's TensorRT and GPU before
the plan is touched. ``activate`` deserializes the plan, allocates device buffers for the
engine's max batch and pinned host buffers beside them, and binds the device addresses once;
``_infer`` only copies frames in, enqueues, copies the two maps out. With ``cuda_graph=True`` the
copy-in / enqueue / copy-out sequence is captured once per batch size and replayed with one launch,
which removes most of the launch overhead on small inputs (Jetson, batch 1).

Two rules of TensorRT and CUDA that this code follows, because breaking them fails silently:

- After every input-shape change the context must run one ordinary enqueue before a captured
  graph is replayed (TensorRT updates shape-dependent state during enqueue, and a graph replays
  only the kernels it recorded). So a batch size that differs from the previous call's runs
  plainly once, and its graph (captured right after that run, or reused) replays from the next
  call of the same size on: a batch 8 -> 3 -> 8 sequence never replays a stale graph.
- The current CUDA device is per host thread. ``infer`` may run on any thread (the live pipeline
  runs it on its inference thread), so the device is made current on the calling thread before
  any CUDA call.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rpol_edge.core.engine_meta import (
    EngineMeta,
    check_engine_compatible,
    check_engine_fresh,
    device_model,
    read_engine_meta,
)
from rpol_edge.core.onnx_meta import INPUT, OUTPUTS
from rpol_edge.runtimes import cuda_mem
from rpol_edge.runtimes.base import InferenceError, Output, Runtime
from rpol_edge.runtimes.trt_common import TrtUnavailable, dims, require_tensorrt, trt_logger

if TYPE_CHECKING:
    import tensorrt as trt


def parse_device(device: str) -> int:
    """``cuda`` / ``cuda:N`` / ``N`` -> the CUDA device index; anything else is refused."""
    m = re.fullmatch(r"(?:cuda|gpu)(?::(\d+))?|(\d+)", device.strip().lower())
    if not m:
        raise InferenceError(f"trt runtime runs on a CUDA device: device=cuda or cuda:N, not {device!r}")
    return int(m.group(1) or m.group(2) or 0)


@dataclass
class _Binding:
    name: str
    dtype: np.dtype[Any]
    per_item: tuple[int, ...]
    """Shape of one batch item (the tensor's shape without its batch dimension)."""
    device: cuda_mem.DeviceBuffer
    host: cuda_mem.HostBuffer

    def nbytes(self, n: int) -> int:
        return n * int(np.prod(self.per_item, dtype=np.int64)) * self.dtype.itemsize


class TrtRuntime(Runtime):
    name = "trt"

    def __init__(self, model_path: Path, device: str = "cuda", cuda_graph: bool = False) -> None:
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise InferenceError(f"{self.model_path}: no such engine file")
        self.device_index = parse_device(device)
        try:
            require_tensorrt()
            import tensorrt as trt

            count = cuda_mem.visible_devices()
            if count <= self.device_index:
                raise InferenceError(f"trt runtime: no CUDA device {self.device_index} ({count} visible)")
            gpu_name, cc = cuda_mem.device_info(self.device_index)
        except (TrtUnavailable, cuda_mem.CudaUnavailable, cuda_mem.CudaError) as exc:
            raise InferenceError(f"trt runtime: {exc}") from None
        self.engine_meta: EngineMeta = read_engine_meta(self.model_path)
        check_engine_compatible(
            self.engine_meta, trt.__version__, gpu_name, cc, str(self.model_path), device_model()
        )
        check_engine_fresh(self.engine_meta, self.model_path)
        em = self.engine_meta
        super().__init__(em.model.replace(precision=em.precision), em.min_batch, em.max_batch)
        self.gpu_name = gpu_name
        self.cuda_graph = cuda_graph
        self._runtime: trt.Runtime | None = None
        self._engine: trt.ICudaEngine | None = None
        self._context: trt.IExecutionContext | None = None
        self._stream: cuda_mem.Stream | None = None
        self._bindings: dict[str, _Binding] = {}
        self._batch = 0
        """Batch size the context's input shape is currently set to."""
        self._graphs: dict[int, cuda_mem.CudaGraph] = {}

    @property
    def description(self) -> str:
        graph = " graph" if self.cuda_graph else ""
        return f"trt {self.gpu_name} {self.meta.precision}{graph}"

    def _use_device(self) -> None:
        """Make this runtime's GPU current on the calling thread: a new thread starts on device 0,
        and another runtime on this thread may have chosen another GPU since (cudaSetDevice on the
        current device is cheap, so it is not cached)."""
        cuda_mem.set_device(self.device_index)

    def activate(self) -> None:
        import tensorrt as trt

        self._use_device()
        plan = self.model_path.read_bytes()
        em = self.engine_meta
        if em.engine_sha256 and hashlib.sha256(plan).hexdigest() != em.engine_sha256:
            raise InferenceError(
                f"{self.model_path}: the plan does not match its sidecar (replaced or damaged); rebuild it: "
                "rpol-edge export MODEL --onnx --trt -o DIR"
            )
        try:
            self._runtime = trt.Runtime(trt_logger())
            engine = self._runtime.deserialize_cuda_engine(plan)
            if engine is None:
                raise InferenceError(
                    f"{self.model_path}: TensorRT could not deserialize the plan; rebuild it"
                )
            self._engine = engine
            context = engine.create_execution_context()
            if context is None:
                raise InferenceError(f"{self.model_path}: no execution context (out of GPU memory?)")
            self._context = context
            self._stream = cuda_mem.Stream()
            self._allocate(engine, context)
        except BaseException:
            self.deactivate()
            raise

    def _allocate(self, engine: trt.ICudaEngine, context: trt.IExecutionContext) -> None:
        import tensorrt as trt

        k, m = self.meta.input_size, self.meta.n_heads
        numpy_of = {trt.DataType.UINT8: np.dtype(np.uint8), trt.DataType.FLOAT: np.dtype(np.float32)}
        expected: dict[str, tuple[trt.TensorIOMode, np.dtype[Any], tuple[int, ...]]] = {
            INPUT: (trt.TensorIOMode.INPUT, np.dtype(np.uint8), self.meta.input_shape()),
            "score": (trt.TensorIOMode.OUTPUT, np.dtype(np.float32), (m, k, k)),
            "mask": (trt.TensorIOMode.OUTPUT, np.dtype(np.uint8), (m, k, k)),
        }
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        if "peak" in names:  # engines built from graphs exported before it have score and mask only
            expected["peak"] = (trt.TensorIOMode.OUTPUT, np.dtype(np.float32), (m,))
        if sorted(names) != sorted(expected):
            raise InferenceError(f"{self.model_path}: engine tensors {names}, expected {sorted(expected)}")
        hi = self.max_batch or self.min_batch
        for name, (mode, dtype, per_item) in expected.items():
            trt_dtype = engine.get_tensor_dtype(name)
            got_dtype = numpy_of.get(trt_dtype, trt_dtype)
            shape = dims(engine.get_tensor_shape(name))
            if engine.get_tensor_mode(name) != mode or got_dtype != dtype or shape[1:] != per_item:
                raise InferenceError(
                    f"{self.model_path}: tensor {name} is {got_dtype} {shape}, expected {dtype} (N, "
                    f"{', '.join(map(str, per_item))})"
                )
            device = cuda_mem.DeviceBuffer(hi * int(np.prod(per_item)) * dtype.itemsize)
            binding = _Binding(name, dtype, per_item, device, cuda_mem.HostBuffer((hi, *per_item), dtype))
            self._bindings[name] = binding
            if not context.set_tensor_address(name, device.ptr):
                raise InferenceError(f"{self.model_path}: TensorRT refused the address of {name}")

    def deactivate(self) -> None:
        if self._stream is not None or self._bindings:
            self._use_device()
        for graph in self._graphs.values():
            graph.destroy()
        self._graphs.clear()
        if self._stream is not None:
            self._stream.synchronize()
        for b in self._bindings.values():
            b.device.free()
            b.host.free()
        self._bindings.clear()
        if self._stream is not None:
            self._stream.destroy()
            self._stream = None
        # Context before engine before runtime: each holds resources of the next.
        self._context = None
        self._engine = None
        self._runtime = None
        self._batch = 0

    def _set_batch(self, n: int) -> bool:
        """Set the context's input shape to batch ``n``; True when it changed."""
        assert self._context is not None
        if n == self._batch:
            return False
        self._batch = 0  # unknown until TensorRT accepts the new shape
        if not self._context.set_input_shape(INPUT, (n, *self.meta.input_shape())):
            raise InferenceError(
                f"TensorRT refused batch {n} (engine profile {self.min_batch}..{self.max_batch})"
            )
        self._batch = n
        return True

    def _enqueue(self, n: int) -> None:
        """Copy-in, execute, copy-out for batch ``n`` on the stream (captured as-is by a graph)."""
        assert self._context is not None and self._stream is not None
        frames = self._bindings[INPUT]
        cuda_mem.memcpy_htod_async(frames.device.ptr, frames.host.ptr, frames.nbytes(n), self._stream)
        if not self._context.execute_async_v3(self._stream.handle):
            raise InferenceError("TensorRT execute_async_v3 failed (see its log above)")
        for name in [n for n in OUTPUTS if n in self._bindings]:
            out = self._bindings[name]
            cuda_mem.memcpy_dtoh_async(out.host.ptr, out.device.ptr, out.nbytes(n), self._stream)

    def _capture(self, n: int) -> None:
        """Capture batch ``n``'s sequence; the context has just run it plainly at this shape."""
        assert self._stream is not None
        try:
            self._graphs[n] = cuda_mem.CudaGraph.capture(self._stream, lambda: self._enqueue(n))
        except (cuda_mem.CudaError, InferenceError) as exc:
            warnings.warn(f"CUDA graph capture failed ({exc}); running without graphs", stacklevel=4)
            self.cuda_graph = False

    def _infer(self, frames: np.ndarray) -> Output:
        assert self._stream is not None
        self._use_device()
        n = frames.shape[0]
        changed = self._set_batch(n)
        np.copyto(self._bindings[INPUT].host.array[:n], frames)
        graph = self._graphs.get(n) if self.cuda_graph and not changed else None
        if graph is not None:
            graph.launch()
        else:
            # A plain run: the first at this shape (TensorRT's rule before any replay), or no graphs.
            self._enqueue(n)
        self._stream.synchronize()
        # Copies: the pinned buffers are overwritten by the next call.
        score = self._bindings["score"].host.array[:n].copy()
        mask = self._bindings["mask"].host.array[:n].copy()
        peak = self._bindings["peak"].host.array[:n].copy() if "peak" in self._bindings else None
        if self.cuda_graph and n not in self._graphs:
            self._capture(n)  # replayed from the next call of this size on
        return Output(score=score, mask=mask, peak=peak)
