"""refit: an exported model fitted again through its own runtime (no PyTorch), against `fit` on the
same photos, from a folder, a video file and an MJPEG stream; resume, bad input, the import rule.

Every runtime here is real (ONNX Runtime, OpenVINO, a real MP4 file, a real HTTP server on
127.0.0.1); TensorRT, which cannot be installed here, is the recording stand-in of trt_standins."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("onnx", reason="refitting an ONNX graph needs the onnx extra")
pytest.importorskip("onnxruntime", reason="the ort runtime needs the ort extra")

import onnx  # noqa: E402

from benchmarks.product.mjpeg_server import MjpegServer  # noqa: E402
from rpol_edge.core.artifact import ModelArtifact  # noqa: E402
from rpol_edge.core.metadata import ModelMeta  # noqa: E402
from rpol_edge.core.onnx_meta import read_onnx_meta  # noqa: E402
from rpol_edge.data import DatasetError  # noqa: E402
from rpol_edge.exporters.onnx_export import export_onnx  # noqa: E402
from rpol_edge.exporters.trt.compat import check_model  # noqa: E402
from rpol_edge.fitting.checkpoint import CheckpointOptions, FitStopped  # noqa: E402
from rpol_edge.fitting.fitter import FitConfig, fit  # noqa: E402
from rpol_edge.refitting.job import RefitRequest, refit  # noqa: E402
from rpol_edge.refitting.onnx_graph import SUMS, fit_graph, head_weight  # noqa: E402
from rpol_edge.runtimes import infer_all, open_runtime  # noqa: E402
from tests.conftest import SAMPLE, TEST_INPUT  # noqa: E402
from tests.live.live_support import cli, ctrl_c_at_first_checkpoint, frames_bgr, write_video  # noqa: E402

TAU_REL = 1e-6
COS = 1 - 1e-9


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def onnx_w(path: Path) -> np.ndarray:
    meta = read_onnx_meta(path)
    return head_weight(onnx.load(str(path)), meta, str(path))


@pytest.fixture(scope="module")
def test_fit(sample_model: Path, tmp_path_factory: pytest.TempPathFactory) -> ModelArtifact:
    """`fit` (PyTorch) on the sample's test split: what refitting the train-split export on the
    same photos must reproduce."""
    return fit(FitConfig("voc", SAMPLE, "test", input_size=TEST_INPUT, workers=0)).artifact


def test_onnx_refit_equals_fit_on_the_same_photos(
    sample_onnx: Path, test_fit: ModelArtifact, tmp_path: Path
) -> None:
    """tau and w* of the refit (ORT, the graph's float32 sums) equal the PyTorch fit's; the graph is
    the same but for the w* weight; its maps equal those of the .rpol fitted by `fit` exported anew."""
    out = tmp_path / "refit.onnx"
    result = refit(RefitRequest(sample_onnx, out, data="voc", root=SAMPLE, split="test", workers=0))
    ref = test_fit.meta
    assert abs(result.meta.tau - ref.tau) / ref.tau < TAU_REL
    assert cosine(result.w, test_fit.w) > COS
    assert result.meta.n_images == ref.n_images == 12
    assert cosine(onnx_w(out), test_fit.w) > COS

    meta = read_onnx_meta(out)
    assert meta.tau == result.meta.tau and meta.w_sha256 == result.meta.w_sha256
    assert meta.fit_split == "test" and meta.extra["refit_runtime"].startswith("ort")
    assert meta.operating == read_onnx_meta(sample_onnx).operating

    old, new = onnx.load(str(sample_onnx)), onnx.load(str(out))
    assert [(n.op_type, list(n.input), list(n.output)) for n in old.graph.node] == [
        (n.op_type, list(n.input), list(n.output)) for n in new.graph.node
    ]
    changed = [a.name for a, b in zip(old.graph.initializer, new.graph.initializer, strict=True) if a != b]
    assert changed == ["head.weight"]

    path = tmp_path / "fit.rpol"
    test_fit.save(path)
    export_onnx(path, tmp_path / "fit.onnx", batch=(1, 2, 8))
    frames = np.stack(
        [
            cv2.resize(cv2.imread(str(p))[..., ::-1], (TEST_INPUT, TEST_INPUT))
            for p in sorted(SAMPLE.glob("JPEGImages/*.jpg"))[:4]
        ]
    )
    with (
        open_runtime(out, "ort", device="cpu") as a,
        open_runtime(tmp_path / "fit.onnx", "ort", device="cpu") as b,
    ):
        sa, sb = infer_all(a, frames), infer_all(b, frames)
    assert np.abs(sa.score - sb.score).max() < 1e-4
    assert (sa.mask != sb.mask).mean() < 1e-3


def test_openvino_refit_of_an_ir_and_of_an_onnx(
    sample_onnx: Path, test_fit: ModelArtifact, tmp_path: Path
) -> None:
    """OpenVINO runs the fit graph (at f32) of an IR and of an ONNX; the IR comes back an IR."""
    pytest.importorskip("openvino", reason="the openvino extra")
    from rpol_edge.core.ir_meta import read_ir_meta
    from rpol_edge.runtimes.openvino_runtime import write_ir

    xml = tmp_path / "model.xml"
    write_ir(sample_onnx, xml)
    out = tmp_path / "refit.xml"
    r_ir = refit(RefitRequest(xml, out, data="voc", root=SAMPLE, split="test", workers=0))
    r_onnx = refit(
        RefitRequest(
            sample_onnx, tmp_path / "r.onnx", data="voc", root=SAMPLE, split="test", runtime="openvino"
        )
    )
    for r in (r_ir, r_onnx):
        assert r.runtime.startswith("openvino")
        assert abs(r.meta.tau - test_fit.meta.tau) / test_fit.meta.tau < 1e-5
        assert cosine(r.w, test_fit.w) > 1 - 1e-8
    meta, _ = read_ir_meta(out)
    assert meta.w_sha256 == r_ir.meta.w_sha256 and meta.extra["openvino_precision"] == "f32"
    assert out.with_suffix(".bin").is_file()
    with open_runtime(out, "openvino", device="cpu") as rt:
        got = infer_all(rt, np.zeros((1, TEST_INPUT, TEST_INPUT, 3), np.uint8))
    assert got.score.shape == (1, 1, TEST_INPUT, TEST_INPUT)
    import openvino as ov

    from rpol_edge.refitting.ov_graph import head_weight as ov_head_weight

    w = ov_head_weight(ov.Core().read_model(str(out)), meta, str(out))
    assert cosine(w, test_fit.w) > 1 - 1e-8


@pytest.mark.parametrize("flavour", ["fp32-static", "fp16", "dynamo-dynamic", "int8-trt"])
def test_fit_graph_of_every_flavour(
    variants: dict[str, Path], sample_onnx: Path, test_fit: ModelArtifact, flavour: str
) -> None:
    """The fit graph of every ONNX flavour export writes passes the static TensorRT check for the
    versions the export was checked for and runs; FP32 graphs give the fit's w*, FP16 closely. The
    INT8 graph's own sums are what its INT8 backbone gives on this CPU (checked against that
    backbone's features read out of the graph: how far they are from FP32 depends on the CPU's
    INT8 kernels, cosine of w* about 0.94 on AVX-512 VNNI, 0.62 on AVX2 alone); with its FP32
    graph's features the refit is the fit's."""
    from rpol_edge.exporters.trt.compat import recorded_targets

    path = variants[flavour]
    meta = read_onnx_meta(path)
    graph = fit_graph(onnx.load(str(path)), meta, str(path))
    assert [o.name for o in graph.graph.output] == list(SUMS)
    assert check_model(graph, recorded_targets(meta)) == []
    onnx.checker.check_model(graph, full_check=True)
    r = refit(RefitRequest(path, path.with_name(f"refit-{path.name}"), data="voc", root=SAMPLE, split="test"))
    if flavour == "int8-trt":
        assert cosine(r.w, backbone_w(path, meta)) > 1 - 1e-6
    else:
        assert cosine(r.w, test_fit.w) > {"fp32-static": COS, "dynamo-dynamic": COS, "fp16": 0.999}[flavour]
    assert cosine(onnx_w(path.with_name(f"refit-{path.name}")), r.w) > COS
    if flavour == "int8-trt":
        fp32 = refit(
            RefitRequest(
                path,
                path.with_name("refit-fp32-features.onnx"),
                data="voc",
                root=SAMPLE,
                split="test",
                features_from=sample_onnx,
            )  # fmt: skip
        )
        assert cosine(fp32.w, test_fit.w) > COS
        assert read_onnx_meta(path.with_name("refit-fp32-features.onnx")).precision == "int8"


def backbone_w(path: Path, meta: ModelMeta, runtime: str = "ort") -> np.ndarray:
    """w* from the graph's own backbone features f (the w* convolution's input made an output,
    run on ONNX Runtime or OpenVINO at f32), reduced and solved in NumPy: the reference of the fit
    graph's sums on that runtime and this CPU (INT8 kernels differ between CPUs and runtimes)."""
    from rpol_edge.core.onnx_meta import INPUT
    from rpol_edge.core.wstar import FeatureSums, solve
    from rpol_edge.evaluate.compare import dataset_frames
    from rpol_edge.refitting.onnx_graph import find_head

    model = onnx.load(str(path))
    f_name = find_head(model, meta, str(path)).features
    model.graph.output.append(onnx.helper.make_tensor_value_info(f_name, onnx.TensorProto.FLOAT, None))
    frames = dataset_frames(meta, "voc", SAMPLE, "test", workers=0)
    if runtime == "ort":
        import onnxruntime as ort

        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        run = lambda x: session.run([f_name], {INPUT: x})[0]  # noqa: E731
    else:
        import openvino as ov

        tmp = path.with_name(f"features-{path.name}")
        onnx.save(model, str(tmp))
        compiled = ov.Core().compile_model(str(tmp), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        run = lambda x: compiled({INPUT: x})[compiled.output(f_name)]  # noqa: E731
    f = np.concatenate([run(frames[i : i + 1]) for i in range(len(frames))]).astype(np.float64)
    n = np.linalg.norm(f, axis=1, keepdims=True)
    sums = FeatureSums.zeros(meta.channels)
    sums.add_image_sums(
        f.mean((2, 3)), (f / np.maximum(n, 1e-12)).mean((2, 3)), n.sum((1, 2, 3)), f[0, 0].size
    )
    return solve(sums)[0]


def test_engine_is_rebuilt_from_its_refitted_onnx(
    sample_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TensorRT (stand-in 10.3): an engine refits through the ONNX it was built from (sums on ORT)
    and is rebuilt from the refitted ONNX with its precision and batch profile."""
    from trt_standins import install

    from rpol_edge.core.engine_meta import read_engine_meta
    from rpol_edge.exporters.trt.build import build_engine

    install(monkeypatch, "10.3.0.30")
    src = tmp_path / "model.onnx"
    src.write_bytes(sample_onnx.read_bytes())
    build_engine(src, tmp_path / "model.engine", "fp32", (1, 2, 4))
    out = tmp_path / "out" / "lobby.engine"
    r = refit(
        RefitRequest(tmp_path / "model.engine", out, data="voc", root=SAMPLE, split="test", device="cpu")
    )
    assert r.written == [out, out.with_suffix(".onnx")]
    em = read_engine_meta(out)
    assert (em.precision, em.min_batch, em.opt_batch, em.max_batch) == ("fp32", 1, 2, 4)
    assert em.model.w_sha256 == r.meta.w_sha256 and em.onnx_name == "lobby.onnx"


def _png_folder(frames: list[np.ndarray], folder: Path) -> Path:
    folder.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:03d}.png"), f)
    return folder


def _cli_process(*args: object) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", "from rpol_edge.cli.app import main; main()", "refit", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_video_and_mjpeg_give_the_folder_w(sample_onnx: Path, tmp_path: Path) -> None:
    """`refit --source video.mp4 --frames N` and `--source http://.../stream.mjpg` (each its own
    process) give the w* of `--data folder` on the same decoded frames."""
    frames = frames_bgr(6)
    video = tmp_path / "clip.mp4"
    write_video(video, frames)
    cap = cv2.VideoCapture(str(video))
    decoded = [cap.read()[1] for _ in range(6)]
    cap.release()
    vdir = _png_folder(decoded, tmp_path / "video_frames")

    server = MjpegServer(frames, fps=20.0)
    mdir = _png_folder(
        [cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR) for j in server.jpegs], tmp_path / "mj"
    )
    server.start()
    try:
        runs = {
            "video": _cli_process(sample_onnx, "-o", tmp_path / "v.onnx", "--source", video, "--frames", 6),
            "mjpeg": _cli_process(
                sample_onnx, "-o", tmp_path / "m.onnx", "--source", server.url, "--frames", 6
            ),
        }
    finally:
        server.stop()
    for name, folder in (("video", vdir), ("mjpeg", mdir)):
        assert runs[name].returncode == 0, runs[name].stderr
        ref = refit(
            RefitRequest(sample_onnx, tmp_path / f"{name}-folder.onnx", data="folder", root=folder, workers=0)
        )
        meta = read_onnx_meta(tmp_path / f"{name[0]}.onnx")
        assert meta.n_images == 6 and meta.fit_data == "source"
        assert cosine(onnx_w(tmp_path / f"{name[0]}.onnx"), ref.w) > COS
        assert abs(meta.tau - ref.meta.tau) / ref.meta.tau < TAU_REL


def test_every_samples_the_video_clock(sample_onnx: Path, tmp_path: Path) -> None:
    """--every counts the video's own seconds: 10 fps and --every 0.2 keep frames 0, 2, 4."""
    frames = frames_bgr(6)
    video = tmp_path / "clip.mp4"
    write_video(video, frames, fps=10.0)
    cap = cv2.VideoCapture(str(video))
    decoded = [cap.read()[1] for _ in range(6)]
    cap.release()
    r = refit(RefitRequest(sample_onnx, tmp_path / "e.onnx", source=str(video), frames=3, every=0.2))
    ref = refit(
        RefitRequest(
            sample_onnx, tmp_path / "f.onnx", data="folder", root=_png_folder(decoded[::2], tmp_path / "d")
        )
    )
    assert r.meta.n_images == 3 and cosine(r.w, ref.w) > COS


def test_stop_and_resume_give_the_uninterrupted_w(sample_onnx: Path, tmp_path: Path) -> None:
    """A real SIGINT mid-run saves the sums and stops; the same request with resume ends with the
    w* and tau of a run never stopped."""
    common = dict(data="voc", root=SAMPLE, split="train", batch_size=4, workers=0)
    whole = refit(RefitRequest(sample_onnx, tmp_path / "whole.onnx", **common))  # type: ignore[arg-type]
    ckpt = CheckpointOptions(tmp_path / "ckpt", every=0)

    def interrupt(done: int, total: int) -> None:
        if done == 12:
            os.kill(os.getpid(), signal.SIGINT)

    req = RefitRequest(sample_onnx, tmp_path / "r.onnx", **common)  # type: ignore[arg-type]
    with pytest.raises(FitStopped, match=r"stopped by SIGINT after 12/28 frames"):
        refit(req, interrupt, ckpt)
    assert not (tmp_path / "r.onnx").exists() and any((tmp_path / "ckpt").iterdir())
    resumed = refit(req, None, CheckpointOptions(tmp_path / "ckpt", resume=True))
    assert resumed.resumed_at == 12
    assert np.array_equal(resumed.w, whole.w) and resumed.meta.tau == whole.meta.tau
    assert not (tmp_path / "ckpt").exists()
    other = RefitRequest(sample_onnx, tmp_path / "r.onnx", **{**common, "batch_size": 2})  # type: ignore[arg-type]
    with pytest.raises(FitStopped):
        refit(other, interrupt, CheckpointOptions(tmp_path / "ckpt2"))
    with pytest.raises(ValueError, match="another fit configuration"):
        refit(req, None, CheckpointOptions(tmp_path / "ckpt2", resume=True))


def test_cli_ctrl_c_exits_130_with_a_resumable_checkpoint(sample_onnx: Path, tmp_path: Path) -> None:
    """Ctrl-C on the command (its own process, an MJPEG stream that keeps it busy): exit 130, one
    line naming the checkpoint and --resume."""
    ckpt = tmp_path / "c.onnx.ckpt"
    args = ["refit", str(sample_onnx), "-o", str(tmp_path / "c.onnx"), "--source", "{url}", "--frames", "100"]
    returncode, stderr = ctrl_c_at_first_checkpoint(
        [*args, "--batch-size", "1", "--checkpoint-every", "1"], ckpt
    )
    assert returncode == 130, stderr
    assert "--resume" in stderr and "Traceback" not in stderr
    assert any(ckpt.glob("*.npz")) and not (tmp_path / "c.onnx").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nothere.onnx", "-o", "o.onnx", "--data", "folder", "--root", "."], "no such model file"),
        (["{rpol}", "-o", "o.rpol", "--data", "folder", "--root", "."], "a .rpol refits with rpol-edge fit"),
        (["{onnx}", "-o", "o.xml", "--data", "folder", "--root", "."], "same kind"),
        (["{onnx}", "-o", "o.onnx"], "--data KIND, --root DIR"),
        (["{onnx}", "-o", "o.onnx", "--data", "folder", "--root", ".", "--source", "x.mp4"], "one of them"),
        (["{onnx}", "-o", "o.onnx", "--source", "nothere.mp4", "--frames", "3"], "no such file or folder"),
        (["{onnx}", "-o", "o.onnx", "--source", "x.mp4"], "--frames 0"),
        (["{onnx}", "-o", "o.onnx", "--source", "x.mp4", "--frames", "2", "--every", "-1"], "--every -1"),
        (["{onnx}", "-o", "o.onnx", "--data", "folder", "--root", "{empty}"], "no image"),
        (["{junk}", "-o", "o.onnx", "--data", "folder", "--root", "."], "junk.onnx"),
        (["{onnx}", "-o", "o.onnx", "--data", "folder", "--root", ".", "--runtime", "trt"], "--runtime trt"),
        (["{onnx}", "-o", "o.onnx", "--data", "folder", "--root", ".", "--device", "gpu7"], "device 'gpu7'"),
        (["{onnx}", "-o", "o.onnx", "--data", "folder", "--root", ".", "--resume"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    sample_onnx: Path, sample_model: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk.onnx").write_bytes(b"not a graph at all")
    names = {
        "onnx": sample_onnx,
        "rpol": sample_model,
        "empty": tmp_path / "empty",
        "junk": tmp_path / "junk.onnx",
    }
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        res = cli("refit", *[a.format(**names) for a in args])
    finally:
        os.chdir(cwd)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in " ".join(res.output.split()), (
        res.output
    )
    assert not (tmp_path / "o.onnx").exists()


def test_refit_never_imports_torch(sample_onnx: Path, tmp_path: Path) -> None:
    """The command and the Python API, run in a fresh interpreter: torch and timm stay unloaded."""
    code = f"""
import sys, json
from rpol_edge.cli.app import main
sys.argv = ["rpol-edge", "refit", {str(sample_onnx)!r}, "-o", {str(tmp_path / "a.onnx")!r},
            "--data", "voc", "--root", {str(SAMPLE)!r}, "--split", "test", "--workers", "0"]
try:
    main()
except SystemExit as e:
    assert e.code in (0, None), e.code
import rpol_edge
m = rpol_edge.refit({str(sample_onnx)!r}, {str(tmp_path / "b.onnx")!r},
                    data="voc", root={str(SAMPLE)!r}, split="test")
m.close()
print(json.dumps(sorted(k for k in sys.modules if k.split(".")[0] in ("torch", "timm", "torchvision"))))
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1]) == []
    assert (tmp_path / "a.onnx").is_file() and (tmp_path / "b.onnx").is_file()


def test_model_refit_method(sample_onnx: Path, tmp_path: Path) -> None:
    import rpol_edge

    with rpol_edge.load(sample_onnx, runtime="ort", device="cpu") as model:
        new = model.refit(tmp_path / "m.onnx", data="voc", root=SAMPLE, split="test")
    with new:
        assert isinstance(new.meta, ModelMeta) and new.meta.fit_split == "test"
        assert new.predict(sorted(SAMPLE.glob("JPEGImages/*.jpg"))[0]).score_map.shape == (
            TEST_INPUT,
            TEST_INPUT,
        )
    with pytest.raises(TypeError, match="did you mean frames"):
        rpol_edge.refit(sample_onnx, tmp_path / "x.onnx", frame=3)


def test_raw_frame_model_refits_on_raw_frames(sample_model: Path, sample_onnx: Path, tmp_path: Path) -> None:
    """A graph exported with --frame-size takes the camera's raw frames in its fit graph too (resize
    and crop in the graph): it gives the w* of the host-resized model on the same video, up to
    the in-graph resize's rounding; photos of another size are counted skips, never fed."""
    from tests.live.live_support import FRAME_H, FRAME_W

    raw = tmp_path / "raw.onnx"
    export_onnx(sample_model, raw, batch=(1, 1, 1), frame=(FRAME_W, FRAME_H, "bgr"))
    video = tmp_path / "clip.mp4"
    write_video(video, frames_bgr(6))
    a = refit(RefitRequest(raw, tmp_path / "a.onnx", source=str(video), frames=6))
    b = refit(RefitRequest(sample_onnx, tmp_path / "b.onnx", source=str(video), frames=6))
    assert a.meta.n_images == b.meta.n_images == 6 and read_onnx_meta(tmp_path / "a.onnx").raw_frames
    assert cosine(a.w, b.w) > 0.999  # 0.99986 measured: the in-graph resize rounds differently
    with pytest.raises(DatasetError, match="no frame could be read .*320x240"):
        refit(RefitRequest(raw, tmp_path / "c.onnx", data="voc", root=SAMPLE, split="test", workers=0))


def test_cpu_int8_graph_refits_without_a_tensorrt_claim(sample_onnx: Path, tmp_path: Path) -> None:
    """The CPU INT8 graph (uint8 QDQ, never a TensorRT source) refits, its own INT8 sums or its
    FP32 graph's, and its record gains no TensorRT claim; OpenVINO runs its fit graph too."""
    from rpol_edge.exporters.int8 import quantize_int8

    int8 = tmp_path / "model.int8.onnx"
    quantize_int8(sample_onnx, int8, "voc", SAMPLE, "train", count=8)
    own = refit(
        RefitRequest(int8, tmp_path / "own.onnx", data="voc", root=SAMPLE, split="test", runtime="ort")
    )
    fp32 = refit(
        RefitRequest(
            int8, tmp_path / "fp32.onnx", data="voc", root=SAMPLE, split="test", features_from=sample_onnx
        )
    )
    meta = read_onnx_meta(tmp_path / "own.onnx")
    assert meta.precision == "int8" and "trt_targets" not in meta.extra
    assert "trt_targets" not in read_onnx_meta(int8).extra
    # INT8 features differ from FP32 by what this CPU's INT8 kernels do (see the test above): each
    # runtime's refit is checked against its own backbone's features instead
    assert cosine(own.w, backbone_w(int8, meta, "ort")) > 1 - 1e-6
    assert cosine(fp32.w, backbone_w(sample_onnx, read_onnx_meta(sample_onnx), "ort")) > 1 - 1e-6
    assert own.meta.n_images == fp32.meta.n_images == 12
    pytest.importorskip("openvino", reason="the openvino extra")
    ov = refit(
        RefitRequest(int8, tmp_path / "ov.onnx", data="voc", root=SAMPLE, split="test", runtime="openvino")
    )
    assert cosine(ov.w, backbone_w(int8, meta, "openvino")) > 1 - 1e-6
