"""Recording stand-ins for TensorRT's Python module (one per version) and for the CUDA runtime
bindings, so the TensorRT code's version branches and its CUDA sequencing are tested where neither
can be installed.

These are NOT TensorRT and NOT CUDA. They implement only the surface ``rpol_edge.exporters.trt.build``
and ``rpol_edge.runtimes.trt_runtime`` touch, and model the facts below, each taken from the
sources cited (NVIDIA/TensorRT at the tags named, onnx/onnx-tensorrt release branches, the CUDA
runtime's documented rules). A test that passes here shows the code handles those facts; the real
check is a build on the device (see the GPU tests in test_trt.py, which skip without one).

TensorRT facts modelled, per version (``VERSIONS``):

- ``NetworkDefinitionCreationFlag``: 8.6 has EXPLICIT_BATCH (0) and EXPLICIT_PRECISION (1), and
  ``create_network(0)`` is an implicit-batch network (python/src/infer/pyCore.cpp, v8.6.1); the
  8.6 ONNX parser refuses it: "This version of the ONNX parser only supports TensorRT
  INetworkDefinitions with an explicit batch dimension" (onnx-tensorrt release/8.6-GA,
  ModelImporter.cpp). 10.x keeps EXPLICIT_BATCH as deprecated and ignored, adds STRONGLY_TYPED
  (include/NvInfer.h, v10.3.0 / v10.13.0); 11.x drops EXPLICIT_BATCH, renumbers the rest, and
  every network is strongly typed ("Strongly typed mode is always enabled. This flag is retained
  for API compatibility but is ignored", python/docstrings/infer/pyCoreDoc.h, v11.0).
- ``BuilderFlag``: 11.x removes FP16, INT8 and the other weak-typing flags; TF32 stays
  (pyCore.cpp, v11.0 / v11.1).
- ``Builder.platform_has_fast_fp16/int8``: bound up to 10.x (deprecated from 10.5, NvInfer.h
  v10.13.0), not bound in 11 (pyCore.cpp v11.0 / v11.1).
- ``ParserError``: 8.6 binds code, desc, file, line, func, node (python/src/parsers/pyOnnx.cpp,
  v8.6.1, lines 137-145); node_name and node_operator are bound in 10.x and 11.x.
- ``IBuilderConfig``: TF32 is set in a new config (pyCoreDoc.h, v10.3.0, still in v11.1);
  ``set_timing_cache`` returns False for a cache from another device or version when
  ``ignore_mismatch`` is False; ``get_timing_cache`` returns None when no cache was set
  (python/docstrings/infer/pyCoreDoc.h, v10.13.0).
- An execution context must run one enqueue after an input-shape change before a CUDA graph
  recorded at that shape is replayed (TensorRT developer guide, "CUDA Graphs"; trtexec enqueues
  once before capture, samples/common/sampleInference.cpp).

CUDA facts modelled (``Cudart``): the current device is per host thread and starts at 0; work on
a stream runs when the stream is synchronized (so code that reads results early is caught);
captured work does not run until the graph is launched; the capture mode is recorded.
"""

from __future__ import annotations

import ctypes
import enum
import threading
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

VERSIONS = ("8.6.1.6", "10.3.0.30", "10.13.0.35", "11.1.0.6")


def _major(version: str) -> int:
    return int(version.split(".")[0])


def _minor(version: str) -> tuple[int, int]:
    a, b = version.split(".")[:2]
    return int(a), int(b)


# --- CUDA runtime ----------------------------------------------------------------------------


class CudaError(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorInsufficientDriver = 35
    cudaErrorNoDevice = 100
    cudaErrorStreamCaptureInvalidated = 901


class CaptureMode(enum.IntEnum):
    cudaStreamCaptureModeGlobal = 0
    cudaStreamCaptureModeThreadLocal = 1
    cudaStreamCaptureModeRelaxed = 2


class MemcpyKind(enum.IntEnum):
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3


class StreamHandle:
    """Like cuda-bindings' cudaStream_t: ``int()`` gives the handle TensorRT takes."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __int__(self) -> int:
        return self.value


@dataclass
class _Stream:
    handle: int
    pending: list[Callable[[], None]] = field(default_factory=list)
    capturing: list[Callable[[], None]] | None = None
    capture_thread: int | None = None


class Cudart:
    """Stand-in for ``cuda.bindings.runtime``: devices, memory, streams, async copies, graphs."""

    cudaError_t = CudaError
    cudaStreamCaptureMode = CaptureMode
    cudaMemcpyKind = MemcpyKind
    cudaStreamNonBlocking = 1

    def __init__(
        self, devices: int = 2, driver: int = 12060, runtime: int = 12060, gpu: str = "Orin", cc: str = "8.7"
    ) -> None:
        self.devices = devices
        self.gpu, self.cc = gpu, cc
        self.driver, self.runtime = driver, runtime
        self._tls = threading.local()
        self._buffers: dict[int, ctypes.Array[ctypes.c_ubyte]] = {}
        self.streams: dict[int, _Stream] = {}
        self.capture_modes: list[CaptureMode] = []
        self.last_error_cleared = 0
        self.fail_next_capture = False
        self.launches = 0

    # devices
    def current_device(self) -> int:
        return int(getattr(self._tls, "device", 0))

    def cudaGetDeviceCount(self) -> tuple[CudaError, int]:
        if self.driver < self.runtime:
            return CudaError.cudaErrorInsufficientDriver, 0
        return CudaError.cudaSuccess, self.devices

    def cudaDriverGetVersion(self) -> tuple[CudaError, int]:
        return CudaError.cudaSuccess, self.driver

    def cudaRuntimeGetVersion(self) -> tuple[CudaError, int]:
        return CudaError.cudaSuccess, self.runtime

    def cudaSetDevice(self, index: int) -> tuple[CudaError]:
        if not 0 <= index < self.devices:
            return (CudaError.cudaErrorInvalidValue,)
        self._tls.device = index
        return (CudaError.cudaSuccess,)

    def cudaGetErrorName(self, err: CudaError) -> tuple[CudaError, bytes]:
        return CudaError.cudaSuccess, CudaError(err).name.encode()

    def cudaGetErrorString(self, err: CudaError) -> tuple[CudaError, bytes]:
        return CudaError.cudaSuccess, b"stand-in error"

    def cudaGetLastError(self) -> tuple[CudaError]:
        self.last_error_cleared += 1
        return (CudaError.cudaSuccess,)

    def cudaGetDeviceProperties(self, index: int) -> tuple[CudaError, Any]:
        major, minor = self.cc.split(".")
        return CudaError.cudaSuccess, types.SimpleNamespace(
            name=self.gpu.encode() + b"\0", major=int(major), minor=int(minor)
        )

    # memory: device memory is host memory here; copies are ctypes.memmove when the stream runs
    def _alloc(self, nbytes: int) -> tuple[CudaError, int]:
        buf = (ctypes.c_ubyte * nbytes)()
        ptr = ctypes.addressof(buf)
        self._buffers[ptr] = buf
        return CudaError.cudaSuccess, ptr

    def cudaMalloc(self, nbytes: int) -> tuple[CudaError, int]:
        return self._alloc(nbytes)

    def cudaMallocHost(self, nbytes: int) -> tuple[CudaError, int]:
        return self._alloc(nbytes)

    def cudaFree(self, ptr: int) -> tuple[CudaError]:
        return (
            CudaError.cudaSuccess
            if self._buffers.pop(ptr, None) is not None
            else CudaError.cudaErrorInvalidValue,
        )

    cudaFreeHost = cudaFree

    # streams
    def cudaStreamCreateWithFlags(self, flags: int) -> tuple[CudaError, StreamHandle]:
        handle = 0x1000 + len(self.streams)
        self.streams[handle] = _Stream(handle)
        return CudaError.cudaSuccess, StreamHandle(handle)

    def stream(self, handle: Any) -> _Stream:
        return self.streams[int(handle)]

    def enqueue(self, handle: Any, op: Callable[[], None]) -> None:
        """Queue ``op`` on a stream: recorded while capturing, else run at the next synchronize."""
        s = self.stream(handle)
        if s.capturing is not None:
            s.capturing.append(op)
        else:
            s.pending.append(op)

    def cudaStreamSynchronize(self, handle: Any) -> tuple[CudaError]:
        s = self.stream(handle)
        ops, s.pending = s.pending, []
        for op in ops:
            op()
        return (CudaError.cudaSuccess,)

    def cudaStreamDestroy(self, handle: Any) -> tuple[CudaError]:
        self.streams.pop(int(handle))
        return (CudaError.cudaSuccess,)

    def cudaMemcpyAsync(
        self, dst: int, src: int, nbytes: int, kind: MemcpyKind, handle: Any
    ) -> tuple[CudaError]:
        self.enqueue(handle, lambda: ctypes.memmove(dst, src, nbytes))
        return (CudaError.cudaSuccess,)

    # graphs
    def cudaStreamBeginCapture(self, handle: Any, mode: CaptureMode) -> tuple[CudaError]:
        s = self.stream(handle)
        s.capturing, s.capture_thread = [], threading.get_ident()
        self.capture_modes.append(CaptureMode(mode))
        return (CudaError.cudaSuccess,)

    def cudaStreamEndCapture(self, handle: Any) -> tuple[CudaError, Any]:
        s = self.stream(handle)
        ops, s.capturing = s.capturing, None
        if self.fail_next_capture:
            self.fail_next_capture = False
            return CudaError.cudaErrorStreamCaptureInvalidated, None
        return CudaError.cudaSuccess, list(ops or [])

    def cudaGraphInstantiate(self, graph: list[Callable[[], None]], flags: int) -> tuple[CudaError, Any]:
        return CudaError.cudaSuccess, tuple(graph)

    def cudaGraphLaunch(self, graph_exec: tuple[Callable[[], None], ...], handle: Any) -> tuple[CudaError]:
        self.launches += 1
        for op in graph_exec:
            self.enqueue(handle, op)
        return (CudaError.cudaSuccess,)

    def cudaGraphExecDestroy(self, graph_exec: Any) -> tuple[CudaError]:
        return (CudaError.cudaSuccess,)

    def cudaGraphDestroy(self, graph: Any) -> tuple[CudaError]:
        return (CudaError.cudaSuccess,)


# --- TensorRT --------------------------------------------------------------------------------


class DataType(enum.Enum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5


class TensorIOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class MemoryPoolType(enum.Enum):
    WORKSPACE = 0


class Dims(tuple):  # type: ignore[type-arg]
    """``trt.Dims([..])``: a shape (a tuple here)."""

    def __new__(cls, values: Any = ()) -> Dims:
        return super().__new__(cls, tuple(int(v) for v in values))


_ONNX_DTYPES = {1: DataType.FLOAT, 2: DataType.UINT8, 10: DataType.HALF}


@dataclass
class Tensor:
    name: str
    dtype: DataType
    shape: Dims


class TensorRT(types.ModuleType):
    """The ``tensorrt`` module of one version, as far as rpol-edge uses it; records what was asked.

    ``gpu`` is the device a timing cache belongs to; ``parse_error`` makes the parser fail on node 3.
    """

    def __init__(self, version: str, gpu: str = "Orin") -> None:
        super().__init__("tensorrt")
        self.__version__ = version
        self.gpu = gpu
        self.parse_error = False
        self.networks: list[Any] = []
        self.configs: list[Any] = []
        self.contexts: list[Any] = []
        self.violations: list[str] = []
        """Rule breaks seen (a graph replayed at a stale shape, work on the wrong device, ...)."""
        self.cudart: Cudart | None = None
        self.DataType = DataType
        self.TensorIOMode = TensorIOMode
        self.MemoryPoolType = MemoryPoolType
        self.Dims = Dims
        major = _major(version)

        # Member values as each version numbers them (NvInfer.h): they move between versions.
        flags = {
            8: {"EXPLICIT_BATCH": 0, "EXPLICIT_PRECISION": 1},
            10: {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1}
            | (
                {"PREFER_JIT_PYTHON_PLUGINS": 2, "PREFER_AOT_PYTHON_PLUGINS": 3}
                if _minor(version) >= (10, 13)
                else {}
            ),
            11: {"STRONGLY_TYPED": 0, "PREFER_JIT_PYTHON_PLUGINS": 1, "PREFER_AOT_PYTHON_PLUGINS": 2},
        }[major]
        self.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", flags)  # type: ignore[misc]
        # 11 removes the weak-typing flags (FP16, INT8, ...); TF32 stays (pyCore.cpp v11.0).
        builder_flags = {"TF32": 7} if major >= 11 else {"FP16": 0, "INT8": 1, "TF32": 7}
        self.BuilderFlag = enum.IntEnum("BuilderFlag", builder_flags)  # type: ignore[misc]

        trt = self

        class Logger:
            WARNING = 2

            def __init__(self, severity: int) -> None:
                self.severity = severity

        self.Logger = Logger

        class ParserError:
            def __init__(self, node: int, desc: str) -> None:
                self._node, self._desc = node, desc

            def code(self) -> int:
                return 4

            def desc(self) -> str:
                return self._desc

            def node(self) -> int:
                return self._node

        if major >= 10:

            def node_name(self: ParserError) -> str:
                return "/backbone/conv_stem/Conv"

            def node_operator(self: ParserError) -> str:
                return "Conv"

            ParserError.node_name = node_name  # type: ignore[attr-defined]
            ParserError.node_operator = node_operator  # type: ignore[attr-defined]

        class Network:
            def __init__(self, flags: int) -> None:
                self.flags = flags
                members = trt.NetworkDefinitionCreationFlag.__members__
                explicit = members.get("EXPLICIT_BATCH")
                self.implicit_batch = major < 10 and not (explicit is not None and flags & (1 << explicit))
                # 11: always strongly typed; the STRONGLY_TYPED flag is deprecated and ignored.
                self.strongly_typed = major >= 11 or (
                    "STRONGLY_TYPED" in members and bool(flags & (1 << members["STRONGLY_TYPED"]))
                )
                self.inputs: list[Tensor] = []
                self.outputs: list[Tensor] = []

            @property
            def num_inputs(self) -> int:
                return len(self.inputs)

            @property
            def num_outputs(self) -> int:
                return len(self.outputs)

            def get_input(self, i: int) -> Tensor:
                return self.inputs[i]

            def get_output(self, i: int) -> Tensor:
                return self.outputs[i]

        class OnnxParser:
            def __init__(self, network: Network, logger: Logger) -> None:
                self.network = network
                self.errors: list[ParserError] = []

            @property
            def num_errors(self) -> int:
                return len(self.errors)

            def get_error(self, i: int) -> ParserError:
                return self.errors[i]

            def parse_from_file(self, path: str) -> bool:
                import onnx

                if self.network.implicit_batch:
                    self.errors.append(
                        ParserError(
                            -1,
                            "This version of the ONNX parser only supports TensorRT "
                            "INetworkDefinitions with an explicit batch dimension. Please ensure the "
                            "network was created using the EXPLICIT_BATCH NetworkDefinitionCreationFlag.",
                        )
                    )
                    return False
                if trt.parse_error:
                    self.errors.append(ParserError(3, "Assertion failed: unsupported padding"))
                    return False
                graph = onnx.load(path, load_external_data=False).graph

                def tensor(v: Any) -> Tensor:
                    t = v.type.tensor_type
                    shape = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
                    return Tensor(v.name, _ONNX_DTYPES[t.elem_type], Dims(shape))

                self.network.inputs = [tensor(v) for v in graph.input]
                self.network.outputs = [tensor(v) for v in graph.output]
                return True

        class TimingCache:
            def __init__(self, owner: str) -> None:
                self.owner = owner

            def serialize(self) -> bytes:
                return f"cache:{self.owner}".encode()

        class Config:
            def __init__(self) -> None:
                self.flags = {trt.BuilderFlag.TF32}  # on in every new config
                self.pool: dict[MemoryPoolType, int] = {}
                self.profiles: list[Any] = []
                self.timing_cache: TimingCache | None = None

            def set_flag(self, flag: Any) -> None:
                self.flags.add(flag)

            def clear_flag(self, flag: Any) -> None:
                self.flags.discard(flag)

            def get_flag(self, flag: Any) -> bool:
                return flag in self.flags

            def set_memory_pool_limit(self, pool: MemoryPoolType, size: int) -> None:
                self.pool[pool] = size

            def add_optimization_profile(self, profile: Any) -> int:
                self.profiles.append(profile)
                return len(self.profiles) - 1

            def create_timing_cache(self, data: bytes) -> TimingCache | None:
                if not data:
                    return TimingCache(f"{trt.__version__}:{trt.gpu}")
                text = bytes(data).decode(errors="replace")
                return TimingCache(text[len("cache:") :]) if text.startswith("cache:") else None

            def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
                if cache.owner != f"{trt.__version__}:{trt.gpu}" and not ignore_mismatch:
                    return False
                self.timing_cache = cache
                return True

            def get_timing_cache(self) -> TimingCache | None:
                return self.timing_cache

        class Profile:
            def __init__(self) -> None:
                self.shapes: dict[str, tuple[Dims, Dims, Dims]] = {}

            def set_shape(self, name: str, lo: Dims, opt: Dims, hi: Dims) -> None:
                self.shapes[name] = (lo, opt, hi)

        class Builder:
            def __init__(self, logger: Logger) -> None:
                self.logger = logger

            def create_network(self, flags: int = 0) -> Network:
                network = Network(flags)
                trt.networks.append(network)
                return network

            def create_builder_config(self) -> Config:
                config = Config()
                trt.configs.append(config)
                return config

            def create_optimization_profile(self) -> Profile:
                return Profile()

            def build_serialized_network(self, network: Network, config: Config) -> bytes | None:
                lo, opt, hi = config.profiles[0].shapes["frames"]
                return f"plan {trt.__version__} batch {lo[0]}..{hi[0]}".encode()

        if major < 11:
            Builder.platform_has_fast_fp16 = True  # type: ignore[attr-defined]
            Builder.platform_has_fast_int8 = True  # type: ignore[attr-defined]

        self.Builder = Builder
        self.OnnxParser = OnnxParser
        self._define_runtime()

    def _define_runtime(self) -> None:
        """Runtime -> engine -> context, executing a tiny model (score = mean(RGB)/255, mask = score > 0.5)
        as work queued on the stand-in CUDA stream, checking TensorRT's and CUDA's rules as it runs."""
        trt = self

        class Context:
            def __init__(self, engine: Engine) -> None:
                self.engine = engine
                self.addresses: dict[str, int] = {}
                self.shape: tuple[int, ...] | None = None
                self.prepared: tuple[int, ...] | None = None
                """The shape the last plain enqueue ran at since set_input_shape (None: none yet)."""
                trt.contexts.append(self)

            def set_tensor_address(self, name: str, ptr: int) -> bool:
                self.addresses[name] = ptr
                return True

            def set_input_shape(self, name: str, shape: Any) -> bool:
                shape = tuple(int(s) for s in shape)
                if not self.engine.lo <= shape[0] <= self.engine.hi:
                    return False
                if shape != self.shape:
                    self.shape, self.prepared = shape, None
                return True

            def execute_async_v3(self, stream_handle: int) -> bool:
                cudart = trt.cudart
                assert cudart is not None
                if cudart.current_device() != self.engine.device:
                    trt.violations.append(
                        f"enqueue on device {cudart.current_device()}, engine on {self.engine.device}"
                    )
                assert self.shape is not None
                shape = self.shape
                capturing = cudart.stream(stream_handle).capturing is not None
                if not capturing:
                    self.prepared = shape

                def run() -> None:
                    if capturing and self.prepared != shape:
                        trt.violations.append(
                            f"graph for {shape} replayed while the context last ran at {self.prepared} "
                            f"(shape now {self.shape})"
                        )
                    n, k = shape[0], self.engine.k
                    frames = np.ctypeslib.as_array(
                        (ctypes.c_ubyte * (n * k * k * 3)).from_address(self.addresses["frames"])
                    ).reshape(n, k, k, 3)
                    score = frames.astype(np.float32).mean(-1)[:, None] / 255
                    ctypes.memmove(self.addresses["score"], score.tobytes(), score.nbytes)
                    mask = (score > 0.5).astype(np.uint8)
                    ctypes.memmove(self.addresses["mask"], mask.tobytes(), mask.nbytes)
                    if self.engine.peak:
                        peak = np.ascontiguousarray(score.max(axis=(2, 3)))
                        ctypes.memmove(self.addresses["peak"], peak.tobytes(), peak.nbytes)

                cudart.enqueue(stream_handle, run)
                return True

        class Engine:
            def __init__(self, k: int, lo: int, hi: int, device: int, peak: bool) -> None:
                self.k, self.lo, self.hi, self.device, self.peak = k, lo, hi, device, peak
                self.names = ("frames", "score", "mask", "peak")[: 4 if peak else 3]
                self.num_io_tensors = len(self.names)

            def get_tensor_name(self, i: int) -> str:
                return self.names[i]

            def get_tensor_mode(self, name: str) -> TensorIOMode:
                return TensorIOMode.INPUT if name == "frames" else TensorIOMode.OUTPUT

            def get_tensor_dtype(self, name: str) -> DataType:
                return DataType.FLOAT if name in ("score", "peak") else DataType.UINT8

            def get_tensor_shape(self, name: str) -> Dims:
                k = self.k
                return Dims({"frames": (-1, k, k, 3), "peak": (-1, 1)}.get(name, (-1, 1, k, k)))

            def create_execution_context(self) -> Context:
                return Context(self)

        class Runtime:
            def __init__(self, logger: Any) -> None:
                pass

            def deserialize_cuda_engine(self, plan: bytes) -> Engine | None:
                # "engine K LO HI DEVICE [peak]" is what standin_plan writes
                parts = bytes(plan).decode(errors="replace").split()
                if len(parts) not in (5, 6) or parts[0] != "engine":
                    return None
                assert trt.cudart is not None
                peak = parts[5:] == ["peak"]
                return Engine(*map(int, parts[1:4]), device=trt.cudart.current_device(), peak=peak)

        self.Runtime = Runtime


def standin_plan(k: int, lo: int, hi: int, device: int = 0, peak: bool = False) -> bytes:
    """A plan that :class:`TensorRT`'s Runtime deserializes into its tiny engine (``peak``: with
    the third output of current graphs; without it, an engine of an older graph)."""
    return f"engine {k} {lo} {hi} {device}{' peak' if peak else ''}".encode()


def install(monkeypatch: Any, version: str, cudart: Cudart | None = None, gpu: str = "Orin") -> TensorRT:
    """Put the stand-ins where rpol-edge imports them from (``tensorrt``; ``cuda_mem.cudart``)."""
    import sys

    from rpol_edge.runtimes import cuda_mem, trt_common

    trt = TensorRT(version, gpu)
    trt.cudart = cudart or Cudart()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(trt_common, "_LOGGER", None)
    monkeypatch.setattr(cuda_mem, "cudart", lambda: trt.cudart)
    monkeypatch.setattr(cuda_mem, "native_handle", int)  # stand-in handles are not cuda-bindings objects
    return trt


def onnx_source(path: Path) -> Path:
    """The tiny rpol-edge-contract ONNX test_trt writes (imported lazily: it needs onnx)."""
    from tests.runtimes.test_trt_runtime import write_test_onnx

    write_test_onnx(path, fp16=path.name.endswith(".fp16.onnx"))
    return path
