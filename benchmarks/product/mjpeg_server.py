"""A real MJPEG camera stand-in: photos served as multipart/x-mixed-replace JPEGs over HTTP.

Each HTTP client gets its own stream at ``fps`` (frames paced on the monotonic clock from the
client's first frame). Serves on 127.0.0.1 only. ``MjpegServer`` is the server in a thread (the
live tests use it in-process); run as a module it is one process serving the photos of ``--images``
resized to ``--size`` (JPEG-encoded once at start) until SIGTERM / SIGINT (or killed, for fault
tests).

Usage: python -m benchmarks.product.mjpeg_server --images DIR --port 8081 [--fps 15] [--size 640x480]
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np

CORRUPT = b"\xff\xd8 this is not a jpeg " * 20
"""What part number ``corrupt_at`` of the first connection carries: bytes no decoder accepts."""


class MjpegServer:
    """multipart/x-mixed-replace JPEG parts over HTTP on 127.0.0.1; stop() ends every open stream.

    ``frames`` are BGR images, JPEG-encoded once here. ``port`` 0 takes a free one (``port`` then
    holds it, so start() after stop() serves on the same port again). ``corrupt_at`` makes part
    number N of the first connection undecodable bytes.
    """

    def __init__(
        self, frames: list[np.ndarray], fps: float = 15.0, corrupt_at: int | None = None, port: int = 0
    ) -> None:
        self.jpegs = [cv2.imencode(".jpg", f)[1].tobytes() for f in frames]
        self.fps = fps
        self.corrupt_at = corrupt_at
        self.port = port
        self.connections = 0
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def part(self, first: bool, i: int) -> bytes:
        """Part number ``i`` of a stream, boundary and headers included."""
        data = CORRUPT if first and i == self.corrupt_at else self.jpegs[i % len(self.jpegs)]
        head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
        return head.encode() + data + b"\r\n"

    def start(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                server.connections += 1
                first = server.connections == 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                t0, i = time.monotonic(), 0
                try:
                    while not server._stopping.is_set():
                        self.wfile.write(server.part(first, i))
                        self.wfile.flush()
                        i += 1
                        time.sleep(max(0.0, t0 + i / server.fps - time.monotonic()))
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


def load_frames(images: Path, size: tuple[int, int], count: int = 30) -> list[np.ndarray]:
    """The first ``count`` readable photos of ``images``, resized to ``size`` (BGR)."""
    paths = sorted(p for p in images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:count]
    frames = []
    for p in paths:
        image = cv2.imread(str(p))
        if image is not None:
            frames.append(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
    if not frames:
        raise SystemExit(f"{images}: no readable image")
    return frames


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--fps", type=float, default=15.0)
    ap.add_argument("--size", default="640x480")
    args = ap.parse_args()
    w, _, h = args.size.partition("x")
    server = MjpegServer(load_frames(args.images, (int(w), int(h))), fps=args.fps, port=args.port)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: done.set())
    signal.signal(signal.SIGINT, lambda signum, frame: done.set())
    server.start()
    print(f"serving {server.url} at {args.fps:g} fps", flush=True)
    while not done.wait(0.1):  # a timed wait: the signal handlers run between waits
        pass
    server.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
