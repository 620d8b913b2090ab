"""The live pipeline: capture, pre-processing, inference, drawing and output run concurrently.

Five threads, one per stage, meeting at bounded hand-offs, so that throughput is set by the slowest
stage and not by their sum (measured: docs/live.md, benchmarks/live_fps.py):

* capture (worker thread) reads and decodes the source;
* prepare (worker thread) does the shared pre-processing (``prepare.prepare``: resize, crop and
  colour order on the host, or a size check and pass-through for a graph exported with
  ``--frame-size``);
* inference (worker thread) only calls the runtime, so a GPU is fed as soon as it is free;
* render (worker thread) does the shared post-processing (``predict.detect``) and draws the
  shared overlay (``overlay.render``) when an image output needs it;
* output (the calling thread, because GUI toolkits want the main thread and signals are delivered
  there) writes every sink (video encoding, JPEG files, window, JSONL).

Each hand-off is, for a live source, a one-item slot that the next item overwrites, so a slow
stage never makes the camera or the socket back up and what is shown is always the newest frame
(each overwrite is counted as a dropped frame); for files and folders it is a blocking queue, and
every frame is processed.

Stopping: end of stream drains what is already queued; Ctrl-C, SIGTERM, ``max_frames`` or a closed
window stop promptly. Either way every sink is closed (files flushed, the video renamed into place)
as soon as output returns, still under the signal handlers, and a RunSummary is returned.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rpol_edge.core.geometry import CropTransform
from rpol_edge.core.prepare import describe, prepare
from rpol_edge.evaluate.overlay import render
from rpol_edge.evaluate.predict import detect
from rpol_edge.live.frames import Frame, FrameResult
from rpol_edge.live.handoff import POLL_S, LatestSlot, put_until_stopped
from rpol_edge.live.outputs import Sink
from rpol_edge.live.signals import Interrupted, RunSignals
from rpol_edge.live.sources import Backoff, CorruptFrame, OpenFailed, Source, StreamDropped, open_source
from rpol_edge.live.stats import RunStats, RunSummary
from rpol_edge.runtimes import Runtime, infer_all

log = logging.getLogger("rpol_edge.live")


Progress = Callable[[int, int | None], None]
"""Called after each output frame with (frames done, total or None for live sources)."""


RECONNECT_BACKOFF = Backoff(first=0.5, factor=2.0, cap=10.0)


@dataclass
class _Work:
    """One frame on its way through the stages; each stage fills in its part."""

    frame: Frame
    x: np.ndarray | None = None
    """The K x K RGB network input (prepare -> inference)."""
    transform: CropTransform | None = None
    score: np.ndarray | None = None
    mask: np.ndarray | None = None
    result: FrameResult | None = None
    image: np.ndarray | None = None
    """The BGR overlay, when an image output needs one (render -> output)."""


Channel = LatestSlot[_Work] | queue.Queue[_Work]


class _Run:
    """State shared by the five threads of one run."""

    def __init__(
        self,
        runtime: Runtime,
        source: Source,
        sinks: Sequence[Sink],
        max_frames: int | None,
        open_timeout: float,
        max_reconnects: int,
        backoff: Backoff,
        queue_size: int,
        progress: Progress | None,
        min_area: float = 0.0,
    ) -> None:
        self.runtime = runtime
        self.min_area = min_area
        self.source = source
        self.sinks = list(sinks)
        self.max_frames = max_frames
        self.open_timeout = open_timeout
        self.max_reconnects = max_reconnects
        self.backoff = backoff
        self.progress = progress
        self.stats = RunStats()
        self.stop = threading.Event()
        """Abort: stop promptly, drop what is queued (signals, max frames, window closed, errors)."""
        self.done = {stage: threading.Event() for stage in ("capture", "prepare", "infer", "render")}
        """Set when a worker's loop has ended: its consumer stops once its inbox is empty too."""
        self.stop_reason: str | None = None
        self.end_reason = "end of stream"
        self.errors: list[BaseException] = []
        self.failed_attempts = 0
        """Reconnect attempts since the last frame read (bounded by ``max_reconnects``)."""
        self.in_outage = False
        """Between a drop and the next frame read: one outage, however many reopens it takes."""
        # The hand-off into each stage, named for the stage that reads it. For files, read-ahead
        # (``queue_size``) is before prepare only: deeper queues further on would add latency, not
        # throughput (one waiting item per stage is enough to keep every stage busy).
        self.inbox: dict[str, Channel] = {
            stage: LatestSlot() if source.is_live else queue.Queue(maxsize=queue_size if i == 0 else 1)
            for i, stage in enumerate(("prepare", "infer", "render", "output"))
        }
        self.image_sinks = [s for s in self.sinks if s.needs_image]
        self.record_sinks = [s for s in self.sinks if not s.needs_image]
        self.last_write_ms = 0.0
        """The previous frame's write time, shown in the overlay (set by output, read by render)."""
        self._last_render_ms = 0.0
        """Frames written per second, shown on the overlay: counted where frames leave, not at
        render, which a live source may run for frames the output then drops (newest wins)."""

    def request_stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self.stop.set()

    # --- capture -----------------------------------------------------------------------------

    def capture(self) -> None:
        index = 0
        while not self.stop.is_set():
            started = time.perf_counter()
            try:
                captured = self.source.read()
            except CorruptFrame as exc:
                self.stats.corrupt_frames += 1
                log.warning("corrupt frame skipped: %s", exc)
                continue
            except StreamDropped as exc:
                if not self.stop.is_set() and self._ride_out(str(exc)):
                    continue
                break
            if captured is None:
                if self.source.can_reconnect and not self.stop.is_set() and self._ride_out("end of stream"):
                    continue
                break
            now = time.perf_counter()
            if self.in_outage:  # a frame, not a mere reopen, proves the link is back
                self.in_outage = False
                self.stats.reconnects += 1
                log.warning(
                    "%s: reconnected, frames again after %d attempt(s)", self.source.uri, self.failed_attempts
                )
            self.failed_attempts = 0
            if self.stats.first_read is None:
                self.stats.first_read = started
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
            )
            index += 1
            self.stats.captured += 1
            if not self._hand_over("capture", "prepare", _Work(frame)):
                break
            if self.max_frames is not None and not self.source.is_live and index >= self.max_frames:
                break

    def _ride_out(self, reason: str) -> bool:
        """After a drop: reconnect with backoff; False when the run should end (gave up or stopping).

        Attempts count from the last frame read, not from the last reopen: a server that accepts
        connections but never sends a frame must still exhaust ``max_reconnects``. For the same
        reason a reopen is not yet a reconnect: `capture` counts that at the first frame after it,
        and a drop right after a reopen is the same outage, not a new one.
        """
        if not self.source.can_reconnect:
            self.stats.stream_drops += 1
            log.warning("%s: source lost (%s)", self.source.uri, reason)
            self.end_reason = "source lost"
            return False
        if self.in_outage:
            log.warning("%s: reopened stream lost before a frame (%s)", self.source.uri, reason)
        else:
            self.in_outage = True
            self.stats.stream_drops += 1
            log.warning("%s: stream dropped (%s); reconnecting", self.source.uri, reason)
        self.source.close()
        while not self.stop.is_set():
            if 0 <= self.max_reconnects <= self.failed_attempts:
                log.error(
                    "%s: giving up after %d reconnect attempt(s)", self.source.uri, self.failed_attempts
                )
                self.end_reason = "source lost"
                return False
            if self.stop.wait(self.backoff.delay(self.failed_attempts)):
                return False
            self.failed_attempts += 1
            self.stats.reconnect_attempts += 1
            try:
                self.source.open(self.open_timeout)
            except OpenFailed as exc:
                log.warning("%s: reconnect attempt %d failed: %s", self.source.uri, self.failed_attempts, exc)
                continue
            log.warning(
                "%s: reopened (attempt %d); waiting for a frame", self.source.uri, self.failed_attempts
            )
            return True
        return False

    # --- the stages between capture and output ------------------------------------------------

    def _hand_over(self, stage: str, to: str, work: _Work) -> bool:
        """Pass ``work`` on; False when the run is stopping. A live hand-off never blocks: it
        replaces an unread item, which ``stage`` counts as a drop (one counter per thread)."""
        box = self.inbox[to]
        if isinstance(box, LatestSlot):
            self.stats.handoff_drops[stage] += box.put(work)
            return True
        return put_until_stopped(box, work, self.stop)

    def worker(self, stage: str, upstream: str, to: str, step: Callable[[_Work], None]) -> None:
        """The loop of one middle stage: take, ``step``, pass on, until upstream is drained."""
        inbox, upstream_done = self.inbox[stage], self.done[upstream]
        while not self.stop.is_set():
            try:
                work = inbox.get(timeout=POLL_S)
            except queue.Empty:
                if upstream_done.is_set() and inbox.empty():
                    break
                continue
            step(work)
            if not self._hand_over(stage, to, work):
                break

    def prepare(self, work: _Work) -> None:
        frame = work.frame
        t0 = time.perf_counter()
        work.x, work.transform = prepare(frame.image, self.runtime.meta, frame.is_rgb)
        frame.ms["pre"] = (time.perf_counter() - t0) * 1e3

    def infer(self, work: _Work) -> None:
        assert work.x is not None
        t0 = time.perf_counter()
        out = infer_all(self.runtime, work.x[None])
        work.frame.ms["infer"] = (time.perf_counter() - t0) * 1e3
        work.score, work.mask, work.x = out.score[0, 0], out.mask[0, 0], None

    def render(self, work: _Work) -> None:
        assert work.score is not None and work.mask is not None and work.transform is not None
        t0 = time.perf_counter()
        detection = detect(work.score, work.mask, work.transform, self.min_area)
        t1 = time.perf_counter()
        work.result = r = FrameResult(work.frame, detection, work.score, work.transform)
        r.frame.ms["post"] = (t1 - t0) * 1e3
        if self.image_sinks:
            lines = self._lines(self.stats.mean_fps(), r)
            work.image = render(r.frame.bgr(), r.score, r.transform, r.detection.box, lines)
        self._last_render_ms = r.frame.ms["render"] = (time.perf_counter() - t1) * 1e3

    # --- output (calling thread) -------------------------------------------------------------

    def output(self) -> None:
        inbox, upstream_done = self.inbox["output"], self.done["render"]
        total = None if self.source.is_live else self.source.length
        if self.max_frames is not None and total is not None:
            total = min(total, self.max_frames)
        while True:
            try:
                work = inbox.get(timeout=POLL_S)
            except queue.Empty:
                if upstream_done.is_set() and inbox.empty():
                    return
                continue
            r = work.result
            assert r is not None
            t0 = time.perf_counter()
            for sink in self.image_sinks:
                sink.write(r, work.image)
            done = time.perf_counter()
            self.last_write_ms = r.frame.ms["write"] = (done - t0) * 1e3
            r.latency_ms = (done - r.frame.started) * 1e3
            for sink in self.record_sinks:
                sink.write(r, None)
            self.stats.record(r)
            if self.progress is not None:
                self.progress(self.stats.frames, total)
            if any(s.stop_requested for s in self.sinks):
                self.request_stop("window closed")
            if self.max_frames is not None and self.stats.frames >= self.max_frames:
                self.request_stop("max frames")
                return

    def _lines(self, fps: float | None, r: FrameResult) -> list[str]:
        ms = r.frame.ms
        rate = "  -- FPS" if fps is None else f"{fps:5.1f} FPS"
        return [
            f"{rate}  {self.runtime.description}",
            f"cap {ms['capture']:.1f}  pre {ms['pre']:.1f}  infer {ms['infer']:.1f}  "
            f"post {ms['post']:.1f}  render {self._last_render_ms:.1f}  write {self.last_write_ms:.1f} ms",
        ]

    def thread(self, name: str, body: Callable[[], None], done: threading.Event) -> threading.Thread:
        def target() -> None:
            try:
                body()
            except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
                self.errors.append(exc)
                self.request_stop("error")
            finally:
                done.set()

        return threading.Thread(target=target, name=f"rpol-edge {name}", daemon=True)


def run_live(
    runtime: Runtime,
    source: Source,
    outputs: Sequence[Sink] = (),
    *,
    max_frames: int | None = None,
    open_timeout: float = 10.0,
    max_reconnects: int = 10,
    backoff: Backoff = RECONNECT_BACKOFF,
    queue_size: int = 2,
    progress: Progress | None = None,
    join_timeout: float = 5.0,
    report: Callable[[RunSummary], None] | None = None,
    min_area: float = 0.0,
) -> RunSummary:
    """Localize every frame of ``source`` (or the newest ones, for live sources) into ``outputs``.

    ``runtime`` must be active (inside its ``with`` block) and hold a class-agnostic model.
    ``source`` is opened here within ``open_timeout`` unless already open. ``max_reconnects``
    bounds the reconnect attempts made without a frame in between (-1: never give up). Returns
    when the source ends, ``max_frames`` frames are written, a sink asks to stop, or on Ctrl-C /
    SIGTERM (main thread only; also while the source is still opening: a summary with no frames).
    Errors from any stage are re-raised here after every output has been closed. ``report`` gets
    the summary while the signal handlers are still installed, so printing or saving it cannot be
    cut short by a late Ctrl-C. ``min_area``: see `detect` (no object below it).
    """
    if runtime.meta.n_heads != 1:
        raise ValueError("run needs a class-agnostic model (a class-wise fit localizes a known class)")
    run = _Run(
        runtime, source, outputs, max_frames, open_timeout, max_reconnects, backoff, queue_size, progress,
        min_area,
    )  # fmt: skip
    capture = run.thread("capture", run.capture, run.done["capture"])
    workers = [  # downstream first: the order they are joined in
        run.thread(name, functools.partial(run.worker, stage, up, to, step), run.done[stage])
        for name, stage, up, to, step in (
            ("render", "render", "infer", "output", run.render),
            ("inference", "infer", "prepare", "render", run.infer),
            ("prepare", "prepare", "capture", "infer", run.prepare),
        )
    ]
    started: list[Sink] = []
    close_errors: list[BaseException] = []
    with RunSignals(run) as signals:
        try:
            if not source.is_open:
                open_source(source, open_timeout)
            signals.phase = "running"
            log.info("source: %s", source.describe())
            log.info("pre-processing: %s", describe(runtime.meta))
            shape = runtime.meta.input_shape()
            infer_all(runtime, np.zeros((1, *shape), np.uint8))  # warm-up: first calls allocate, compile
            for sink in run.sinks:
                sink.start(source)
                started.append(sink)
            for t in (*workers, capture):
                t.start()
            run.output()
        except Interrupted:
            pass  # the handler recorded why; end like any other stop, with closed outputs
        except BaseException as exc:
            run.request_stop("interrupted" if isinstance(exc, KeyboardInterrupt) else "error")
            raise
        finally:
            signals.phase = "closing"
            run.stop.set()
            close_errors = _close_all(started)  # first: only this thread uses the sinks
            source.interrupt()  # wakes a read blocked in capture (MJPEG: socket shutdown)
            for t in (*workers, capture):
                if t.ident is not None:
                    t.join(join_timeout)
            if not capture.is_alive():
                source.close()
            else:  # blocked inside a read: releasing under it is unsafe; the daemon thread dies with us
                log.warning("%s: capture did not stop within %g s; leaving it", source.uri, join_timeout)
        if run.errors:
            raise run.errors[0]
        if close_errors:
            raise close_errors[0]
        reason = run.stop_reason or run.end_reason
        used = f"{runtime.description}, pre-processing {describe(runtime.meta)}"
        summary = run.stats.summary(source.describe(), used, reason)
        log.info("stopped: %s", summary.stop_reason)
        if report is not None:
            report(summary)
    return summary


def _close_all(sinks: Sequence[Sink]) -> list[BaseException]:
    """Close every sink even when one fails, so one bad output never leaves another unflushed."""
    errors: list[BaseException] = []
    for sink in sinks:
        try:
            sink.close()
        except Exception as exc:  # noqa: BLE001 - collected, re-raised by the caller
            log.error("closing %s failed: %s", type(sink).__name__, exc)
            errors.append(exc)
    return errors
