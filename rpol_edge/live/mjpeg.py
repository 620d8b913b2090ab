"""HTTP(S) MJPEG streams (``multipart/x-mixed-replace`` with one JPEG per part), read in Python.

Why not ``cv2.VideoCapture(url)``: FFMPEG's HTTP reader buffers and probes before the first frame,
hides a dropped connection behind long internal retries, and cannot tell a corrupt part from the
end of the stream. Reading the multipart body ourselves gives an exact socket timeout, one JPEG
per frame (a bad one is a CorruptFrame, not a lost stream) and an immediate StreamDropped when
the server goes away, which the pipeline turns into a counted reconnect. A URL that answers with
anything other than multipart (an HLS playlist, an MP4 over HTTP) is handed to FFMPEG instead.
"""

from __future__ import annotations

import base64
import http.client
import socket
import time
from typing import IO
from urllib.parse import unquote, urlsplit

import cv2
import numpy as np

from rpol_edge import __version__
from rpol_edge.live.sources import Captured, CorruptFrame, OpenFailed, Source, StreamDropped

MAX_PART_BYTES = 64 * 1024 * 1024
MAX_LINE = 64 * 1024
READ_TIMEOUT_S = 5.0
"""A stream that sends nothing this long counts as dropped (then reconnects)."""


class MjpegSource(Source):
    kind = "HTTP MJPEG stream"

    def __init__(self, uri: str) -> None:
        super().__init__(uri, is_live=True, can_reconnect=True)
        self._sock: socket.socket | None = None
        self._response: http.client.HTTPResponse | None = None
        self._delimiter = b""
        self._at_part = False
        self._fallback: Source | None = None

    def open(self, timeout: float) -> None:
        self.close()
        parts = urlsplit(self.uri)
        conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        headers = {"User-Agent": f"rpol-edge/{__version__}", "Accept": "multipart/x-mixed-replace, */*"}
        if parts.username is not None:  # IP cameras: http://user:pass@host/...
            token = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(token).decode("ascii")
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn = conn_cls(parts.hostname or "", parts.port, timeout=timeout)
        try:
            conn.connect()
            sock = conn.sock  # kept: getresponse() drops it from conn for HTTP/1.0 (close-delimited) replies
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise OpenFailed(_reason(exc)) from None
        if response.status != 200:
            response.close()
            sock.close()
            raise OpenFailed(f"HTTP {response.status} {response.reason}")
        sock.settimeout(min(timeout, READ_TIMEOUT_S))  # a silent stream is a dropped one, noticed sooner
        ctype = response.headers.get_content_type()
        if not ctype.startswith("multipart/"):
            response.close()
            sock.close()
            from rpol_edge.live.opencv_sources import stream_source

            self._fallback = stream_source(self.uri)
            self._fallback.open(timeout)
            self.kind = f"HTTP stream ({ctype}, through FFMPEG)"
            self.is_open = True
            return
        boundary = response.headers.get_param("boundary")
        if not isinstance(boundary, str) or not boundary:
            response.close()
            sock.close()
            raise OpenFailed(f"{ctype} response without a boundary parameter")
        boundary = boundary.strip('"')
        self._delimiter = (boundary if boundary.startswith("--") else "--" + boundary).encode("latin-1")
        self._sock, self._response = sock, response
        self._at_part = False
        self.is_open = True

    def read(self) -> Captured | None:
        if self._fallback is not None:
            return self._fallback.read()
        if self._response is None:
            raise StreamDropped("not connected")
        try:
            data = self._next_part(self._response)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise StreamDropped(_reason(exc)) from None
        arrived = time.perf_counter()
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise CorruptFrame(f"{self.uri}: a part of {len(data)} bytes is not a decodable JPEG")
        return Captured(image, arrived=arrived)

    def _next_part(self, fp: IO[bytes]) -> bytes:
        """Body of the next part. Uses Content-Length when sent, else reads up to the next delimiter."""
        if not self._at_part:
            while True:
                line = fp.readline(MAX_LINE)
                if not line:
                    raise StreamDropped("server closed the stream")
                if line.strip().startswith(self._delimiter):
                    break
        self._at_part = False
        length = None
        while True:
            line = fp.readline(MAX_LINE)
            if not line:
                raise StreamDropped("server closed the stream")
            line = line.strip()
            if not line:
                break
            key, _, value = line.partition(b":")
            if key.strip().lower() == b"content-length":
                length = int(value.strip())
        if length is not None:
            if not 0 < length <= MAX_PART_BYTES:
                raise ValueError(f"part length {length} out of range")
            data = fp.read(length)
            if len(data) < length:
                raise StreamDropped("server closed the stream inside a part")
            return data
        chunks: list[bytes] = []
        size = 0
        while True:
            line = fp.readline(MAX_LINE)
            if not line:
                raise StreamDropped("server closed the stream inside a part")
            if line.startswith(self._delimiter):
                self._at_part = True
                break
            chunks.append(line)
            size += len(line)
            if size > MAX_PART_BYTES:
                raise ValueError("part larger than the limit, no delimiter found")
        data = b"".join(chunks)
        return data[:-2] if data.endswith(b"\r\n") else data.rstrip(b"\n")

    def close(self) -> None:
        if self._sock is not None and self._response is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes a read blocked in the capture thread
            except OSError:
                pass
            self._response.close()
            self._sock.close()
            self._sock = self._response = None
        if self._fallback is not None:
            self._fallback.close()
            self._fallback = None
        self.is_open = False

    @property
    def fps(self) -> float | None:
        return self._fallback.fps if self._fallback is not None else None


def _reason(exc: object) -> str:
    """A short human reason for a network failure ("connection refused", "timed out")."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return f"host not found ({exc.strerror})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
