"""TensorRT build + runtime: pure parts everywhere; real builds and CUDA copies where there is a GPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rpol_edge.core.engine_meta import (
    EngineMeta,
    check_engine_compatible,
    check_engine_fresh,
    read_engine_meta,
    sidecar_path,
)
from rpol_edge.core.metadata import MetadataError, ModelMeta
from rpol_edge.exporters.trt.build import EngineBuildError, build_engine, choose_onnx, fp16_strategy
from rpol_edge.runtimes import cuda_mem
from rpol_edge.runtimes.base import InferenceError
from rpol_edge.runtimes.trt_common import TrtUnavailable, tensorrt_version

K = 32


def model_meta(precision: str = "fp32") -> ModelMeta:
    return ModelMeta(
        backbone="test",
        weights_sha256="0" * 64,
        input_size=K,
        resize_size=K,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        feature_stride=8,
        channels=4,
        output_stride=8,
        head="rpol",
        n_heads=1,
        tau=0.5,
        threshold=0.5,
        w_sha256="1" * 64,
        n_images=2,
        n_skipped=0,
        fit_size=K,
        fit_resize=K,
        precision=precision,
        opset=17,
    )


def engine_meta(**changes: object) -> EngineMeta:
    fields: dict[str, object] = dict(
        tensorrt_version="10.13.0.35",
        gpu_name="Orin",
        compute_capability="8.7",
        precision="fp16",
        min_batch=1,
        opt_batch=2,
        max_batch=4,
        input_size=K,
        onnx_sha256="a" * 64,
        model=model_meta("fp16"),
        engine_sha256="b" * 64,
        fp16_strategy="strongly_typed",
    )
    fields.update(changes)
    return EngineMeta(**fields)  # type: ignore[arg-type]


# --- pure parts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "strategy"),
    [
        ("10.3.0", "builder_flag"),
        ("10.11", "builder_flag"),
        ("10.12.0", "strongly_typed"),
        ("10.13.0.35", "strongly_typed"),
        ("11.0", "strongly_typed"),
    ],
)
def test_fp16_strategy(version: str, strategy: str) -> None:
    assert fp16_strategy(version) == strategy


def test_fp16_strategy_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        fp16_strategy("latest")


def test_choose_onnx() -> None:
    fp32, fp16 = Path("m.onnx"), Path("m.fp16.onnx")
    assert choose_onnx("fp16", "10.13.0.35", fp32, fp16) == fp16
    assert choose_onnx("fp16", "10.3.0", fp32, fp16) == fp32
    assert choose_onnx("fp32", "10.13.0.35", fp32, fp16) == fp32
    with pytest.raises(EngineBuildError, match="FP16-cast"):
        choose_onnx("fp16", "11.0", fp32, None)


def test_engine_meta_json_round_trip() -> None:
    meta = engine_meta()
    back = EngineMeta.from_json(meta.to_json())
    assert back == meta
    assert isinstance(back.model.mean, tuple)


def test_engine_meta_rejects_non_sidecar() -> None:
    with pytest.raises(MetadataError):
        EngineMeta.from_json('{"tensorrt_version": "10.3"}')
    with pytest.raises(MetadataError):
        EngineMeta.from_json("not json")


def test_check_engine_compatible_accepts_same() -> None:
    check_engine_compatible(engine_meta(), "10.13.0.35", "Orin", "8.7")


@pytest.mark.parametrize(
    ("version", "gpu", "cc", "what"),
    [
        ("10.3.0", "Orin", "8.7", "TensorRT 10.13.0.35"),
        ("10.13.0.35", "NVIDIA H100 80GB HBM3", "9.0", "GPU Orin"),
        ("10.13.0.35", "NVIDIA GeForce RTX 3090", "8.7", "GPU Orin"),
    ],
)
def test_check_engine_compatible_refuses(version: str, gpu: str, cc: str, what: str) -> None:
    with pytest.raises(MetadataError) as info:
        check_engine_compatible(engine_meta(), version, gpu, cc)
    message = str(info.value)
    assert "rebuild" in message and what in message
    assert "rpol-edge export MODEL --onnx --trt -o DIR" in message


def test_read_engine_meta_missing_sidecar(tmp_path: Path) -> None:
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"plan")
    with pytest.raises(MetadataError, match="rebuild"):
        read_engine_meta(engine)


def test_read_engine_meta_sidecar(tmp_path: Path) -> None:
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"plan")
    sidecar_path(engine).write_text(engine_meta().to_json())
    assert sidecar_path(engine).name == "model.engine.json"
    assert read_engine_meta(engine) == engine_meta()


def test_inspect_reads_engine_sidecar(tmp_path: Path) -> None:
    from rpol_edge.core.model_file import read_meta

    engine = tmp_path / "model.engine"
    engine.write_bytes(b"plan")
    sidecar_path(engine).write_text(engine_meta().to_json())
    assert read_meta(engine) == model_meta("fp16")


def test_parse_device() -> None:
    from rpol_edge.runtimes.trt_runtime import parse_device

    assert parse_device("cuda") == 0
    assert parse_device("cuda:1") == 1
    assert parse_device("2") == 2
    with pytest.raises(InferenceError, match="CUDA device"):
        parse_device("cpu")


def has_tensorrt() -> bool:
    try:
        import tensorrt
    except ImportError:
        return False
    return hasattr(tensorrt, "Builder")


@pytest.mark.skipif(has_tensorrt(), reason="TensorRT is installed here")
def test_build_without_tensorrt_names_the_extra(tmp_path: Path) -> None:
    with pytest.raises(TrtUnavailable, match=r"pip install 'rpol-edge\[tensorrt\]'"):
        build_engine(tmp_path / "m.onnx", tmp_path / "m.engine")
    with pytest.raises(TrtUnavailable, match="python3-libnvinfer"):
        tensorrt_version()


def test_cuda_check_names_the_error() -> None:
    cudart = pytest.importorskip("cuda.bindings.runtime", reason="cuda-python (cuda-bindings) not installed")
    assert cuda_mem.check((cudart.cudaError_t.cudaSuccess, 7)) == 7
    assert cuda_mem.check((cudart.cudaError_t.cudaSuccess,)) is None
    with pytest.raises(cuda_mem.CudaError, match="cudaErrorInvalidValue") as info:
        cuda_mem.check((cudart.cudaError_t.cudaErrorInvalidValue, None))
    assert info.value.name == "cudaErrorInvalidValue"


# --- on a GPU -----------------------------------------------------------------------------------


def require_gpu() -> None:
    pytest.importorskip("cuda.bindings", reason="cuda-python (cuda-bindings) not installed")
    if cuda_mem.device_count() == 0:
        pytest.skip("no CUDA device (cudaGetDeviceCount failed: no driver, or returned 0)")


@pytest.mark.gpu
def test_cuda_mem_round_trip_and_graph() -> None:
    require_gpu()
    name, cc = cuda_mem.device_info(0)
    assert name and "." in cc
    with pytest.raises(cuda_mem.CudaError, match="cudaErrorMemoryAllocation"):
        cuda_mem.DeviceBuffer(1 << 60)
    data = np.arange(4 * 1000, dtype=np.float32).reshape(4, 1000)
    with (
        cuda_mem.Stream() as stream,
        cuda_mem.DeviceBuffer(data.nbytes) as dev,
        cuda_mem.HostBuffer(data.shape, np.float32) as src,
        cuda_mem.HostBuffer(data.shape, np.float32) as dst,
    ):
        assert stream.handle != 0
        np.copyto(src.array, data)
        cuda_mem.memcpy_htod_async(dev.ptr, src.ptr, data.nbytes, stream)
        cuda_mem.memcpy_dtoh_async(dst.ptr, dev.ptr, data.nbytes, stream)
        stream.synchronize()
        np.testing.assert_array_equal(dst.array, data)

        # A captured graph replays the same copies, reading the pinned source as it is at launch.
        dst.array[:] = 0

        def copies() -> None:
            cuda_mem.memcpy_htod_async(dev.ptr, src.ptr, data.nbytes, stream)
            cuda_mem.memcpy_dtoh_async(dst.ptr, dev.ptr, data.nbytes, stream)

        graph = cuda_mem.CudaGraph.capture(stream, copies)
        stream.synchronize()
        assert not dst.array.any(), "nothing runs during capture"
        for scale in (2.0, 3.0):
            np.copyto(src.array, data * scale)
            graph.launch()
            stream.synchronize()
            np.testing.assert_array_equal(dst.array, data * scale)
        graph.destroy()


@pytest.mark.gpu
def test_thread_local_capture_survives_other_threads() -> None:
    """The live pipeline has five threads: a cudaMalloc on another thread during a global-mode
    capture invalidates it (cudaErrorStreamCaptureUnsupported / Invalidated); thread-local mode,
    as rpol-edge and trtexec capture, is not affected."""
    require_gpu()
    import threading

    data = np.arange(1000, dtype=np.float32)
    other_done = threading.Event()
    other_errors: list[BaseException] = []

    def other_thread() -> None:
        try:
            with cuda_mem.DeviceBuffer(1 << 20):
                pass
        except BaseException as exc:  # noqa: BLE001 - checked below
            other_errors.append(exc)
        other_done.set()

    with (
        cuda_mem.Stream() as stream,
        cuda_mem.DeviceBuffer(data.nbytes) as dev,
        cuda_mem.HostBuffer(data.shape, np.float32) as src,
        cuda_mem.HostBuffer(data.shape, np.float32) as dst,
    ):

        def copies() -> None:
            cuda_mem.memcpy_htod_async(dev.ptr, src.ptr, data.nbytes, stream)
            t = threading.Thread(target=other_thread)
            t.start()
            t.join()  # an unsafe call on another thread, in the middle of the capture
            cuda_mem.memcpy_dtoh_async(dst.ptr, dev.ptr, data.nbytes, stream)

        graph = cuda_mem.CudaGraph.capture(stream, copies)
        assert other_done.is_set() and other_errors == []
        np.copyto(src.array, data)
        graph.launch()
        stream.synchronize()
        np.testing.assert_array_equal(dst.array, data)
        graph.destroy()


@pytest.mark.gpu
def test_set_device_is_per_thread() -> None:
    """A new host thread starts on device 0, whatever the main thread chose."""
    require_gpu()
    import threading

    rt = cuda_mem.cudart()
    last = cuda_mem.device_count() - 1
    cuda_mem.set_device(last)
    seen: list[int] = []
    t = threading.Thread(target=lambda: seen.append(int(cuda_mem.check(rt.cudaGetDevice()))))
    t.start()
    t.join()
    assert seen == [0] and int(cuda_mem.check(rt.cudaGetDevice())) == last
    cuda_mem.set_device(0)


class FakeTensorRT:
    """Just enough of the ``tensorrt`` module for TrtRuntime, with an "engine" whose execution is
    real CUDA work (mask <- first bytes of frames, score <- memset), so buffers, copies, bindings
    and graph capture are checked on a GPU without TensorRT."""

    __version__ = "10.13.0.35"

    class DataType:
        UINT8, FLOAT = "uint8", "float32"

    class TensorIOMode:
        INPUT, OUTPUT = "input", "output"

    class Logger:
        WARNING = 2

        def __init__(self, severity: int) -> None:
            pass

    class Builder:  # only its presence is checked
        pass

    def __init__(self) -> None:
        fake = self
        self.executions = 0
        self.addresses: dict[str, int] = {}
        self.batch = 0
        dtypes = {"frames": "uint8", "score": "float32", "mask": "uint8"}
        shapes = {"frames": (-1, K, K, 3), "score": (-1, 1, K, K), "mask": (-1, 1, K, K)}

        class Context:
            def set_tensor_address(self, name: str, ptr: int) -> bool:
                fake.addresses[name] = ptr
                return True

            def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
                fake.batch = shape[0]
                return 1 <= shape[0] <= 4

            def execute_async_v3(self, stream_handle: int) -> bool:
                rt = cuda_mem.cudart()
                stream = rt.cudaStream_t(stream_handle)
                n = fake.batch
                kind = rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice
                a = fake.addresses
                cuda_mem.check(rt.cudaMemcpyAsync(a["mask"], a["frames"], n * K * K, kind, stream))
                cuda_mem.check(rt.cudaMemsetAsync(a["score"], 0x3F, n * K * K * 4, stream))
                fake.executions += 1
                return True

        class Engine:
            num_io_tensors = 3

            def get_tensor_name(self, i: int) -> str:
                return ("frames", "score", "mask")[i]

            def get_tensor_dtype(self, name: str) -> str:
                return dtypes[name]

            def get_tensor_shape(self, name: str) -> tuple[int, ...]:
                return shapes[name]

            def get_tensor_mode(self, name: str) -> str:
                return "input" if name == "frames" else "output"

            def create_execution_context(self) -> Context:
                return Context()

        class Runtime:
            def __init__(self, logger: object) -> None:
                pass

            def deserialize_cuda_engine(self, plan: bytes) -> Engine | None:
                return Engine() if plan == b"fake plan" else None

        self.Runtime = Runtime


@pytest.mark.gpu
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_trt_runtime_plumbing_with_fake_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cuda_graph: bool
) -> None:
    require_gpu()
    import hashlib
    import sys

    from rpol_edge.runtimes import trt_common
    from rpol_edge.runtimes.trt_runtime import TrtRuntime

    fake = FakeTensorRT()
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(trt_common, "_LOGGER", None)
    gpu, cc = cuda_mem.device_info(0)
    engine = tmp_path / "fake.engine"
    engine.write_bytes(b"fake plan")
    meta = engine_meta(
        gpu_name=gpu,
        compute_capability=cc,
        engine_sha256=hashlib.sha256(b"fake plan").hexdigest(),
        opt_batch=1,
    )
    sidecar_path(engine).write_text(meta.to_json())

    rng = np.random.default_rng(1)
    sizes = (1, 3, 3, 1, 4, 4, 3)
    with TrtRuntime(engine, device="cuda:0", cuda_graph=cuda_graph) as rt:
        assert (rt.min_batch, rt.max_batch) == (1, 4) and rt.meta.precision == "fp16"
        for n in sizes:
            frames = rng.integers(0, 256, (n, K, K, 3), dtype=np.uint8)
            out = rt.infer(frames)
            assert out.mask.reshape(-1).tobytes() == frames.reshape(-1)[: n * K * K].tobytes()
            assert (out.score == np.frombuffer(b"\x3f" * 4, np.float32)[0]).all()
    # With graphs: a plain run whenever the batch size changes (TensorRT's rule before a replay),
    # one capture per batch size, replays otherwise.
    changes = sum(1 for i, n in enumerate(sizes) if i == 0 or sizes[i - 1] != n)
    assert fake.executions == (changes + len(set(sizes)) if cuda_graph else len(sizes))

    # The same runtime driven from another thread (the live pipeline's inference thread).
    import threading

    errors: list[BaseException] = []
    with TrtRuntime(engine, device=f"cuda:{cuda_mem.device_count() - 1}", cuda_graph=cuda_graph) as rt:

        def worker() -> None:
            try:
                for n in (2, 2, 1):
                    frames = rng.integers(0, 256, (n, K, K, 3), dtype=np.uint8)
                    out = rt.infer(frames)
                    assert out.mask.reshape(-1).tobytes() == frames.reshape(-1)[: n * K * K].tobytes()
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                errors.append(exc)

        t = threading.Thread(target=worker)
        t.start()
        t.join()
    assert errors == []

    engine.write_bytes(b"other plan")
    with pytest.raises(InferenceError, match="does not match its sidecar"), TrtRuntime(engine) as rt:
        pass


def write_test_onnx(path: Path, fp16: bool) -> None:
    """A tiny graph with the rpol-edge ONNX contract: score = mean(RGB) / 255, mask = score > 0.5.

    ``fp16`` computes in half precision inside (IO stays uint8/float32), like the FP16-cast export.
    """
    onnx = pytest.importorskip("onnx", reason="onnx not installed")
    from onnx import TensorProto, helper, numpy_helper

    from rpol_edge.core.onnx_meta import META_KEY

    inner = TensorProto.FLOAT16 if fp16 else TensorProto.FLOAT
    scale = numpy_helper.from_array(np.array(1 / 255, np.float16 if fp16 else np.float32), "scale")
    half = numpy_helper.from_array(np.array(0.5, np.float32), "half")
    nodes = [
        helper.make_node("Cast", ["frames"], ["x"], to=inner),
        helper.make_node("Transpose", ["x"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("ReduceMean", ["nchw"], ["mean"], axes=[1], keepdims=1),
        helper.make_node("Mul", ["mean", "scale"], ["s"]),
        helper.make_node("Cast", ["s"], ["score"], to=TensorProto.FLOAT),
        helper.make_node("Greater", ["score", "half"], ["above"]),
        helper.make_node("Cast", ["above"], ["mask"], to=TensorProto.UINT8),
    ]
    graph = helper.make_graph(
        nodes,
        "rpol_test",
        [helper.make_tensor_value_info("frames", TensorProto.UINT8, ["batch", K, K, 3])],
        [
            helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch", 1, K, K]),
            helper.make_tensor_value_info("mask", TensorProto.UINT8, ["batch", 1, K, K]),
        ],
        [scale, half],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    prop = model.metadata_props.add()
    prop.key, prop.value = META_KEY, model_meta("fp16" if fp16 else "fp32").to_json()
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


@pytest.mark.trt
@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_build_and_infer(tmp_path: Path, precision: str, cuda_graph: bool) -> None:
    trt = pytest.importorskip("tensorrt", reason="TensorRT not installed: pip install 'rpol-edge[tensorrt]'")
    if not hasattr(trt, "Builder"):
        pytest.skip("'tensorrt' is only its type stubs here, not TensorRT")
    require_gpu()
    from rpol_edge.runtimes.trt_runtime import TrtRuntime

    fp32_onnx, fp16_onnx = tmp_path / "m.onnx", tmp_path / "m.fp16.onnx"
    write_test_onnx(fp32_onnx, fp16=False)
    write_test_onnx(fp16_onnx, fp16=True)
    onnx_path = choose_onnx(precision, trt.__version__, fp32_onnx, fp16_onnx)
    engine, cache = tmp_path / "m.engine", tmp_path / "timing.cache"
    meta = build_engine(onnx_path, engine, precision, batch=(1, 2, 4), timing_cache=cache)
    assert engine.is_file() and cache.is_file() and read_engine_meta(engine) == meta
    assert (meta.min_batch, meta.max_batch, meta.model.precision) == (1, 4, precision)

    rng = np.random.default_rng(0)
    with TrtRuntime(engine, device="cuda", cuda_graph=cuda_graph) as rt:
        assert (rt.min_batch, rt.max_batch) == (1, 4)
        for n in (1, 3, 1, 4):
            frames = rng.integers(0, 256, (n, K, K, 3), dtype=np.uint8)
            out = rt.infer(frames)
            expected = frames.astype(np.float32).mean(-1)[:, None] / 255
            np.testing.assert_allclose(out.score, expected, atol=2e-3 if precision == "fp16" else 1e-5)
            near = np.abs(expected - 0.5) < 5e-3
            assert np.array_equal(out.mask[~near], (expected > 0.5)[~near].astype(np.uint8))

    # The same engine refused on another TensorRT, with the command to rebuild.
    with pytest.raises(MetadataError, match="rebuild"):
        check_engine_compatible(meta, "0.0.0", meta.gpu_name, meta.compute_capability)


def test_stale_engine_is_refused(tmp_path: Path) -> None:
    """An ONNX re-exported beside its engine (new w*, threshold...) makes the old engine stale."""
    from rpol_edge.core.files import file_sha256

    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"graph v1")
    meta = engine_meta(onnx_sha256=file_sha256(onnx_file), onnx_name="model.onnx")
    check_engine_fresh(meta, tmp_path / "model.engine")
    onnx_file.write_bytes(b"graph v2")
    with pytest.raises(MetadataError, match="stale.*rebuild"):
        check_engine_fresh(meta, tmp_path / "model.engine")
    onnx_file.unlink()  # engine shipped alone: nothing to compare against
    check_engine_fresh(meta, tmp_path / "model.engine")
