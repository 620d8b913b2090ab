"""A real MJPEG camera stand-in: one process serving photos as multipart/x-mixed-replace JPEGs.

Each HTTP client gets its own stream at ``--fps`` (frames paced on the monotonic clock, so a slow
client makes the server wait, as a socket-bound camera does, and is not sent a burst afterwards).
Frames are the photos of ``--images`` resized to ``--size`` and JPEG-encoded once at start.
Serves on 127.0.0.1 only, until SIGTERM / SIGINT (or killed, for fault tests).

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


def encode_frames(images: Path, size: tuple[int, int], count: int = 30) -> list[bytes]:
    paths = sorted(p for p in images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:count]
    frames = []
    for p in paths:
        image = cv2.imread(str(p))
        if image is None:
            continue
        ok, data = cv2.imencode(".jpg", cv2.resize(image, size, interpolation=cv2.INTER_AREA))
        if ok:
            frames.append(data.tobytes())
    if not frames:
        raise SystemExit(f"{images}: no readable image")
    return frames


def serve(frames: list[bytes], port: int, fps: float) -> ThreadingHTTPServer:
    stopping = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            t0, i = time.monotonic(), 0
            try:
                while not stopping.is_set():
                    data = frames[i % len(frames)]
                    head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                    self.wfile.write(head.encode() + data + b"\r\n")
                    self.wfile.flush()
                    i += 1
                    time.sleep(max(0.0, t0 + i / fps - time.monotonic()))
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    httpd.daemon_threads = True
    httpd.stopping = stopping  # type: ignore[attr-defined]
    return httpd


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--fps", type=float, default=15.0)
    ap.add_argument("--size", default="640x480")
    args = ap.parse_args()
    w, _, h = args.size.partition("x")
    httpd = serve(encode_frames(args.images, (int(w), int(h))), args.port, args.fps)

    def stop(signum: int, frame: object) -> None:
        httpd.stopping.set()  # type: ignore[attr-defined]
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"serving http://127.0.0.1:{args.port}/stream.mjpg at {args.fps:g} fps", flush=True)
    httpd.serve_forever(poll_interval=0.05)
    httpd.server_close()
    sys.exit(0)


if __name__ == "__main__":
    main()
