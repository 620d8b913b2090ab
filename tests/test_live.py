"""`rpol-edge run` end to end on real things: a real MP4, a real HTTP MJPEG server, real signals.

No OpenCV or socket is mocked: videos are written with cv2.VideoWriter, streams are served by
http.server on 127.0.0.1, and the interruptible runs are separate processes. Every test that waits
on another process or a server is bounded by a deadline, so a hang fails instead of stalling CI.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from rpol_edge.cli.app import app
from rpol_edge.core.geometry import resize_crop
from rpol_edge.live.frames import FrameResult
from rpol_edge.live.mjpeg import MjpegSource
from rpol_edge.live.outputs import Sink
from rpol_edge.live.pipeline import LatestSlot, run_live
from rpol_edge.live.source_registry import SCHEMES, parse_source
from rpol_edge.live.sources import SourceError, StreamDropped, open_source
from rpol_edge.runtimes import open_runtime

SHARED_RACCOON = Path(__file__).resolve().parents[2] / "shared" / "data" / "raccoon"
BUNDLED = Path(__file__).resolve().parents[1] / "rpol_edge" / "sample"
FRAME_W, FRAME_H = 320, 240

runner = CliRunner()


def sample_images() -> list[Path]:
    """The bundled sample's images when present, else the shared raccoon set."""
    root = BUNDLED if (BUNDLED / "JPEGImages").is_dir() else SHARED_RACCOON
    return sorted((root / "JPEGImages").glob("*.jpg"))


@pytest.fixture(scope="module")
def model(sample_model: Path) -> Path:
    """The session's lite0 model (conftest: fitted once on the sample's train split at input 224)."""
    return sample_model


def frames_bgr(n: int) -> list[np.ndarray]:
    frames = []
    for p in sample_images()[:n]:
        image = cv2.imread(str(p))
        assert image is not None, p
        frames.append(cv2.resize(image, (FRAME_W, FRAME_H)))
    return frames


def write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (FRAME_W, FRAME_H))
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()


def decode_video(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        out.append(frame)
    cap.release()
    return out


def cli(*args: object) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def rpol_edge_process(*args: object, log: Path) -> subprocess.Popen[bytes]:
    """`rpol-edge ...` as a child process (signals need a process of their own), stderr+stdout to ``log``."""
    cmd = [sys.executable, "-c", "from rpol_edge.cli.app import main; main()", *map(str, args)]
    return subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def wait_for_lines(path: Path, n: int, deadline: float, proc: subprocess.Popen[bytes] | None = None) -> int:
    while time.monotonic() < deadline:
        count = len(path.read_text().splitlines()) if path.exists() else 0
        if count >= n:
            return count
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended early with {proc.returncode} after {count} lines")
        time.sleep(0.05)
    raise AssertionError(f"{path}: fewer than {n} lines before the deadline")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- a real MJPEG server -------------------------------------------------------------------------


class MjpegServer:
    """multipart/x-mixed-replace JPEG parts over HTTP on 127.0.0.1; stop() ends every open stream.

    ``corrupt_at`` makes part number N of the first connection undecodable bytes.
    """

    def __init__(self, frames: list[np.ndarray], fps: float = 15.0, corrupt_at: int | None = None) -> None:
        self.jpegs = [cv2.imencode(".jpg", f)[1].tobytes() for f in frames]
        self.fps = fps
        self.corrupt_at = corrupt_at
        self.port = 0
        self.connections = 0
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                server.connections += 1
                first = server.connections == 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                try:
                    while not server._stopping.is_set():
                        data = server.jpegs[i % len(server.jpegs)]
                        if first and i == server.corrupt_at:
                            data = b"\xff\xd8 this is not a jpeg " * 20
                        head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                        self.wfile.write(head.encode() + data + b"\r\n")
                        self.wfile.flush()
                        i += 1
                        time.sleep(1.0 / server.fps)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self._stopping.clear()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def stop(self) -> None:
        """Close the listening socket and end every stream (clients see the connection close)."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        time.sleep(2.0 / self.fps)  # handlers notice and close their connections


@pytest.fixture
def mjpeg_server() -> Iterator[MjpegServer]:
    server = MjpegServer(frames_bgr(8))
    server.start()
    yield server
    server.stop()


class JunkServer:
    """Answers ``multipart/x-mixed-replace; boundary=frame``, then sends ``head`` once and ``junk``
    forever (every ``pause`` seconds): bytes that never make a part."""

    def __init__(self, junk: bytes, head: bytes = b"", pause: float = 0.002) -> None:
        self.junk, self.head, self.pause = junk, head, pause
        self.connections = 0
        self._stopping = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                server.connections += 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    self.wfile.write(server.head)
                    while not server._stopping.is_set():
                        self.wfile.write(server.junk)
                        self.wfile.flush()
                        time.sleep(server.pause)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/stream.mjpg"
        threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()


# --- 1. a video file: one line per frame, boxes equal to `predict`, a readable output video -----


def test_video_file_matches_predict(model: Path, tmp_path: Path) -> None:
    video = tmp_path / "in.mp4"
    write_video(video, frames_bgr(12))
    out_video, jsonl, summary = tmp_path / "out.mp4", tmp_path / "out.jsonl", tmp_path / "summary.json"

    res = cli("run", model, "--source", video, "--jsonl", jsonl, "--save", out_video, "--summary", summary)
    assert res.exit_code == 0, res.output
    assert "runtime: torch" in res.stderr

    decoded = decode_video(video)  # mp4 is lossy: compare against what the decoder gives back
    assert len(decoded) == 12
    records = read_jsonl(jsonl)
    assert [r["frame"] for r in records] == list(range(12))
    for r in records:
        assert (r["width"], r["height"]) == (FRAME_W, FRAME_H)
        assert set(r["ms"]) == {"capture", "pre", "infer", "post", "render", "write"}
        assert r["ms"]["infer"] > 0 and r["latency_ms"] > 0

    pngs = []
    for i, frame in enumerate(decoded):
        pngs.append(tmp_path / "frames" / f"f{i:02d}.png")
        pngs[-1].parent.mkdir(exist_ok=True)
        assert cv2.imwrite(str(pngs[-1]), frame)
    res = cli("predict", model, *pngs, "-o", tmp_path / "pred")
    assert res.exit_code == 0, res.output
    for r, png in zip(records, pngs, strict=True):
        expected = json.loads((tmp_path / "pred" / f"{png.stem}.json").read_text())
        assert r["box"] == expected["box"], png.name
        assert r["score"] == pytest.approx(expected["score"], abs=1e-4)

    written = decode_video(out_video)
    assert len(written) == 12 and written[0].shape == (FRAME_H, FRAME_W, 3)
    assert not list(tmp_path.glob(".out.mp4.*"))  # the temporary name is gone

    s = json.loads(summary.read_text())
    assert (s["frames"], s["dropped_frames"], s["corrupt_frames"], s["stop_reason"]) == (
        12,
        0,
        0,
        "end of stream",
    )
    assert s["mean_fps"] > 0 and s["latency_ms"]["p95"] >= s["latency_ms"]["p50"] > 0


# --- 2. an MJPEG stream that goes away and comes back ------------------------------------------


def test_mjpeg_stream_reconnects(model: Path, tmp_path: Path) -> None:
    deadline = time.monotonic() + 60  # watchdog for the whole test
    server = MjpegServer(frames_bgr(8), fps=15, corrupt_at=3)
    server.start()
    jsonl, summary, log = tmp_path / "s.jsonl", tmp_path / "summary.json", tmp_path / "log.txt"
    proc = rpol_edge_process(
        "run", model, "--source", server.url, "--jsonl", jsonl, "--summary", summary,
        "--max-frames", 40, "--max-reconnects", 5, "--open-timeout", 20, log=log,
    )  # fmt: skip
    try:
        wait_for_lines(jsonl, 8, deadline, proc)
        server.stop()  # mid-stream: the client sees the connection close
        time.sleep(1.0)
        restarted = time.time()
        server.start()  # same port
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
        server.stop()
    text = log.read_text()
    assert proc.returncode == 0, text
    assert "stream dropped" in text and "reconnected" in text

    records = read_jsonl(jsonl)
    assert len(records) == 40
    assert any(r["timestamp"] > restarted for r in records), "no frame after the reconnect"
    s = json.loads(summary.read_text())
    assert s["frames"] == 40 and s["stop_reason"] == "max frames"
    assert s["stream_drops"] == 1 and s["reconnects"] == 1 and s["reconnect_attempts"] >= 1
    assert s["corrupt_frames"] == 1
    assert server.connections == 2


def test_garbage_stream_is_dropped_then_given_up(model: Path, tmp_path: Path) -> None:
    """A server that answers 200 multipart and then sends ``garbage line`` forever: the part
    deadline drops it, the reopen gets the same, and `run` gives up after --max-reconnects with
    exit code 1. READ_TIMEOUT_S is cut to 1 s in the child so the test stays short."""
    deadline = time.monotonic() + 45
    server = JunkServer(b"garbage line\r\n" * 50)
    summary, log = tmp_path / "summary.json", tmp_path / "log.txt"
    code = (
        "import rpol_edge.live.mjpeg as m; m.READ_TIMEOUT_S = 1.0; from rpol_edge.cli.app import main; main()"
    )
    cmd = [sys.executable, "-c", code, "run", str(model), "--source", server.url, "--summary", str(summary)]
    cmd += ["--max-reconnects", "1", "--open-timeout", "5"]
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
        server.stop()
    text = log.read_text()
    assert proc.returncode == 1, text
    assert "no complete part within 1 s" in text and "giving up after 1 reconnect attempt" in text
    s = json.loads(summary.read_text())
    assert (s["stop_reason"], s["frames"], s["stream_drops"]) == ("source lost", 0, 1)
    assert (s["reconnect_attempts"], s["reconnects"]) == (1, 0)  # reopened, but no frame: no reconnect
    assert server.connections == 2


@pytest.mark.parametrize(
    ("junk", "head", "message"),
    [
        (b"garbage line\r\n" * 20, b"", "no complete part within 0.5 s"),
        (b"X-Junk: yes\r\n" * 50, b"--frame\r\n", "part headers longer than 100 lines"),
        (b"\xff", b"--frame\r\nContent-Type: image/jpeg\r\n\r\n", "no complete part within 0.5 s"),
    ],
    ids=["garbage lines", "endless headers", "trickle without delimiter"],
)
def test_mjpeg_part_is_bounded(
    junk: bytes, head: bytes, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each read ends within its deadline (or at the header limit) however the server paces bytes."""
    import rpol_edge.live.mjpeg as mjpeg

    monkeypatch.setattr(mjpeg, "READ_TIMEOUT_S", 0.5)
    server = JunkServer(junk, head, pause=0.01)
    source = MjpegSource(server.url)
    try:
        source.open(5.0)
        t0 = time.monotonic()
        with pytest.raises(StreamDropped, match=message):
            source.read()
        assert time.monotonic() - t0 < 0.5 + 0.5
    finally:
        source.close()
        server.stop()


def test_mjpeg_parts_without_content_length() -> None:
    """Parts delimited only by the boundary (some IP cameras): each body ends before ``\\r\\n--frame``."""
    jpegs = [cv2.imencode(".jpg", f)[1].tobytes() for f in frames_bgr(3)]
    parts = b"".join(b"--frame\r\nContent-Type: image/jpeg\r\n\r\n" + j + b"\r\n" for j in jpegs)
    server = JunkServer(parts, head=b"a preamble line\r\n", pause=0.05)
    source = MjpegSource(server.url)
    try:
        source.open(5.0)
        got = [source.read() for _ in range(4)]
    finally:
        source.close()
        server.stop()
    for captured, jpeg in zip(got, jpegs + jpegs[:1], strict=True):
        assert captured is not None
        expected = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert expected is not None and np.array_equal(captured.image, expected)


# --- 3. bad input ---------------------------------------------------------------------------------


def test_unknown_scheme_lists_accepted(model: Path) -> None:
    res = cli("run", model, "--source", "ftp://example.com/cam")
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    assert "unknown source scheme 'ftp'" in lines[0]
    for scheme in ("csi://", "v4l2://", "rtsp://", "http://", "https://"):
        assert scheme in lines[0]
    assert set(SCHEMES) >= {"csi", "v4l2", "rtsp", "http", "https"}


def test_csi_without_gstreamer_says_why() -> None:
    from rpol_edge.live.opencv_sources import has_gstreamer

    if has_gstreamer():
        pytest.skip("this OpenCV has GStreamer; the CSI pipeline would be tried for real")
    with pytest.raises(SourceError, match="GStreamer") as exc:
        parse_source("csi://0")
    assert "--system-site-packages" in str(exc.value)


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A port that accepts connections (the kernel backlog) but never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield f"http://127.0.0.1:{s.getsockname()[1]}/"


@pytest.mark.parametrize("kind", ["closed port", "silent server"])
def test_source_that_never_opens_fails_in_time(kind: str, request: pytest.FixtureRequest) -> None:
    url = (
        f"http://127.0.0.1:{free_port()}/"
        if kind == "closed port"
        else request.getfixturevalue("silent_server")
    )
    t0 = time.monotonic()
    with pytest.raises(SourceError) as exc:
        open_source(parse_source(url), timeout=2.0)
    elapsed = time.monotonic() - t0
    assert 1.0 <= elapsed <= 4.0, elapsed
    message = str(exc.value)
    assert url in message and "within 2 s" in message and "\n" not in message


def test_cli_source_that_never_opens(model: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    t0 = time.monotonic()
    res = cli("run", model, "--source", url, "--open-timeout", 1.5)
    assert time.monotonic() - t0 < 20  # 1.5 s for the source plus loading the model
    assert res.exit_code == 2, res.output
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and url in errors[0] and "connection refused" in errors[0], res.stderr


@pytest.mark.parametrize(
    "url", ["http://[::1", "http://127.0.0.1:99999/x", "https:///no-host", "rtsp://127.0.0.1:70000/s"]
)
def test_malformed_network_uri_names_it(model: Path, url: str) -> None:
    res = cli("run", model, "--source", url)
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and url in lines[0], res.stderr


def test_opencv_and_ffmpeg_stay_quiet(tmp_path: Path) -> None:
    """A missing camera, a broken MP4, a refused RTSP port: only our one line each, no [ WARN...],
    no 'moov atom not found' (both print on file descriptor 2, so a child process is checked)."""
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 100)
    code = (
        "import sys\n"
        "from rpol_edge.live.source_registry import parse_source\n"
        "from rpol_edge.live.sources import SourceError, open_source\n"
        "for uri in sys.argv[1:]:\n"
        "    try:\n"
        "        open_source(parse_source(uri), 1.0)\n"
        "    except SourceError as exc:\n"
        "        print('error:', exc, file=sys.stderr)\n"
    )
    uris = ["camera://99", str(bad), f"rtsp://127.0.0.1:{free_port()}/x"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")}
    res = subprocess.run(
        [sys.executable, "-c", code, *uris], capture_output=True, text=True, timeout=60, env=env
    )
    assert res.returncode == 0, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 3 and all(ln.startswith("error: cannot open") for ln in lines), res.stderr
    assert [u in ln for u, ln in zip(uris, lines, strict=True)] == [True] * 3


@pytest.mark.parametrize("where", ["a folder", "under /proc"])
def test_unwritable_output_fails_before_any_frame(model: Path, tmp_path: Path, where: str) -> None:
    video = tmp_path / "in.mp4"
    write_video(video, frames_bgr(3))
    summary = tmp_path if where == "a folder" else Path("/proc/nope/x.json")
    jsonl = tmp_path / "out.jsonl"
    t0 = time.monotonic()
    res = cli("run", model, "--source", video, "--jsonl", jsonl, "--summary", summary)
    assert time.monotonic() - t0 < 5  # refused before the model loads
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --summary"), res.stderr
    assert not jsonl.exists()


def test_interrupt_while_opening_ends_with_a_summary(silent_server: str) -> None:
    """Ctrl-C while the source is still opening ends like one during the run: a summary, no error."""
    meta = SimpleNamespace(n_heads=1, raw_frames=False, resize_size=480, input_size=448)
    stub = SimpleNamespace(meta=meta, description="unused")
    previous = signal.getsignal(signal.SIGINT)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    t0 = time.monotonic()
    timer.start()
    try:
        s = run_live(stub, parse_source(silent_server), open_timeout=30)  # type: ignore[arg-type]
    finally:
        timer.cancel()
    assert time.monotonic() - t0 < 5
    assert (s.stop_reason, s.frames, s.captured) == ("interrupted", 0, 0)
    assert signal.getsignal(signal.SIGINT) is previous


def test_class_wise_model_is_refused(tmp_path: Path) -> None:
    stub = SimpleNamespace(meta=SimpleNamespace(n_heads=3))
    source = parse_source(str(sample_images()[0]))
    with pytest.raises(ValueError, match="needs a class-agnostic model"):
        run_live(stub, source)  # type: ignore[arg-type]
    assert not source.is_open


@pytest.mark.parametrize(
    ("h", "w", "resize", "crop"), [(240, 320, 224, 224), (720, 1280, 256, 224), (97, 61, 160, 128)]
)
def test_crop_then_convert_is_bit_identical(h: int, w: int, resize: int, crop: int) -> None:
    """The pipeline converts only the K x K crop to RGB: resizing is per channel, so the order of
    the two steps cannot change a single value (shrinking and enlarging both checked)."""
    bgr = np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    whole_first, _ = resize_crop(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), resize, crop)
    crop_first, _ = resize_crop(bgr, resize, crop)
    assert np.array_equal(whole_first, cv2.cvtColor(crop_first, cv2.COLOR_BGR2RGB))


def test_corrupt_images_in_folder_are_skipped(model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    good = sample_images()[:3]
    for p in good:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "zz_garbage.jpg").write_bytes(b"not an image at all" * 10)
    data = good[0].read_bytes()
    (folder / "zz_truncated.jpg").write_bytes(data[: len(data) // 3])
    jsonl, summary = tmp_path / "f.jsonl", tmp_path / "summary.json"

    res = cli("run", model, "--source", folder, "--jsonl", jsonl, "--summary", summary)
    assert res.exit_code == 0, res.output
    records = read_jsonl(jsonl)
    assert [Path(r["image"]).name for r in records] == [p.name for p in good]
    s = json.loads(summary.read_text())
    assert s["frames"] == 3 and s["corrupt_frames"] == 2 and s["stop_reason"] == "end of stream"
    assert res.stderr.count("corrupt frame skipped") == 2


@pytest.mark.parametrize(
    ("signals", "reason"),
    [((signal.SIGTERM,), "SIGTERM"), ((signal.SIGINT, signal.SIGINT), "interrupted")],
    ids=["SIGTERM", "SIGINT twice"],
)
def test_sigterm_flushes_outputs(
    model: Path,
    tmp_path: Path,
    mjpeg_server: MjpegServer,
    signals: tuple[signal.Signals, ...],
    reason: str,
) -> None:
    """SIGTERM, and Ctrl-C pressed twice (the second lands while the first is still finishing):
    exit 0, whole JSONL lines, a readable video, a summary."""
    deadline = time.monotonic() + 60
    jsonl, video, summary, log = (
        tmp_path / "t.jsonl",
        tmp_path / "t.mp4",
        tmp_path / "s.json",
        tmp_path / "log",
    )
    proc = rpol_edge_process(
        "run",
        model,
        "--source",
        mjpeg_server.url,
        "--jsonl",
        jsonl,
        "--save",
        video,
        "--summary",
        summary,
        log=log,
    )
    try:
        wait_for_lines(jsonl, 5, deadline, proc)
        for sig in signals:
            proc.send_signal(sig)
            time.sleep(0.05)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, log.read_text()
    s = json.loads(summary.read_text())
    assert s["stop_reason"] == reason
    lines = jsonl.read_text().splitlines()
    assert jsonl.read_text().endswith("\n") and len(lines) == s["frames"] >= 5
    assert [json.loads(ln)["frame"] for ln in lines] == sorted(json.loads(ln)["frame"] for ln in lines)
    # A live recording follows capture time (25 fps here: MJPEG declares none), so frames repeat.
    assert len(decode_video(video)) >= s["frames"]
    assert not list(tmp_path.glob(".t.mp4.*"))


def test_latest_slot_keeps_newest_and_counts_drops() -> None:
    slot: LatestSlot[int] = LatestSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True  # 1 was never read: dropped
    assert slot.get(timeout=0.1) == 2
    assert slot.empty()
    t0 = time.monotonic()
    with pytest.raises(queue.Empty):
        slot.get(timeout=0.05)
    assert time.monotonic() - t0 < 1.0


class SlowSink(Sink):
    """A real sink that takes its time, like a slow disk or display."""

    needs_image = True

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.written = 0

    def write(self, result: FrameResult, image: np.ndarray | None) -> None:
        assert image is not None and image.shape == (FRAME_H, FRAME_W, 3)
        time.sleep(self.seconds)
        self.written += 1


def test_slow_output_never_stalls_live_capture(model: Path, mjpeg_server: MjpegServer) -> None:
    """Output at 4 frames/s against a 15 frames/s stream: capture keeps pace, the excess is dropped."""
    sink = SlowSink(0.25)
    with open_runtime(model, "torch") as rt:
        s = run_live(rt, parse_source(mjpeg_server.url), [sink], max_frames=12, open_timeout=10)
    assert s.frames == sink.written == 12 and s.stop_reason == "max frames"
    assert s.elapsed_s >= 12 * 0.25
    assert s.captured >= 0.5 * mjpeg_server.fps * s.elapsed_s, s  # capture ran at the stream's pace
    assert s.dropped_frames >= s.captured - s.frames - 6 > 0  # at most a slot and two queues in flight


class AsSlowAsInference(SlowSink):
    """Writes each frame in as long as its inference took: write and infer are equal stages,
    however fast or loaded this machine is."""

    def write(self, result: FrameResult, image: np.ndarray | None) -> None:
        self.seconds = result.frame.ms["infer"] / 1e3
        super().write(result, image)


def test_stages_overlap_throughput_follows_the_slowest(model: Path, tmp_path: Path) -> None:
    """Overlapped, a run takes about the slowest stage per frame, not the sum of the stages (a
    serial loop would need about twice as long here)."""
    video = tmp_path / "in.mp4"
    write_video(video, frames_bgr(16))
    sink = AsSlowAsInference(0.0)
    with open_runtime(model, "torch") as rt:
        s = run_live(rt, parse_source(str(video)), [sink])
    assert s.frames == sink.written == 16
    serial_s = s.frames * sum(v["mean"] for v in s.stage_ms.values()) / 1e3
    assert s.elapsed_s < 0.8 * serial_s, (s.elapsed_s, serial_s, s.stage_ms)
