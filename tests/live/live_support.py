"""Real things for the live tests: sample frames, MP4 files written with OpenCV, an HTTP server of junk
on 127.0.0.1, the CLI in-process and as a child process."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from typer.testing import CliRunner

from rpol_edge.cli.app import app

SHARED_RACCOON = Path(__file__).resolve().parents[3] / "shared" / "data" / "raccoon"
BUNDLED = Path(__file__).resolve().parents[2] / "rpol_edge" / "sample"
FRAME_W, FRAME_H = 320, 240

runner = CliRunner()


def sample_images() -> list[Path]:
    """The bundled sample's images when present, else the shared raccoon set."""
    root = BUNDLED if (BUNDLED / "JPEGImages").is_dir() else SHARED_RACCOON
    return sorted((root / "JPEGImages").glob("*.jpg"))


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


# --- a server that never sends a part (the real MJPEG server: benchmarks.product.mjpeg_server) ---


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


def ctrl_c_at_first_checkpoint(args: list[str], ckpt: Path, stream_frames: int = 4) -> tuple[int, str]:
    """Run ``rpol-edge ARGS`` in a subprocess against a live MJPEG stream on 127.0.0.1 (``{url}``
    in ARGS is its address), press Ctrl-C (SIGINT) once a checkpoint is in ``ckpt``, and return
    the exit code and stderr."""
    import signal

    from benchmarks.product.mjpeg_server import MjpegServer

    server = MjpegServer(frames_bgr(stream_frames), fps=4.0)
    server.start()
    try:
        cmd = [sys.executable, "-c", "from rpol_edge.cli.app import main; main()"]
        cmd += [a.replace("{url}", server.url) for a in args]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (any(ckpt.glob("*.npz")) or proc.poll() is not None):
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        server.stop()
    return proc.returncode, stderr
