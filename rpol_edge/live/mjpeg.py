"""HTTP(S) MJPEG streams (``multipart/x-mixed-replace`` with one JPEG per part), read in Python.

Why not ``cv2.VideoCapture(url)``: FFMPEG's HTTP reader buffers and probes before the first frame,
hides a dropped connection behind long internal retries, and cannot tell a corrupt part from the
end of the stream. Reading the multipart body ourselves gives an exact deadline per part (a
silent server, one that sends garbage or one that trickles bytes are all dropped within
READ_TIMEOUT_S), one JPEG per frame (a bad one is a CorruptFrame, not a lost stream) and an
immediate StreamDropped when the server goes away, which the pipeline turns into a reconnect.
A URL that answers with anything other than multipart (an HLS playlist, an MP4 over HTTP) is
handed to FFMPEG instead.
"""

from __future__ import annotations

import base64
import http.client
import socket
import time
from urllib.parse import unquote, urlsplit

import numpy as np

from rpol_edge import __version__
from rpol_edge.live._opencv import cv2
from rpol_edge.live.opencv_sources import stream_source
from rpol_edge.live.sources import (
    Captured,
    CorruptFrame,
    OpenFailed,
    Source,
    StreamDropped,
    check_network_uri,
)

MAX_PART_BYTES = 64 * 1024 * 1024
"""Largest part body, and most bytes skipped while looking for the next part boundary."""
MAX_LINE = 64 * 1024
MAX_HEADER_LINES = 100
READ_TIMEOUT_S = 5.0
"""A stream that delivers no complete part this long counts as dropped (then reconnects). A
per-part deadline, not only a socket timeout: a server that keeps sending bytes that never make
a part (garbage lines, endless headers, a trickle) must be dropped too."""
CHUNK = 64 * 1024


class _PartReader:
    """Lines and bodies from an HTTP response, every call bounded by a deadline and a byte limit.

    Reads with ``read1`` (at most one receive per call) into its own buffer and sets the socket
    timeout to the time left before each receive, so no call can outlive its deadline however the
    server paces its bytes; buffered ``readline`` would wait for a newline (or 64 KiB) regardless.
    """

    def __init__(self, response: http.client.HTTPResponse, sock: socket.socket) -> None:
        self._response = response
        self._sock = sock
        self._buf = bytearray()
        self.deadline = 0.0

    def _fill(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise StreamDropped(f"no complete part within {READ_TIMEOUT_S:g} s")
        self._sock.settimeout(left)
        try:
            chunk = self._response.read1(CHUNK)
        except TimeoutError:
            raise StreamDropped(f"no complete part within {READ_TIMEOUT_S:g} s") from None
        if not chunk:
            raise StreamDropped("server closed the stream")
        self._buf += chunk

    def readline(self) -> bytes:
        """One line with its terminator (at most MAX_LINE bytes)."""
        scanned = 0
        while True:
            i = self._buf.find(b"\n", scanned, MAX_LINE)
            if i >= 0:
                return self._take(i + 1)
            if len(self._buf) >= MAX_LINE:
                return self._take(MAX_LINE)
            scanned = len(self._buf)
            self._fill()

    def read(self, n: int) -> bytes:
        while len(self._buf) < n:
            self._fill()
        return self._take(n)

    def read_until(self, marker: bytes) -> bytes:
        """Everything before ``marker`` (left in the buffer), at most MAX_PART_BYTES."""
        scanned = 0
        while True:
            i = self._buf.find(marker, scanned)
            if i >= 0:
                return self._take(i)
            if len(self._buf) > MAX_PART_BYTES:
                raise StreamDropped(f"no part boundary within {MAX_PART_BYTES} bytes")
            scanned = max(0, len(self._buf) - len(marker) + 1)
            self._fill()

    def _take(self, n: int) -> bytes:
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data


class MjpegSource(Source):
    kind = "HTTP MJPEG stream"

    def __init__(self, uri: str) -> None:
        check_network_uri(uri)  # a bad host or port is a SourceError naming the URI, now
        super().__init__(uri, is_live=True, can_reconnect=True)
        self._sock: socket.socket | None = None
        self._response: http.client.HTTPResponse | None = None
        self._reader: _PartReader | None = None
        self._delimiter = b""
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
        self._reader = _PartReader(response, sock)
        self.is_open = True

    def read(self) -> Captured | None:
        if self._fallback is not None:
            return self._fallback.read()
        if self._reader is None:
            raise StreamDropped("not connected")
        try:
            data = self._next_part(self._reader)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise StreamDropped(_reason(exc)) from None
        arrived = time.perf_counter()
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise CorruptFrame(f"{self.uri}: a part of {len(data)} bytes is not a decodable JPEG")
        return Captured(image, arrived=arrived)

    def _next_part(self, reader: _PartReader) -> bytes:
        """Body of the next part, within READ_TIMEOUT_S. Uses Content-Length when sent, else reads
        up to the next delimiter (left unread: it starts the part after)."""
        reader.deadline = time.monotonic() + READ_TIMEOUT_S
        skipped = 0
        while True:  # to the boundary: normally at once, past a preamble or the previous CRLF
            line = reader.readline()
            if line.strip().startswith(self._delimiter):
                break
            skipped += len(line)
            if skipped > MAX_PART_BYTES:
                raise StreamDropped(f"no part boundary within {MAX_PART_BYTES} bytes")
        length = None
        for _ in range(MAX_HEADER_LINES):
            line = reader.readline().strip()
            if not line:
                break
            key, _, value = line.partition(b":")
            if key.strip().lower() == b"content-length":
                length = int(value.strip())
        else:
            raise StreamDropped(f"part headers longer than {MAX_HEADER_LINES} lines")
        if length is not None:
            if not 0 < length <= MAX_PART_BYTES:
                raise ValueError(f"part length {length} out of range")
            return reader.read(length)
        data = reader.read_until(b"\n" + self._delimiter)
        return data[:-1] if data.endswith(b"\r") else data

    def close(self) -> None:
        if self._sock is not None and self._response is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes a read blocked in the capture thread
            except OSError:
                pass
            self._response.close()
            self._sock.close()
            self._sock = self._response = None
            self._reader = None
        if self._fallback is not None:
            self._fallback.close()
            self._fallback = None
        self.is_open = False

    def interrupt(self) -> None:
        """Shut the socket down under a blocked read (it then fails at once); closing is left to
        ``close``, after the reader has stopped."""
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

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
