"""The TensorRT build and runtime on each TensorRT version a Jetson or PC may have (8.6, 10.3,
10.13, 11.x), run against the recording stand-ins of ``trt_standins`` (TensorRT and CUDA cannot be
installed here; the stand-ins' facts cite TensorRT's sources). Each test names the failure it
guards against on a real device."""

from __future__ import annotations

import hashlib
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import trt_standins
from trt_standins import VERSIONS, Cudart, install, onnx_source, standin_plan

from rpol_edge.core.engine_meta import (
    EngineMeta,
    check_engine_compatible,
    device_model,
    read_engine_meta,
    sidecar_path,
)
from rpol_edge.core.metadata import MetadataError
from rpol_edge.exporters.trt import build as trt_build
from rpol_edge.exporters.trt.build import (
    EngineBuildError,
    build_engine,
    choose_onnx,
    fast_precisions,
    timing_cache_name,
)
from rpol_edge.runtimes import cuda_mem
from rpol_edge.runtimes.base import InferenceError

pytest.importorskip("onnx", reason="onnx not installed")
K = 32


def sources(tmp_path: Path) -> tuple[Path, Path]:
    return onnx_source(tmp_path / "m.onnx"), onnx_source(tmp_path / "m.fp16.onnx")


def build(tmp_path: Path, version: str, precision: str, **kwargs: object) -> EngineMeta:
    fp32, fp16 = sources(tmp_path)
    onnx_path = choose_onnx(precision, version, fp32, fp16)
    return build_engine(onnx_path, tmp_path / "m.engine", precision, batch=(1, 2, 4), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_build_on_every_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: str, precision: str
) -> None:
    """8.6: create_network(0) is implicit batch and its ONNX parser refuses it; 11: the
    platform_has_fast_* properties are gone (AttributeError); both built here."""
    trt = install(monkeypatch, version)
    meta = build(tmp_path, version, precision)
    (network,) = trt.networks
    assert not network.implicit_batch
    explicit = trt.NetworkDefinitionCreationFlag.__members__.get("EXPLICIT_BATCH")
    major = int(version.split(".")[0])
    # EXPLICIT_BATCH is passed only where it means something (below 10; deprecated in 10, gone in 11).
    assert bool(explicit is not None and network.flags & (1 << explicit)) == (major < 10)
    typed = precision == "fp16" and trt_build.fp16_strategy(version) == "strongly_typed"
    assert network.strongly_typed == (typed or major >= 11)  # 11: always strongly typed
    (config,) = trt.configs
    flags = {f.name for f in config.flags}
    assert ("FP16" in flags) == (precision == "fp16" and not typed)
    # FP32 means FP32: TF32 (on in every new config) is cleared; FP16 keeps TensorRT's default.
    assert ("TF32" in flags) == (precision != "fp32")
    assert (tmp_path / "m.engine").read_bytes() == f"plan {version} batch 1..4".encode()
    assert read_engine_meta(tmp_path / "m.engine") == meta and meta.tensorrt_version == version


@pytest.mark.parametrize(("version", "named"), [("8.6.1.6", False), ("10.3.0.30", True), ("11.1.0.6", True)])
def test_parse_error_is_reported_on_every_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: str, named: bool
) -> None:
    """8.6's ParserError has no node_name/node_operator: asking for them hid the parser's message
    behind an AttributeError."""
    trt = install(monkeypatch, version)
    trt.parse_error = True
    with pytest.raises(EngineBuildError) as info:
        build(tmp_path, version, "fp32")
    message = str(info.value)
    assert "node 3" in message and "unsupported padding" in message
    assert ("'/backbone/conv_stem/Conv' (Conv)" in message) == named
    assert not (tmp_path / "m.engine").exists()


@pytest.mark.parametrize(
    ("cc", "fp16", "int8"),
    [("5.3", True, False), ("6.1", False, True), ("6.2", True, False), ("7.2", True, True),
     ("8.7", True, True), ("9.0", True, True), ("12.0", True, True), ("5.2", False, False)],
)  # fmt: skip
def test_fast_precisions_from_compute_capability(cc: str, fp16: bool, int8: bool) -> None:
    assert fast_precisions(cc) == (fp16, int8)


def test_int8_refused_without_fast_int8(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The decision no longer asks Builder.platform_has_fast_int8 (not bound in 11)."""
    import onnx

    from rpol_edge.core.onnx_meta import META_KEY
    from tests.runtimes.test_trt_runtime import model_meta

    path = onnx_source(tmp_path / "m.int8.trt.onnx")
    graph = onnx.load(str(path))
    meta = model_meta("int8").replace(extra={"int8_scheme": "symmetric"})
    next(p for p in graph.metadata_props if p.key == META_KEY).value = meta.to_json()
    onnx.save(graph, str(path))
    for version in ("10.3.0.30", "11.1.0.6"):
        install(monkeypatch, version, Cudart(gpu="NVIDIA Tegra X1", cc="5.3"))
        with pytest.raises(EngineBuildError, match=r"sm 5\.3\) has no fast INT8"):
            build_engine(path, tmp_path / "m.engine", "int8")
    trt = install(monkeypatch, "11.1.0.6")  # Orin: INT8 builds, strongly typed from the Q/DQ graph
    assert build_engine(path, tmp_path / "m.engine", "int8").precision == "int8"
    assert trt.networks[0].strongly_typed


def test_foreign_timing_cache_keeps_the_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache from a PC (or a JetPack upgrade): set_timing_cache says False. The build must go on
    without it, write the plan, and rewrite the cache for this device."""
    trt = install(monkeypatch, "10.3.0.30")
    cache = tmp_path / timing_cache_name("10.3.0.30", "Orin", "8.7")
    assert cache.name == "timing-10.3.0.30-Orin-sm87.cache"
    cache.write_bytes(b"cache:10.13.0.35:NVIDIA GeForce RTX 4090")
    with pytest.warns(UserWarning, match="another TensorRT version or GPU"):
        build(tmp_path, "10.3.0.30", "fp16", timing_cache=cache)
    assert (tmp_path / "m.engine").is_file() and sidecar_path(tmp_path / "m.engine").is_file()
    assert cache.read_bytes() == b"cache:10.3.0.30:Orin"
    # Now it is this device's: read, used, no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build(tmp_path, "10.3.0.30", "fp16", timing_cache=cache)
    assert trt.configs[-1].timing_cache.owner == "10.3.0.30:Orin"


def test_damaged_or_unwritable_timing_cache_keeps_the_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(monkeypatch, "10.13.0.35")
    damaged = tmp_path / "damaged.cache"
    damaged.write_bytes(b"\x00garbage")
    with pytest.warns(UserWarning, match="damaged"):
        build(tmp_path, "10.13.0.35", "fp32", timing_cache=damaged)
    assert (tmp_path / "m.engine").is_file()
    unwritable = tmp_path / "a-folder.cache"
    unwritable.mkdir()
    (tmp_path / "m.engine").unlink()
    with pytest.warns(UserWarning, match="not written"):
        build(tmp_path, "10.13.0.35", "fp32", timing_cache=unwritable)
    assert (tmp_path / "m.engine").is_file() and sidecar_path(tmp_path / "m.engine").is_file()


def test_board_recorded_and_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every Orin module is "Orin" / sm 8.7: only the board name tells an AGX Orin engine from an
    Orin Nano one, and TensorRT itself only warns."""
    model = tmp_path / "model"
    model.write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\0")
    assert device_model(model) == "NVIDIA Jetson AGX Orin Developer Kit"
    assert device_model(tmp_path / "absent") == ""
    install(monkeypatch, "10.3.0.30")
    monkeypatch.setattr(trt_build, "device_model", lambda: "NVIDIA Jetson AGX Orin Developer Kit")
    meta = build(tmp_path, "10.3.0.30", "fp16")
    assert read_engine_meta(tmp_path / "m.engine").device_model == "NVIDIA Jetson AGX Orin Developer Kit"
    check_engine_compatible(meta, "10.3.0.30", "Orin", "8.7", "m.engine", meta.device_model)
    check_engine_compatible(meta, "10.3.0.30", "Orin", "8.7", "m.engine", "")  # not a device-tree host
    with pytest.raises(MetadataError, match="Orin Nano.*rpol-edge export MODEL --onnx --trt"):
        check_engine_compatible(
            meta, "10.3.0.30", "Orin", "8.7", "m.engine", "NVIDIA Jetson Orin Nano Developer Kit"
        )


# --- the runtime ---------------------------------------------------------------------------------


def standin_engine(
    tmp_path: Path, version: str = "10.13.0.35", lo: int = 1, hi: int = 8, peak: bool = False
) -> Path:
    from tests.runtimes.test_trt_runtime import engine_meta

    engine = tmp_path / "m.engine"
    plan = standin_plan(K, lo, hi, peak=peak)
    engine.write_bytes(plan)
    meta = engine_meta(
        tensorrt_version=version, min_batch=lo, opt_batch=lo, max_batch=hi,
        engine_sha256=hashlib.sha256(plan).hexdigest(),
    )  # fmt: skip
    sidecar_path(engine).write_text(meta.to_json())
    return engine


def expected(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    score = frames.astype(np.float32).mean(-1)[:, None] / 255
    return score, (score > 0.5).astype(np.uint8)


def run_sizes(rt: object, sizes: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    for n in sizes:
        frames = rng.integers(0, 256, (n, K, K, 3), dtype=np.uint8)
        out = rt.infer(frames)  # type: ignore[attr-defined]
        score, mask = expected(frames)
        np.testing.assert_allclose(out.score, score, rtol=1e-6)
        assert np.array_equal(out.mask, mask)
        if out.peak is not None:
            np.testing.assert_allclose(out.peak, score.max(axis=(2, 3)), rtol=1e-6)


@pytest.mark.parametrize("version", VERSIONS)
def test_cuda_graph_never_replayed_after_a_shape_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: str
) -> None:
    """Batch n -> m -> n (infer_all's tails): TensorRT needs one enqueue after each input-shape
    change before a graph replays; replaying graph n straight after set_input_shape(n) is stale."""
    from rpol_edge.runtimes.trt_runtime import TrtRuntime

    trt = install(monkeypatch, version)
    sizes = (1, 3, 3, 1, 4, 4, 3, 3, 3, 8, 1)
    with TrtRuntime(standin_engine(tmp_path, version), device="cuda", cuda_graph=True) as rt:
        run_sizes(rt, sizes)
        assert rt.cuda_graph, "no capture failed"
    assert trt.violations == []
    assert trt.cudart is not None
    assert trt.cudart.launches == 4, "the repeated sizes replay their graphs"
    assert set(trt.cudart.capture_modes) == {trt_standins.CaptureMode.cudaStreamCaptureModeThreadLocal}


@pytest.mark.parametrize("version", VERSIONS)
def test_engine_with_the_peak_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    """An engine of a current graph has score, mask and peak; each comes back, graphs replayed or
    not (an older graph's engine, without peak, is every other test here)."""
    from rpol_edge.runtimes.trt_runtime import TrtRuntime

    trt = install(monkeypatch, version)
    with TrtRuntime(standin_engine(tmp_path, version, peak=True), device="cuda", cuda_graph=True) as rt:
        run_sizes(rt, (1, 3, 3, 1))
        assert rt.infer(np.zeros((2, K, K, 3), np.uint8)).peak is not None
    assert trt.violations == []


def test_without_cuda_graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rpol_edge.runtimes.trt_runtime import TrtRuntime

    trt = install(monkeypatch, "8.6.1.6")
    with TrtRuntime(standin_engine(tmp_path, "8.6.1.6"), device="cuda") as rt:
        run_sizes(rt, (1, 2, 2, 8))
    assert trt.violations == [] and trt.cudart is not None and trt.cudart.launches == 0


def test_infer_on_another_thread_uses_the_chosen_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The current CUDA device is per host thread: the live pipeline's inference thread starts on
    device 0 although activate() chose cuda:1 on the main thread."""
    from rpol_edge.runtimes.trt_runtime import TrtRuntime

    trt = install(monkeypatch, "10.3.0.30")
    errors: list[BaseException] = []
    with TrtRuntime(standin_engine(tmp_path, "10.3.0.30"), device="cuda:1", cuda_graph=True) as rt:

        def worker() -> None:
            try:
                run_sizes(rt, (1, 1, 2))
            except BaseException as exc:  # noqa: BLE001 - re-raised on the main thread
                errors.append(exc)

        t = threading.Thread(target=worker)
        t.start()
        t.join()
    assert errors == [] and trt.violations == []


def test_two_gpus_on_one_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two engines on cuda:0 and cuda:1, called in turn from one thread: each call runs on its own GPU."""
    from rpol_edge.runtimes.trt_runtime import TrtRuntime

    trt = install(monkeypatch, "10.3.0.30")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = TrtRuntime(standin_engine(tmp_path / "a", "10.3.0.30"), device="cuda:0")
    b = TrtRuntime(standin_engine(tmp_path / "b", "10.3.0.30"), device="cuda:1", cuda_graph=True)
    with a, b:
        for _ in range(3):
            run_sizes(a, (1,))
            run_sizes(b, (2,))
    assert trt.violations == []


def test_failed_capture_falls_back_and_clears_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rpol_edge.runtimes.trt_runtime import TrtRuntime

    cudart = Cudart()
    cudart.fail_next_capture = True
    trt = install(monkeypatch, "10.13.0.35", cudart)
    with TrtRuntime(standin_engine(tmp_path), cuda_graph=True) as rt:
        with pytest.warns(UserWarning, match="cudaErrorStreamCaptureInvalidated.*without graphs"):
            run_sizes(rt, (2,))
        assert not rt.cuda_graph
        run_sizes(rt, (2, 2))
    assert cudart.last_error_cleared >= 1 and cudart.launches == 0 and trt.violations == []


def test_insufficient_driver_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """cuda-bindings 13 on JetPack 6's CUDA 12 driver: the error must say so, not "no GPU"."""
    from rpol_edge.runtimes.trt_runtime import TrtRuntime

    install(monkeypatch, "10.3.0.30", Cudart(driver=12060, runtime=13000))
    with pytest.raises(cuda_mem.CudaError, match="cudaErrorInsufficientDriver") as info:
        cuda_mem.visible_devices()
    assert "pip install 'cuda-bindings>=12.0,<13'" in str(info.value) and "jetpack61" in str(info.value)
    assert cuda_mem.device_count() == 0
    with pytest.raises(InferenceError, match="cudaErrorInsufficientDriver.*driver supports CUDA 12.6"):
        TrtRuntime(standin_engine(tmp_path, "10.3.0.30"))


def test_real_bindings_without_a_driver_say_so() -> None:
    """The real cuda-bindings on a machine without an NVIDIA driver (this one, in CI)."""
    pytest.importorskip("cuda.bindings", reason="cuda-python (cuda-bindings) not installed")
    if cuda_mem.device_count() > 0:
        pytest.skip("a CUDA device is visible here")
    with pytest.raises(cuda_mem.CudaError) as info:
        cuda_mem.visible_devices()
    assert info.value.name.startswith("cudaError") and "driver" in str(info.value)


# --- export: an engine from an exported ONNX, on the device ----------------------------------------


@pytest.mark.parametrize(("version", "source"), [("10.3.0.30", "m.onnx"), ("10.13.0.35", "m.fp16.onnx")])
def test_engine_from_copied_onnx(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: str, source: str
) -> None:
    """Fit and ONNX export on a PC, engine on the Jetson: no PyTorch there. FP16 comes from the FP32
    graph (builder flag) or from the FP16-cast graph beside it (strongly typed)."""
    from rpol_edge.core.export_formats import FORMATS
    from rpol_edge.exporters.orchestrator import ExportRequest, run_export

    install(monkeypatch, version)
    fp32 = onnx_source(tmp_path / FORMATS["onnx"].filename)
    onnx_source(tmp_path / FORMATS["onnx-fp16"].filename)
    expected_source = {"m.onnx": fp32.name, "m.fp16.onnx": FORMATS["onnx-fp16"].filename}[source]
    out = tmp_path / "engine"
    res = run_export(ExportRequest(model=fp32, out_dir=out, trt=True, fp16=True, batch=(1, 2, 4)))
    meta = read_engine_meta(res.files["trt"])
    assert meta.precision == "fp16" and (meta.min_batch, meta.max_batch) == (1, 4)
    assert f"--onnx={tmp_path / expected_source}" in res.trtexec
    assert (
        f"timing-{version}-Orin-sm87.cache" in res.trtexec
        and (out / f"timing-{version}-Orin-sm87.cache").is_file()
    )


def test_engine_from_onnx_refusals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rpol_edge.core.export_formats import ExportError
    from rpol_edge.exporters.orchestrator import ExportRequest, run_export

    install(monkeypatch, "10.13.0.35")
    fp32 = onnx_source(tmp_path / "model.onnx")
    with pytest.raises(ExportError, match="already ONNX: add trt=True"):
        run_export(ExportRequest(model=fp32, out_dir=tmp_path / "o"))
    with pytest.raises(ExportError, match="`frame_size`: fixed when model.onnx was exported"):
        run_export(ExportRequest(model=fp32, out_dir=tmp_path / "o", trt=True, frame_size=(640, 480)))
    with pytest.raises(EngineBuildError, match="FP16-cast"):  # strongly typed FP16 and no model.fp16.onnx
        run_export(ExportRequest(model=fp32, out_dir=tmp_path / "o", trt=True, fp16=True))
