"""Frame sources for `rpol-edge run`: one interface for cameras, network streams, files and folders.

A source says two things about itself that shape the pipeline: whether it is *live* (frames come
on the source's own clock, so the pipeline keeps only the newest and counts the rest as dropped)
and whether it can *reconnect* (network streams: a lost connection is retried with backoff instead
of ending the run). `parse_source` maps a URI to a source through a registry keyed by scheme, so a
new kind of source is one entry, and an unknown scheme is answered with the accepted ones.

Opening is separate from construction so a URI can be validated before the (slow) model loads,
and so reconnecting is just `close` + `open` on the same object.
"""

from __future__ import annotations

import glob
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeVar
from urllib.parse import urlsplit

import numpy as np

from rpol_edge.images import is_image_path

T = TypeVar("T")


class SourceError(RuntimeError):
    """A source that cannot be parsed or opened; the message is one line and names the source."""


class OpenFailed(SourceError):
    """One attempt to open a source failed; ``open_source`` decides whether to try again."""


class StreamDropped(Exception):
    """A live source stopped delivering frames (connection lost, read timeout, device gone)."""


class CorruptFrame(Exception):
    """One frame could not be decoded; the source is still usable and the next read may succeed."""


@dataclass(frozen=True)
class Captured:
    image: np.ndarray
    """uint8 (H, W, 3), BGR (OpenCV's order, what cameras and decoders give) unless ``is_rgb``."""
    name: str | None = None
    """The file a frame came from (image folders), for the JSONL record."""
    arrived: float | None = None
    """``time.perf_counter()`` when a live frame's data arrived. Waiting for the next frame is not
    latency, so live sources set this and their capture time and end-to-end latency start here;
    None means the whole read counts (files, folders)."""
    is_rgb: bool = False
    """True for sources that decode to RGB (image files, through the shared loader): the pipeline
    converts only what needs the other order (the K x K network input, or the overlay), so a frame
    is never converted there and back."""


class Source(ABC):
    """Open, read frames until None (end) or an exception, close; usable as a context manager."""

    kind: str = "source"

    def __init__(self, uri: str, is_live: bool, can_reconnect: bool = False) -> None:
        self.uri = uri
        self.is_live = is_live
        """Frames arrive on their own clock: keep the newest, drop (and count) the rest."""
        self.can_reconnect = can_reconnect
        """A drop or end of stream is an outage to ride out, not the end of the run."""
        self.is_open = False

    @abstractmethod
    def open(self, timeout: float) -> None:
        """One attempt, answered within about ``timeout`` seconds; raises OpenFailed with the reason."""

    @abstractmethod
    def read(self) -> Captured | None:
        """The next frame; None at the end of a finite source.

        Raises CorruptFrame for one undecodable frame and StreamDropped when a live source is lost.
        """

    @abstractmethod
    def close(self) -> None:
        """Release the device, connection or file; safe to call twice."""

    def interrupt(self) -> None:  # noqa: B027 - optional hook
        """Wake a ``read`` blocked in another thread, if this source can do so safely.

        Called from the stopping thread while capture may still be inside ``read``; it must not
        release anything the reader uses (that is ``close``'s job, once capture has stopped).
        Sources whose reads are short or bounded by their own timeout need not implement it.
        """

    @property
    def fps(self) -> float | None:
        """Nominal frame rate when the source declares one (video files, cameras)."""
        return None

    @property
    def length(self) -> int | None:
        """Number of frames when known in advance (progress bars)."""
        return None

    def describe(self) -> str:
        return f"{self.uri} ({self.kind})"

    def __enter__(self) -> Source:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class ImageFilesSource(Source):
    """An image file, a folder or a glob: every image is one frame, decoded by the shared loader."""

    def __init__(self, uri: str, paths: Sequence[Path], kind: str) -> None:
        super().__init__(uri, is_live=False)
        self.paths = list(paths)
        self.kind = kind
        self._next = 0

    def open(self, timeout: float) -> None:
        self._next = 0
        self.is_open = True

    def read(self) -> Captured | None:
        if self._next >= len(self.paths):
            return None
        from rpol_edge.images import ImageError, load_rgb

        path = self.paths[self._next]
        self._next += 1
        try:
            rgb = load_rgb(path)
        except ImageError as exc:
            raise CorruptFrame(str(exc)) from None
        return Captured(rgb, str(path), is_rgb=True)

    def close(self) -> None:
        self.is_open = False

    @property
    def length(self) -> int:
        return len(self.paths)

    def describe(self) -> str:
        return f"{self.uri} ({self.kind}, {len(self.paths)} image(s))"


# --- registry ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceKind:
    scheme: str
    example: str
    factory: Callable[[str], Source]
    """Builds the (unopened) source from the full URI; raises SourceError on a malformed one."""


def _camera(uri: str) -> Source:
    from rpol_edge.live.opencv_sources import camera_source

    return camera_source(uri)


def _v4l2(uri: str) -> Source:
    from rpol_edge.live.opencv_sources import v4l2_source

    return v4l2_source(uri)


def _csi(uri: str) -> Source:
    from rpol_edge.live.opencv_sources import csi_source

    return csi_source(uri)


def _rtsp(uri: str) -> Source:
    from rpol_edge.live.opencv_sources import stream_source

    check_network_uri(uri)
    return stream_source(uri)


def _http(uri: str) -> Source:
    from rpol_edge.live.mjpeg import MjpegSource

    return MjpegSource(uri)


def _file(uri: str) -> Source:
    return path_source(uri[len("file://") :])


SCHEMES: dict[str, SourceKind] = {
    k.scheme: k
    for k in (
        SourceKind("camera", "camera://N (same as --camera N)", _camera),
        SourceKind("csi", "csi://N (Jetson CSI camera; options ?width=&height=&fps=&flip=)", _csi),
        SourceKind("v4l2", "v4l2:///dev/videoN", _v4l2),
        SourceKind("rtsp", "rtsp://host/stream", _rtsp),
        SourceKind("rtsps", "rtsps://host/stream", _rtsp),
        SourceKind("http", "http://host/stream (MJPEG)", _http),
        SourceKind("https", "https://host/stream (MJPEG)", _http),
        SourceKind("file", "file:///path", _file),
    )
}

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")


def check_network_uri(uri: str) -> None:
    """Refuse a malformed network URI now, in one line naming it (not later, mid-open, as a bare
    ``Invalid IPv6 URL`` or ``Port out of range``)."""
    try:
        parts = urlsplit(uri)
        host, _port = parts.hostname, parts.port  # the port is parsed (and refused) on access
    except ValueError as exc:
        raise SourceError(f"{uri}: not a valid URL ({exc})") from None
    if not host:
        raise SourceError(f"{uri}: no host name in the URL")


def accepted_sources() -> str:
    """The accepted forms in one line, for error messages."""
    return ", ".join(k.example for k in SCHEMES.values()) + ", or a video file, image file, folder or glob"


def parse_source(uri: str) -> Source:
    """A URI or path -> an unopened source; raises SourceError naming the accepted forms."""
    m = _SCHEME.match(uri)
    if m is None:
        return path_source(uri)
    scheme = m.group(1).lower()
    if scheme not in SCHEMES:
        raise SourceError(f"{uri}: unknown source scheme {scheme!r}; accepted: {accepted_sources()}")
    return SCHEMES[scheme].factory(uri)


def path_source(text: str) -> Source:
    """Glob, folder, image file or video file, decided by what is on disk."""
    if any(c in text for c in "*?["):
        paths = [Path(p) for p in sorted(glob.glob(text, recursive=True)) if is_image_path(Path(p))]
        if not paths:
            raise SourceError(f"{text}: the glob matches no image files")
        return ImageFilesSource(text, paths, "image glob")
    path = Path(text).expanduser()
    if path.is_dir():
        paths = sorted(p for p in path.iterdir() if p.is_file() and is_image_path(p))
        if not paths:
            raise SourceError(f"{text}: the folder holds no image files")
        return ImageFilesSource(text, paths, "image folder")
    if not path.is_file():
        raise SourceError(f"{text}: no such file or folder (accepted sources: {accepted_sources()})")
    if is_image_path(path):
        return ImageFilesSource(text, [path], "image file")
    from rpol_edge.live.opencv_sources import video_file_source

    return video_file_source(path)


# --- opening within a bound ----------------------------------------------------------------------


def call_within(fn: Callable[[], T], timeout: float, what: str) -> T:
    """Run a blocking call that has no timeout of its own (some VideoCapture backends) with one.

    The call runs in a daemon thread; if it does not answer in time we give up on it and raise
    OpenFailed. The abandoned thread may finish later; nothing uses its result.
    """
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"open {what}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise OpenFailed(f"no answer within {timeout:g} s")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


@dataclass(frozen=True)
class Backoff:
    """Reconnect delays: first, first*factor, ... up to cap, so a flapping link is not hammered."""

    first: float = 0.5
    factor: float = 2.0
    cap: float = 10.0

    def delay(self, attempt: int) -> float:
        return float(min(self.cap, self.first * self.factor**attempt))


def open_source(source: Source, timeout: float, backoff: Backoff = Backoff(0.25, 2.0, 2.0)) -> None:
    """Open within ``timeout`` seconds or raise one SourceError naming the source and the last reason.

    Network sources are retried until the deadline (a server or camera that is still starting is
    common on edge boxes); local devices and files get one attempt, since waiting will not help.
    """
    deadline = time.monotonic() + timeout
    attempt = 0
    while True:
        remaining = max(0.5, deadline - time.monotonic())
        try:
            source.open(remaining)
            return
        except OpenFailed as exc:
            reason = str(exc)
        if not source.can_reconnect:
            raise SourceError(f"cannot open {source.uri}: {reason}")
        pause = backoff.delay(attempt)
        attempt += 1
        if time.monotonic() + pause >= deadline:
            raise SourceError(f"cannot open {source.uri} within {timeout:g} s: {reason}")
        time.sleep(pause)
