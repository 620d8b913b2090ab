"""Frame sources for `rpol-edge run`: one interface for cameras, network streams, files and folders.

A source says two things about itself that shape the pipeline: whether it is *live* (frames come
on the source's own clock, so the pipeline keeps only the newest and counts the rest as dropped)
and whether it can *reconnect* (network streams: a lost connection is retried with backoff instead
of ending the run).

Opening is separate from construction so a URI can be validated before the (slow) model loads,
and so reconnecting is just `close` + `open` on the same object.

This module holds the base types and the opening helpers only. The implementations sit beside it
(``image_sources``, ``opencv_sources``, ``mjpeg``) and import it; ``source_registry`` maps a URI to
one of them. Nothing here imports an implementation, so there is no import cycle.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar
from urllib.parse import urlsplit

import numpy as np

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
    position_s: float | None = None
    """Where the frame is in a video file (seconds from its start, the decoder's position), for
    records that must line up with the video; None for live sources and images."""
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
