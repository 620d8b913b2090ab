"""`fit --source`: the PyTorch fit on frames of a folder, a real MP4 file and a real MJPEG stream on
127.0.0.1, against the same frames read as a `--data folder` data set; what the model file records,
Ctrl-C and resume, a stream that dies, and bad input (one line, exit 2)."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks.product.mjpeg_server import MjpegServer
from rpol_edge.core.artifact import ModelArtifact
from rpol_edge.core.metadata import MetadataError
from rpol_edge.data import DatasetError
from rpol_edge.explain.explainer import ExplainConfig, explain
from rpol_edge.fitting.checkpoint import CheckpointOptions, FitStopped
from rpol_edge.fitting.config import FitConfig
from rpol_edge.fitting.fitter import fit
from rpol_edge.live.sampling import SourceCount, SourceFrames, source_reader
from tests.conftest import SAMPLE
from tests.live.live_support import cli, ctrl_c_at_first_checkpoint, frames_bgr, write_video

K = 64
"""A small input keeps every fit here to a few seconds on a CPU; the framing is the same at any K."""
COS = 0.99999
TAU_REL = 1e-6
COMMON = ("--input-size", K, "--workers", 0, "--batch-size", 2)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def assert_same_fit(a: ModelArtifact, b: ModelArtifact) -> None:
    assert a.meta.n_images == b.meta.n_images
    assert cosine(a.w, b.w) >= COS
    assert abs(a.meta.tau - b.meta.tau) / b.meta.tau <= TAU_REL


def png_folder(frames: list[np.ndarray], folder: Path) -> Path:
    folder.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:03d}.png"), f)
    return folder


def source_fit(
    cfg: FitConfig, checkpoints: CheckpointOptions | None = None
) -> tuple[ModelArtifact, SourceCount]:
    """The library fit of ``cfg.source``, read through the sampler the command and the API use."""
    reader = source_reader(cfg.source, cfg.frames, cfg.every, cfg.batch_size)
    return fit(cfg, checkpoints=checkpoints, reader=reader).artifact, reader.counts


def cli_fit(tmp_path: Path, name: str, *args: object) -> ModelArtifact:
    res = cli("fit", *args, *COMMON, "-o", tmp_path / name)
    assert res.exit_code == 0, res.output
    return ModelArtifact.load(tmp_path / name)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[np.ndarray]]:
    """A real MP4 (6 sample photos at 10 fps, written by OpenCV) and its frames as decoded."""
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    write_video(path, frames_bgr(6), fps=10.0)
    cap = cv2.VideoCapture(str(path))
    decoded = [cap.read()[1] for _ in range(6)]
    cap.release()
    return path, decoded


def test_folder_as_source_gives_the_folder_data_w(tmp_path: Path) -> None:
    """The same photos as `source=DIR` and as `data="folder", root=DIR` (the Python API): the same
    w* and tau; the model records the source, its frame count and --every."""
    import rpol_edge

    photos = tmp_path / "photos"
    photos.mkdir()
    for p in sorted(SAMPLE.glob("JPEGImages/*.jpg"))[:6]:
        shutil.copy(p, photos / p.name)
    opts = {"input_size": K, "workers": 0, "batch_size": 2}
    rpol_edge.fit(photos, tmp_path / "data.rpol", data="folder", **opts).close()
    rpol_edge.fit(output=tmp_path / "src.rpol", source=str(photos), frames=6, **opts).close()
    data, src = ModelArtifact.load(tmp_path / "data.rpol"), ModelArtifact.load(tmp_path / "src.rpol")
    assert_same_fit(src, data)
    m = src.meta
    assert (m.fit_data, m.fit_root, m.fit_split, m.n_images) == ("source", str(photos), "", 6)
    assert (m.extra["fit_frames"], m.extra["fit_every"]) == ("6", "0")
    assert data.meta.fit_data == "folder" and "fit_frames" not in data.meta.extra
    query = [sorted(photos.glob("*.jpg"))[0]]  # explain reads a folder source again as that folder
    got = explain(ExplainConfig(tmp_path / "src.rpol", query, workers=0, top=1))
    assert len(got) == 1 and got[0].record()["queries"]


def test_video_file_gives_the_w_of_its_frames_as_a_folder(
    video: tuple[Path, list[np.ndarray]], tmp_path: Path
) -> None:
    """`fit --source clip.mp4 --frames 6` equals `fit --data folder` on its decoded frames; with
    `--every 0.2` the video's own clock (10 fps) keeps frames 0, 2 and 4."""
    path, decoded = video
    everything = cli_fit(tmp_path, "v.rpol", "--source", path, "--frames", 6)
    assert_same_fit(everything, cli_fit(tmp_path, "d.rpol", "--root", png_folder(decoded, tmp_path / "all")))
    sampled = cli_fit(tmp_path, "e.rpol", "--source", path, "--frames", 3, "--every", 0.2)
    folder = png_folder(decoded[::2], tmp_path / "every")
    assert_same_fit(sampled, cli_fit(tmp_path, "f.rpol", "--data", "folder", "--root", folder))
    assert (sampled.meta.fit_root, sampled.meta.extra["fit_every"]) == (str(path), "0.2")
    with pytest.raises(MetadataError, match="clip.mp4, which explain cannot read again"):
        explain(ExplainConfig(tmp_path / "e.rpol", [tmp_path / "every" / "000.png"], workers=0))


def test_mjpeg_stream_counts_a_corrupt_part_and_fits_the_rest(tmp_path: Path) -> None:
    """A live HTTP MJPEG stream whose second part is not a JPEG: that part is counted, the fit takes
    the next ones and equals the folder fit of the parts it kept."""
    server = MjpegServer(frames_bgr(6), fps=20.0, corrupt_at=1)
    kept = [cv2.imdecode(np.frombuffer(server.jpegs[i], np.uint8), cv2.IMREAD_COLOR) for i in (0, 2, 3, 4)]
    server.start()
    try:
        cfg = FitConfig(source=server.url, frames=4, input_size=K, workers=0, batch_size=2)
        art, counts = source_fit(cfg)
    finally:
        server.stop()
    assert (counts.corrupt, art.meta.n_images, art.meta.n_skipped, art.meta.fit_root) == (1, 4, 1, server.url)
    ref = fit(FitConfig(root=png_folder(kept, tmp_path / "kept"), input_size=K, workers=0, batch_size=2))
    assert_same_fit(art, ref.artifact)


def test_stop_and_resume_give_the_uninterrupted_w(
    video: tuple[Path, list[np.ndarray]], tmp_path: Path
) -> None:
    """A real SIGINT after 2 of 6 frames saves the sums; the same fit with resume reads the video
    again, passes over those 2 and ends with the w* and tau of a fit never stopped."""
    cfg = FitConfig(source=str(video[0]), frames=6, input_size=K, workers=0, batch_size=2)
    whole, _ = source_fit(cfg)

    def interrupt(done: int, total: int) -> None:
        if done == 2:
            os.kill(os.getpid(), signal.SIGINT)

    def reader() -> SourceFrames:
        return source_reader(cfg.source, cfg.frames, cfg.every, cfg.batch_size)

    with pytest.raises(FitStopped, match=r"stopped by SIGINT after 2/6 frames of the source"):
        fit(cfg, interrupt, checkpoints=CheckpointOptions(tmp_path / "ckpt"), reader=reader())
    resumed = fit(cfg, checkpoints=CheckpointOptions(tmp_path / "ckpt", resume=True), reader=reader())
    assert resumed.resumed_at == 2
    assert np.array_equal(resumed.artifact.w, whole.w) and resumed.artifact.meta.tau == whole.meta.tau
    other = FitConfig(source=str(video[0]), frames=5, input_size=K, workers=0, batch_size=2)
    with pytest.raises(ValueError, match="another fit configuration"):
        source_fit(other, CheckpointOptions(tmp_path / "ckpt", resume=True))


def test_a_stream_that_dies_is_one_error_and_a_resumable_checkpoint(tmp_path: Path) -> None:
    """The MJPEG server goes away after 2 frames and does not come back: the reconnect is counted,
    the fit ends in one `DatasetError` naming the stream, and the frames it had are saved. (2 fps:
    few parts wait in the socket's buffer when the server goes.)"""
    server = MjpegServer(frames_bgr(4), fps=2.0)
    server.start()
    cfg = FitConfig(source=server.url, frames=20, input_size=K, workers=0, batch_size=2)
    reader = source_reader(cfg.source, cfg.frames, cfg.every, cfg.batch_size, open_timeout=1.0)

    def kill(done: int, total: int) -> None:
        if done == 2:
            server.stop()

    try:
        with pytest.raises(DatasetError, match=r"^cannot open http://127\.0\.0\.1:\d+/stream\.mjpg"):
            fit(cfg, kill, checkpoints=CheckpointOptions(tmp_path / "ckpt"), reader=reader)
    finally:
        server.stop()
    assert reader.counts.reconnects == 1 and len(list((tmp_path / "ckpt").glob("*.npz"))) == 1


def test_cli_ctrl_c_exits_130_with_a_resumable_checkpoint(tmp_path: Path) -> None:
    """Ctrl-C on `fit --source` (its own process, a live MJPEG stream that keeps it busy): exit 130,
    the checkpoint kept, one line naming it and --resume, no traceback."""
    ckpt = tmp_path / "c.rpol.ckpt"
    args = ["fit", "--source", "{url}", "--frames", "100", "-o", str(tmp_path / "c.rpol")]
    args += ["--input-size", "64", "--batch-size", "1", "--checkpoint-every", "1"]
    returncode, stderr = ctrl_c_at_first_checkpoint(args, ckpt)
    assert returncode == 130, stderr
    assert "frames of the source" in stderr and "--resume" in stderr and "Traceback" not in stderr
    assert any(ckpt.glob("*.npz")) and not (tmp_path / "c.rpol").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "{photos}", "--frames", "3", "--data", "folder"], "{photos} with --data folder"),
        (["--source", "{photos}", "--frames", "3", "--root", "{photos}"], "not both"),
        (["--source", "{photos}", "--frames", "3", "--split", "test"], "with --split test"),
        (["--source", "{photos}"], "--frames 0: how many frames"),
        (["--source", "{photos}", "--frames", "2", "--every", "-1"], "--every -1"),
        (["--source", "{photos}", "--frames", "2", "--classwise"], "class labels"),
        (["--source", "nothere.mp4", "--frames", "3"], "nothere.mp4: no such file or folder"),
        (["--source", "{empty}", "--frames", "3"], "holds no image files"),
        (["--source", "{junk}", "--frames", "3"], "no frame could be read"),
        (["--root", "{photos}", "--frames", "3"], "--frames 3 samples a source"),
        ([], "give a data set (--data KIND, --root DIR) or a source (--source URI, --frames N)"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    names = {"photos": tmp_path / "photos", "empty": tmp_path / "empty", "junk": tmp_path / "junk"}
    for folder in names.values():
        folder.mkdir()
    shutil.copy(sorted(SAMPLE.glob("JPEGImages/*.jpg"))[0], names["photos"])
    (names["junk"] / "broken.jpg").write_bytes(b"not a jpeg at all")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        res = cli("fit", *[a.format(**names) for a in args], *COMMON, "-o", "o.rpol")
    finally:
        os.chdir(cwd)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    said = " ".join(res.output.split())
    assert len(lines) == 1 and lines[0].startswith("error:") and message.format(**names) in said, res.output
    assert not (tmp_path / "o.rpol").exists()


def test_source_under_torchrun_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A source is one stream of frames: under torchrun (its environment) one line, before any
    process group is joined."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    res = cli("fit", "--source", SAMPLE / "JPEGImages", "--frames", 2, *COMMON, "-o", tmp_path / "o.rpol")
    assert res.exit_code == 2 and "run this fit without torchrun" in res.output, res.output


def test_a_recorded_source_keeps_no_password() -> None:
    """`fit` (fit_root) and `refit` (refit_from) record a source through one function."""
    from rpol_edge.fitting.config import without_password

    assert without_password("rtsp://cam:secret@10.0.0.5:554/s1") == "rtsp://cam@10.0.0.5:554/s1"
    assert without_password("http://10.0.0.5/stream.mjpg") == "http://10.0.0.5/stream.mjpg"
    assert without_password("camera://0") == "camera://0"
    assert without_password("video.mp4") == "video.mp4"
