"""One source's part of a live run: its capture thread, its prepare thread, its counters.

Every source of a run gets its own pair of threads, so a slow or reconnecting stream never holds
the others back: capture reads and decodes (and rides out drops with backoff, on its own), prepare
does the shared pre-processing (``prepare.prepare``) into the stream's ``ready`` hand-off, where
the run's one inference thread picks frames of all streams up in batches (`batching.gather`).

Hand-offs are one-item slots (newest wins, an overwrite is a counted drop) for live sources and
``--realtime`` files, and blocking queues for files and folders read at their own pace, so every
file frame is processed exactly once and in order.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from rpol_edge.core.prepare import prepare
from rpol_edge.live.frames import Frame
from rpol_edge.live.handoff import POLL_S, LatestSlot, put_until_stopped
from rpol_edge.live.sources import Backoff, CorruptFrame, OpenFailed, Source, StreamDropped
from rpol_edge.live.summary import RunStats

if TYPE_CHECKING:
    from rpol_edge.core.geometry import CropTransform
    from rpol_edge.core.metadata import ModelMeta

log = logging.getLogger("rpol_edge.live")


@dataclass
class Work:
    """One frame on its way through the stages; each stage fills in its part."""

    frame: Frame
    x: np.ndarray | None = None
    """The K x K RGB network input (prepare -> inference)."""
    transform: CropTransform | None = None
    score: np.ndarray | None = None
    mask: np.ndarray | None = None
    peak: float | None = None
    result: object | None = None
    """The FrameResult (render -> output)."""
    image: np.ndarray | None = None
    """The BGR overlay, when an image output needs one (render -> output)."""


Channel = LatestSlot[Work] | queue.Queue[Work]


@dataclass(frozen=True)
class StreamPolicy:
    """What every stream of a run shares: limits, reconnecting, pacing."""

    max_frames: int | None = None
    """Frames per stream (files: read no more; live: stop once this many are written)."""
    open_timeout: float = 10.0
    max_reconnects: int = 10
    backoff: Backoff = Backoff(first=0.5, factor=2.0, cap=10.0)
    queue_size: int = 2
    """Read-ahead of a file stream before prepare (deeper queues add latency, not throughput)."""
    realtime: bool = False
    """Read files at their frame rate, newest wins, like a camera playing them."""


class Stream:
    """A source with its threads' loops, its hand-offs and its counters."""

    def __init__(
        self, index: int, source: Source, meta: ModelMeta, policy: StreamPolicy, run_stop: threading.Event,
        wake: threading.Event,
    ) -> None:  # fmt: skip
        self.index = index
        self.source = source
        self.meta = meta
        self.policy = policy
        self.run_stop = run_stop
        """The whole run stops (signals, errors, a closed window)."""
        self.stop = threading.Event()
        """This stream stops (its --max-frames reached) or the run does."""
        self.wake = wake
        """Set after each put into ``ready``, so the inference thread need not poll every stream."""
        self.stats = RunStats()
        self.paced = source.is_live or (policy.realtime and source.fps is not None)
        """Newest-wins hand-offs: a live source, or a file played at its frame rate."""
        depth = policy.queue_size
        self.inbox: Channel = LatestSlot() if self.paced else queue.Queue(maxsize=depth)
        self.ready: Channel = LatestSlot() if self.paced else queue.Queue(maxsize=1)
        self.capture_done = threading.Event()
        self.prepare_done = threading.Event()
        self.failed_attempts = 0
        """Reconnect attempts since the last frame read (bounded by ``max_reconnects``)."""
        self.in_outage = False
        """Between a drop and the next frame read: one outage, however many reopens it takes."""
        self.start_closed = False
        """The source did not open when the run started (one of several)."""

    @property
    def stopping(self) -> bool:
        return self.stop.is_set() or self.run_stop.is_set()

    @property
    def finished(self) -> bool:
        """Nothing more will come from this stream: prepare has ended and its last frame was taken
        (or the stream was stopped: what is left over its --max-frames is not wanted)."""
        return self.prepare_done.is_set() and (self.ready.empty() or self.stop.is_set())

    def take(self) -> Work | None:
        """The frame ready for inference, without waiting (the batcher asks every stream)."""
        try:
            return self.ready.get(timeout=0)
        except queue.Empty:
            return None

    def end(self, reason: str) -> None:
        if self.stats.ended_by == "running":
            self.stats.ended_by = reason

    def request_stop(self, reason: str) -> None:
        """Stop this stream only (the others go on)."""
        self.end(reason)
        self.stop.set()

    def start_in_outage(self) -> None:
        """The source did not open at the start of a run of several: a network stream begins as an
        outage its capture thread rides out (counted like a drop); any other is lost."""
        self.start_closed = True

    # --- capture -----------------------------------------------------------------------------

    def capture(self) -> None:
        if self.start_closed and not self._ride_out("did not open"):
            return
        index = 0
        source, stats, limit = self.source, self.stats, self.policy.max_frames
        t_start: float | None = None
        while not self.stopping:
            started = time.perf_counter()
            try:
                captured = source.read()
            except CorruptFrame as exc:
                stats.corrupt_frames += 1
                stats.first_corrupt = stats.first_corrupt or str(exc)
                log.warning("%s: corrupt frame skipped: %s", source.uri, exc)
                continue
            except StreamDropped as exc:
                if not self.stopping and self._ride_out(str(exc)):
                    continue
                break
            if captured is None:
                if source.can_reconnect and not self.stopping and self._ride_out("end of stream"):
                    continue
                self.end("end of stream")
                break
            now = time.perf_counter()
            if self.in_outage:  # a frame, not a mere reopen, proves the link is back
                self.in_outage = False
                stats.reconnects += 1
                log.warning(
                    "%s: reconnected, frames again after %d attempt(s)", source.uri, self.failed_attempts
                )
            self.failed_attempts = 0
            if stats.first_read is None:
                stats.first_read = started
            if captured.arrived is not None:
                started = captured.arrived
            frame = Frame(
                index,
                time.time(),
                started,
                captured.image,
                captured.name,
                captured.is_rgb,
                {"capture": (now - started) * 1e3},
                captured.position_s,
                stream=self.index,
            )
            index += 1
            stats.captured += 1
            if not self.hand_over("capture", self.inbox, Work(frame)):
                break
            if limit is not None and not self.paced and index >= limit:
                self.end("max frames")
                break
            if self.paced and not source.is_live:  # --realtime: the next frame is due 1/fps later
                t_start = now if t_start is None else t_start
                due = t_start + index / float(source.fps or 25.0)
                if self.stop.wait(max(0.0, due - time.perf_counter())) or self.run_stop.is_set():
                    break

    def _ride_out(self, reason: str) -> bool:
        """After a drop: reconnect with backoff; False when the stream should end (gave up or stopping).

        Attempts count from the last frame read, not from the last reopen: a server that accepts
        connections but never sends a frame must still exhaust ``max_reconnects``. For the same
        reason a reopen is not yet a reconnect: `capture` counts that at the first frame after it,
        and a drop right after a reopen is the same outage, not a new one.
        """
        source, stats, policy = self.source, self.stats, self.policy
        if not source.can_reconnect:
            stats.stream_drops += 1
            log.warning("%s: source lost (%s)", source.uri, reason)
            self.end("source lost")
            return False
        if self.in_outage:
            log.warning("%s: reopened stream lost before a frame (%s)", source.uri, reason)
        else:
            self.in_outage = True
            stats.stream_drops += 1
            log.warning("%s: stream dropped (%s); reconnecting", source.uri, reason)
        source.close()
        while not self.stopping:
            if 0 <= policy.max_reconnects <= self.failed_attempts:
                log.error("%s: giving up after %d reconnect attempt(s)", source.uri, self.failed_attempts)
                self.end("source lost")
                return False
            if self.stop.wait(policy.backoff.delay(self.failed_attempts)) or self.run_stop.is_set():
                return False
            self.failed_attempts += 1
            stats.reconnect_attempts += 1
            try:
                source.open(policy.open_timeout)
            except OpenFailed as exc:
                log.warning("%s: reconnect attempt %d failed: %s", source.uri, self.failed_attempts, exc)
                continue
            log.warning("%s: reopened (attempt %d); waiting for a frame", source.uri, self.failed_attempts)
            return True
        return False

    # --- prepare -----------------------------------------------------------------------------

    def prepare(self) -> None:
        """Take captured frames, pre-process them, offer them to the inference thread."""
        while not self.stopping:
            try:
                work = self.inbox.get(timeout=POLL_S)
            except queue.Empty:
                if self.capture_done.is_set() and self.inbox.empty():
                    break
                continue
            frame = work.frame
            t0 = time.perf_counter()
            work.x, work.transform = prepare(frame.image, self.meta, frame.is_rgb)
            frame.ms["pre"] = (time.perf_counter() - t0) * 1e3
            if not self.hand_over("prepare", self.ready, work):
                break
            self.wake.set()

    def hand_over(self, stage: str, box: Channel, work: Work) -> bool:
        """Pass ``work`` on; False when stopping. A newest-wins hand-off never blocks: it replaces
        an unread item, which ``stage`` counts as a drop (one counter per thread)."""
        if isinstance(box, LatestSlot):
            self.stats.handoff_drops[stage] += box.put(work) is not None
            return True
        return put_until_stopped(box, work, self.stop, self.run_stop)
