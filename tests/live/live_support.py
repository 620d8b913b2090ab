"""Real things for the live tests: sample frames, MP4 files written with OpenCV, HTTP MJPEG servers
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
