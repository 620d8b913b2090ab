"""Small typed helpers over NVIDIA cuda-python (``cuda.bindings.runtime``): errors, device and
pinned host buffers, streams, async copies and CUDA-graph capture.

Only what the TensorRT runtime needs, so it stays small enough to read against the CUDA runtime
docs. Every cuda-bindings call returns ``(cudaError_t, *values)``; :func:`check` turns a failure
into :class:`CudaError` carrying the error's name, so no return code is silently dropped.
Buffers are released explicitly (``free()`` or a ``with`` block), never in ``__del__``: a
finalizer can run after the CUDA context is gone, or on another thread.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from types import TracebackType
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

INSTALL_HINT = (
    "pip install 'rpol-edge[tensorrt]' (or 'rpol-edge[cuda]'); on Jetson use JetPack's packages "
    "through a venv made with --system-site-packages"
)


class CudaError(RuntimeError):
    """A CUDA runtime call failed; ``name`` is the cudaError_t name (e.g. cudaErrorMemoryAllocation)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}" if message else name)
        self.name = name


class CudaUnavailable(ImportError):
    """cuda-python (cuda.bindings) is not installed."""


def cudart() -> Any:
    """The CUDA runtime bindings, imported on first use (they ship no type stubs).

    ``cuda.bindings.runtime`` (cuda-bindings >= 12.6), else ``cuda.cudart`` (cuda-python < 12.6, the
    version that matches JetPack 6.0's CUDA 12.2): the same functions under the older module path.
    """
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:
            from cuda import cudart as runtime  # type: ignore[no-redef]
        except ImportError:
            raise CudaUnavailable(f"CUDA support needs cuda-python (cuda.bindings): {INSTALL_HINT}") from None
    return runtime


def native_handle(obj: Any) -> int:
    """A cuda-bindings handle (a stream) as the integer TensorRT takes. ``int(obj)`` is deprecated
    from cuda-bindings 12.9.1 / 13.0 for ``cuda.bindings.utils.get_cuda_native_handle``; the
    versions that match JetPack 6 (cuda-python 12.2 / 12.6) have only ``int()``."""
    try:
        from cuda.bindings.utils import get_cuda_native_handle
    except ImportError:
        return int(obj)
    return int(get_cuda_native_handle(obj))


def error_name(err: Any) -> str:
    rt = cudart()
    res = rt.cudaGetErrorName(err)
    name = res[1] if res[0] == rt.cudaError_t.cudaSuccess else None
    if isinstance(name, bytes):
        return name.decode()
    return str(getattr(err, "name", err))


def check(result: Any) -> Any:
    """Unpack a cuda-bindings result ``(err, *values)``: raise :class:`CudaError` unless success,
    else return ``None`` / the single value / the tuple of values."""
    rt = cudart()
    if isinstance(result, tuple):
        err, values = result[0], result[1:]
    else:
        err, values = result, ()
    if err != rt.cudaError_t.cudaSuccess:
        res = rt.cudaGetErrorString(err)
        text = res[1].decode() if res[0] == rt.cudaError_t.cudaSuccess and isinstance(res[1], bytes) else ""
        raise CudaError(error_name(err), text)
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def device_count() -> int:
    """CUDA devices visible; 0 when cuda-python, the driver or a GPU is missing (never raises).
    For a message to a user, :func:`visible_devices` says why there are none."""
    try:
        return visible_devices()
    except (CudaUnavailable, CudaError):
        return 0


def _versions(rt: Any) -> tuple[int, int]:
    """(driver, runtime) CUDA versions as 12020-style integers; 0 where unknown (no driver)."""
    got = []
    for call in (rt.cudaDriverGetVersion, rt.cudaRuntimeGetVersion):
        res = call()
        got.append(int(res[1]) if res[0] == rt.cudaError_t.cudaSuccess else 0)
    return got[0], got[1]


def _cuda_version(v: int) -> str:
    return f"{v // 1000}.{v % 1000 // 10}"


def visible_devices() -> int:
    """CUDA devices visible. Raises :class:`CudaError` named by CUDA when the runtime cannot start,
    with what to do for the usual cause: cuda-bindings built for a newer CUDA than the driver
    (cuda-bindings 13 statically links the CUDA 13 runtime; JetPack 6's driver is CUDA 12.x)."""
    rt = cudart()
    res = rt.cudaGetDeviceCount()
    if res[0] == rt.cudaError_t.cudaSuccess:
        return int(res[1])
    driver, runtime = _versions(rt)
    name = error_name(res[0])
    if name in ("cudaErrorInsufficientDriver", "cudaErrorNoDevice") and driver == 0:
        hint = "no NVIDIA driver found (or no GPU visible)"
    elif name == "cudaErrorInsufficientDriver":
        major = driver // 1000
        hint = (
            f"the driver supports CUDA {_cuda_version(driver)}, cuda-bindings needs "
            f"{_cuda_version(runtime)}: pip install 'cuda-bindings>={major}.0,<{major + 1}' (on Jetson, "
            "the jetpack60 / jetpack61 extra: docs/jetson.md)"
        )
    else:
        hint = f"driver CUDA {_cuda_version(driver)}, runtime {_cuda_version(runtime)}"
    raise CudaError(name, hint)


def set_device(index: int) -> None:
    check(cudart().cudaSetDevice(index))


def device_info(index: int = 0) -> tuple[str, str]:
    """(GPU name, compute capability "major.minor") of a device, as engines are keyed by them."""
    props = check(cudart().cudaGetDeviceProperties(index))
    name = props.name
    if isinstance(name, bytes):
        name = name.split(b"\0", 1)[0].decode(errors="replace")
    return str(name).strip(), f"{int(props.major)}.{int(props.minor)}"


class Stream:
    """A non-blocking CUDA stream; ``handle`` is the integer TensorRT's execute_async_v3 takes."""

    def __init__(self) -> None:
        rt = cudart()
        self.stream: Any = check(rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking))

    @property
    def handle(self) -> int:
        return native_handle(self.stream)

    def synchronize(self) -> None:
        check(cudart().cudaStreamSynchronize(self.stream))

    def destroy(self) -> None:
        if self.stream is not None:
            check(cudart().cudaStreamDestroy(self.stream))
            self.stream = None

    def __enter__(self) -> Stream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.destroy()


class DeviceBuffer:
    """``nbytes`` of device memory (cudaMalloc); ``ptr`` is its address."""

    def __init__(self, nbytes: int) -> None:
        if nbytes <= 0:
            raise ValueError(f"device buffer of {nbytes} bytes")
        self.nbytes = int(nbytes)
        self.ptr: int = int(check(cudart().cudaMalloc(self.nbytes)))

    def free(self) -> None:
        if self.ptr:
            check(cudart().cudaFree(self.ptr))
            self.ptr = 0

    def __enter__(self) -> DeviceBuffer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.free()


class HostBuffer:
    """Page-locked host memory (cudaMallocHost) seen as a numpy array of ``shape`` and ``dtype``.

    Pinned memory is what lets cudaMemcpyAsync overlap with the host and be captured in a graph.
    ``array`` is a view of that memory: do not keep it (or slices of it) after ``free()``.
    """

    def __init__(self, shape: tuple[int, ...], dtype: DTypeLike) -> None:
        self.dtype = np.dtype(dtype)
        self.shape = tuple(int(s) for s in shape)
        self.nbytes = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize
        if self.nbytes <= 0:
            raise ValueError(f"host buffer of shape {self.shape}")
        self.ptr: int = int(check(cudart().cudaMallocHost(self.nbytes)))
        raw = (ctypes.c_ubyte * self.nbytes).from_address(self.ptr)
        self._array: np.ndarray | None = np.frombuffer(memoryview(raw), dtype=self.dtype).reshape(self.shape)

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            raise CudaError("cudaErrorInvalidValue", "host buffer used after free()")
        return self._array

    def free(self) -> None:
        if self.ptr:
            self._array = None
            check(cudart().cudaFreeHost(self.ptr))
            self.ptr = 0

    def __enter__(self) -> HostBuffer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.free()


def memcpy_htod_async(dst: int, src: int, nbytes: int, stream: Stream) -> None:
    """Copy ``nbytes`` from host address ``src`` (pinned for a truly async copy) to device ``dst``."""
    rt = cudart()
    check(rt.cudaMemcpyAsync(dst, src, nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream.stream))


def memcpy_dtoh_async(dst: int, src: int, nbytes: int, stream: Stream) -> None:
    """Copy ``nbytes`` from device address ``src`` to host address ``dst``."""
    rt = cudart()
    check(rt.cudaMemcpyAsync(dst, src, nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream.stream))


class CudaGraph:
    """Work enqueued on a stream, captured once and replayed with one launch.

    ``CudaGraph.capture(stream, enqueue)`` runs ``enqueue()`` under stream capture, so nothing
    executes during capture; ``launch()`` then replays it on the same stream. Pointers and sizes
    are baked in: a new shape or buffer needs a new graph.

    Capture is thread-local (as trtexec captures): in the global mode an unsafe CUDA call from any
    other thread -- the live pipeline has five -- would invalidate the capture, or fail itself.
    A failed capture leaves an error behind in the thread's CUDA state; it is cleared with
    ``cudaGetLastError`` (trtexec does the same) so the plain path that follows does not report it.
    """

    def __init__(self, graph: Any, graph_exec: Any, stream: Stream) -> None:
        self.graph = graph
        self.graph_exec = graph_exec
        self.stream = stream

    @classmethod
    def capture(cls, stream: Stream, enqueue: Callable[[], None]) -> CudaGraph:
        rt = cudart()
        mode = rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        check(rt.cudaStreamBeginCapture(stream.stream, mode))
        try:
            enqueue()
        except BaseException:
            res = rt.cudaStreamEndCapture(stream.stream)  # leave the stream usable; drop the partial graph
            if res[0] == rt.cudaError_t.cudaSuccess and res[1] is not None:
                rt.cudaGraphDestroy(res[1])
            rt.cudaGetLastError()
            raise
        try:
            graph = check(rt.cudaStreamEndCapture(stream.stream))  # fails when the capture was invalidated
        except CudaError:
            rt.cudaGetLastError()
            raise
        try:
            graph_exec = check(rt.cudaGraphInstantiate(graph, 0))
        except CudaError:
            rt.cudaGraphDestroy(graph)
            rt.cudaGetLastError()
            raise
        return cls(graph, graph_exec, stream)

    def launch(self) -> None:
        check(cudart().cudaGraphLaunch(self.graph_exec, self.stream.stream))

    def destroy(self) -> None:
        rt = cudart()
        if self.graph_exec is not None:
            check(rt.cudaGraphExecDestroy(self.graph_exec))
            self.graph_exec = None
        if self.graph is not None:
            check(rt.cudaGraphDestroy(self.graph))
            self.graph = None
