"""The live pipeline: capture, pre-processing, batched inference, drawing and output run concurrently.

Threads, one per stage, meeting at bounded hand-offs, so that throughput is set by the slowest
stage and not by their sum (measured: docs/live.md, benchmarks/product/live_fps.py):

* capture (a thread per source) reads and decodes it, and reconnects it on its own;
* prepare (a thread per source) does the shared pre-processing (``prepare.prepare``: resize, crop
  and colour order on the host, or a size check and pass-through for a graph exported with
  ``--frame-size``);
* inference (one worker thread) takes the ready frames of every source in one batch (at most one
  per source, within the model's batch range, after a bounded wait: `batching.Batcher`) and only
  calls the runtime, so a GPU is fed as soon as it is free;
* render (one worker thread) does the shared post-processing (``predict.detect``) and draws the
  shared overlay (``overlay.render``) when an image output needs it;
* output (the calling thread, because GUI toolkits want the main thread and signals are delivered
  there) writes every sink (video encoding, JPEG files, window, mosaic, JSONL).

Each hand-off is, for a live source, a one-item slot that the next item overwrites, so a slow
stage never makes the camera or the socket back up and what is shown is always the newest frame
(each overwrite is counted as a dropped frame of its stream); for files and folders it is a
blocking queue, and every frame is processed. With live and file sources mixed, the hand-offs after
inference block (no file frame is ever dropped) and live frames are dropped before inference.

Stopping: the end of every stream drains what is already queued (a stream that ends, or is lost
for good, leaves the others running); Ctrl-C, SIGTERM or a closed window stop promptly;
``max_frames`` ends each stream after that many frames. Either way every sink is closed (files
flushed, videos renamed into place) as soon as output returns, still under the signal handlers,
and a RunSummary is returned, with the totals and one part per stream.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from rpol_edge.core.prepare import describe
from rpol_edge.live.batching import Batcher
from rpol_edge.live.frames import FrameResult
from rpol_edge.live.handoff import POLL_S, LatestSlot, put_until_stopped
from rpol_edge.live.outputs import Sink
from rpol_edge.live.signals import Interrupted, RunSignals
from rpol_edge.live.sources import Backoff, Source, SourceError, open_source
from rpol_edge.live.stream import Stream, StreamPolicy, Work
from rpol_edge.live.summary import RunStats, RunSummary, run_summary
from rpol_edge.results.detection import box_mode, detect, others, peak_of
from rpol_edge.results.overlay import render
from rpol_edge.runtimes import Runtime, infer_all

log = logging.getLogger("rpol_edge.live")


Progress = Callable[[int, int | None], None]
"""Called after each output frame with (frames done, total or None for live sources)."""


RECONNECT_BACKOFF = Backoff(first=0.5, factor=2.0, cap=10.0)

BATCH_WAIT_S = 0.005
"""How long a batch waits for the other streams' frames after its first one is ready."""

Batch = list[Work]
Channel = LatestSlot[Batch] | queue.Queue[Batch]


class _Run:
    """State shared by the threads of one run."""

    def __init__(
        self,
        runtime: Runtime,
        sources: Sequence[Source],
        sinks: Sequence[Sink],
        policy: StreamPolicy,
        progress: Progress | None,
        min_area: float,
        batch_wait: float,
        boxes: str | None = None,
    ) -> None:
        self.runtime = runtime
        self.min_area = min_area
        self.boxes, self.cells = box_mode(runtime.meta, boxes)
        self.policy = policy
        self.progress = progress
        self.stop = threading.Event()
        """Abort: stop promptly, drop what is queued (signals, window closed, errors)."""
        self.wake = threading.Event()
        self.streams = [
            Stream(i, s, runtime.meta, policy, self.stop, self.wake) for i, s in enumerate(sources)
        ]
        self.total = RunStats()
        """What output recorded for every stream: the run's latency and stage times."""
        self.batch_sizes: Counter[int] = Counter()
        """Inference calls by number of frames (written by the inference thread only)."""
        self.max_batch = min(len(self.streams), runtime.max_batch or len(self.streams))
        self.batch_wait = batch_wait
        self.sinks = list(sinks)
        self.done = {stage: threading.Event() for stage in ("infer", "render")}
        """Set when a worker's loop has ended: its consumer stops once its inbox is empty too."""
        self.stop_reason: str | None = None
        self.errors: list[BaseException] = []
        # After inference, newest wins only when every stream is live: a file frame is never dropped.
        all_paced = all(s.paced for s in self.streams)
        self.inbox: dict[str, Channel] = {
            stage: LatestSlot() if all_paced else queue.Queue(maxsize=1) for stage in ("render", "output")
        }
        self.image_sinks = [s for s in self.sinks if s.needs_image]
        self.record_sinks = [s for s in self.sinks if not s.needs_image]
        self.image_streams = {
            i for i in range(len(self.streams)) for s in self.image_sinks if s.stream in (None, i)
        }
        self.last_write_ms = 0.0
        """The previous frame's write time, shown in the overlay (set by output, read by render)."""
        self._last_render_ms = 0.0

    def request_stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self.stop.set()

    def end_reason(self) -> str:
        """Why the run ended by itself: its streams' endings, the gravest first."""
        ended = {s.stats.ended_by for s in self.streams}
        for reason in ("source lost", "max frames"):
            if reason in ended:
                return reason
        return "end of stream"

    # --- inference and render -----------------------------------------------------------------

    def _hand_over(self, stage: str, to: str, batch: Batch) -> bool:
        """Pass ``batch`` on; False when the run is stopping. A newest-wins hand-off never blocks:
        it replaces an unread batch, whose frames ``stage`` counts as drops of their streams."""
        box = self.inbox[to]
        if isinstance(box, LatestSlot):
            for work in box.put(batch) or ():
                self.streams[work.frame.stream].stats.handoff_drops[stage] += 1
            return True
        return put_until_stopped(box, batch, self.stop)

    def infer_loop(self) -> None:
        batcher = Batcher(self.streams, self.max_batch, self.batch_wait, self.wake)
        batch: Batch | None
        while (batch := batcher.gather(self.stop)) is not None:
            x = np.stack([w.x for w in batch])  # type: ignore[misc]
            t0 = time.perf_counter()
            out = infer_all(self.runtime, x)
            ms = (time.perf_counter() - t0) * 1e3
            for k, w in enumerate(batch):
                w.frame.ms["infer"], w.frame.batch = ms, len(batch)
                w.score, w.mask, w.x = out.score[k, 0], out.mask[k, 0], None
                w.peak = peak_of(out, k)
            self.batch_sizes[len(batch)] += 1
            if not self._hand_over("infer", "render", batch):
                break

    def render_loop(self) -> None:
        inbox, upstream_done = self.inbox["render"], self.done["infer"]
        while not self.stop.is_set():
            try:
                batch = inbox.get(timeout=POLL_S)
            except queue.Empty:
                if upstream_done.is_set() and inbox.empty():
                    break
                continue
            for work in batch:
                self.render(work)
            if not self._hand_over("render", "output", batch):
                break

    def render(self, work: Work) -> None:
        assert work.score is not None and work.mask is not None and work.transform is not None
        t0 = time.perf_counter()
        detection = detect(
            work.score, work.mask, work.transform, self.min_area, self.boxes, self.cells, work.peak
        )
        t1 = time.perf_counter()
        work.result = r = FrameResult(work.frame, detection, work.score, work.transform)
        r.frame.ms["post"] = (t1 - t0) * 1e3
        if r.frame.stream in self.image_streams:
            lines = self._lines(self.streams[r.frame.stream].stats.mean_fps(), r)
            more = others(detection)
            work.image = render(r.frame.bgr(), r.score, r.transform, r.detection.box, lines, more=more)
        self._last_render_ms = r.frame.ms["render"] = (time.perf_counter() - t1) * 1e3

    # --- output (calling thread) -------------------------------------------------------------

    def output(self) -> None:
        inbox, upstream_done = self.inbox["output"], self.done["render"]
        total = self._total_frames()
        limit = self.policy.max_frames
        while True:
            try:
                batch = inbox.get(timeout=POLL_S)
            except queue.Empty:
                if upstream_done.is_set() and inbox.empty():
                    return
                continue
            for work in batch:
                stream = self.streams[work.frame.stream]
                if limit is not None and stream.stats.frames >= limit:
                    continue  # in flight when its stream reached --max-frames
                self._write(work, stream)
                if self.progress is not None:
                    self.progress(self.total.frames, total)
                if any(s.stop_requested for s in self.sinks):
                    self.request_stop("window closed")
                    return
                if limit is not None and stream.stats.frames >= limit:
                    stream.request_stop("max frames")

    def _write(self, work: Work, stream: Stream) -> None:
        r = work.result
        assert isinstance(r, FrameResult)
        i = r.frame.stream
        t0 = time.perf_counter()
        for sink in self.image_sinks:
            if sink.stream in (None, i):
                sink.write(r, work.image)
        done = time.perf_counter()
        self.last_write_ms = r.frame.ms["write"] = (done - t0) * 1e3
        r.latency_ms = (done - r.frame.started) * 1e3
        for sink in self.record_sinks:
            if sink.stream in (None, i):
                sink.write(r, None)
        stream.stats.record(r)
        self.total.record(r)

    def _total_frames(self) -> int | None:
        lengths = [None if s.paced else s.source.length for s in self.streams]
        known = [n for n in lengths if n is not None]
        if len(known) < len(lengths):
            return None
        limit = self.policy.max_frames
        return sum(n if limit is None else min(n, limit) for n in known)

    def _lines(self, fps: float | None, r: FrameResult) -> list[str]:
        ms = r.frame.ms
        rate = "  -- FPS" if fps is None else f"{fps:5.1f} FPS"
        head = f"{rate}  {self.runtime.description}"
        if len(self.streams) > 1:
            head = f"[{r.frame.stream}] {head}  batch {r.frame.batch}"
        return [
            head,
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

    def threads(self) -> tuple[list[threading.Thread], list[threading.Thread]]:
        """(workers downstream first, the order they are joined in; the capture threads)."""
        workers = [
            self.thread("render", self.render_loop, self.done["render"]),
            self.thread("inference", self.infer_loop, self.done["infer"]),
        ]
        workers += [self.thread(f"prepare {s.index}", s.prepare, s.prepare_done) for s in self.streams]
        captures = [self.thread(f"capture {s.index}", s.capture, s.capture_done) for s in self.streams]
        return workers, captures


def run_live(
    runtime: Runtime,
    source: Source | Sequence[Source],
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
    realtime: bool = False,
    batch_wait: float = BATCH_WAIT_S,
    boxes: str | None = None,
) -> RunSummary:
    """Localize every frame of ``source`` (or the newest ones, for live sources) into ``outputs``.

    ``source`` is one source or several (their frames are batched into one inference call).
    ``runtime`` must be active (inside its ``with`` block) and hold a class-agnostic model.
    Sources are opened here within ``open_timeout`` unless already open. ``max_reconnects``
    bounds each stream's reconnect attempts made without a frame in between (-1: never give up).
    Returns when every source has ended (or been lost for good), each has given ``max_frames``
    frames, a sink asks to stop, or on Ctrl-C / SIGTERM (main thread only; also while a source is
    still opening: a summary with no frames). Errors from any stage are re-raised here after every
    output has been closed. A source that comes to its end without a single readable frame is a
    SourceError naming it: raised before ``report`` when no stream gave a frame (outputs are
    created at their first frame, so none is left), after it when others did. ``report`` gets the
    summary while the signal handlers are still installed, so printing or saving it cannot be cut
    short by a late Ctrl-C. ``min_area``: see
    `detect`. ``realtime``: read video files at their frame rate, newest wins, like cameras.
    ``batch_wait``: seconds a batch waits for the other streams after its first frame is ready.
    ``boxes``: ``largest``, ``all`` (one box per object) or None (the model's recorded mode).
    """
    if runtime.meta.n_heads != 1:
        raise ValueError("run needs a class-agnostic model (a class-wise fit localizes a known class)")
    sources = [source] if isinstance(source, Source) else list(source)
    if not sources:
        raise ValueError("run needs at least one source")
    policy = StreamPolicy(max_frames, open_timeout, max_reconnects, backoff, queue_size, realtime)
    run = _Run(runtime, sources, outputs, policy, progress, min_area, batch_wait, boxes)
    workers, captures = run.threads()
    started: list[Sink] = []
    close_errors: list[BaseException] = []
    with RunSignals(run) as signals:
        try:
            # Warm up first: frames a stream buffers while the first calls compile would reach
            # the pipeline in a burst, and newest-wins would drop them.
            _warm_up(runtime, run.max_batch)
            for stream in _open_all(run.streams, open_timeout):
                stream.start_in_outage()
            signals.phase = "running"
            for stream in run.streams:
                log.info("source %d: %s", stream.index, stream.source.describe())
            log.info("pre-processing: %s", describe(runtime.meta))
            for sink in run.sinks:
                live, fps = _timeline(run.streams, sink.stream)
                sink.start(live, fps)
                started.append(sink)
            for t in (*workers, *captures):
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
            for src in sources:
                src.interrupt()  # wakes a read blocked in capture (MJPEG: socket shutdown)
            for t in (*workers, *captures):
                if t.ident is not None:
                    t.join(join_timeout)
            for stream, t in zip(run.streams, captures, strict=True):
                if not t.is_alive():
                    stream.source.close()
                else:  # blocked inside a read: releasing under it is unsafe; the daemon thread dies with us
                    log.warning(
                        "%s: capture did not stop within %g s; leaving it", stream.source.uri, join_timeout
                    )
        if run.errors:
            raise run.errors[0]
        if close_errors:
            raise close_errors[0]
        reason = run.stop_reason or run.end_reason()
        used = f"{runtime.description}, pre-processing {describe(runtime.meta)}"
        parts = [s.stats.stream_summary(s.index, s.source.describe()) for s in run.streams]
        reads = [s.stats.first_read for s in run.streams if s.stats.first_read is not None]
        run.total.first_read = min(reads, default=None)
        summary = run_summary(parts, run.total, dict(run.batch_sizes), used, reason)
        barren = [s for s in run.streams if s.stats.ended_by == "end of stream" and not s.stats.captured]
        if barren and not summary.frames:
            raise no_frame_error(barren[0])  # nothing was processed: no summary of nothing
        log.info("stopped: %s", summary.stop_reason)
        if report is not None:
            report(summary)
        if barren:  # the other streams' frames are written and reported; the command still failed
            raise no_frame_error(barren[0])
    return summary


def no_frame_error(stream: Stream) -> SourceError:
    """A source that came to its end without one readable frame (every image unreadable, a video
    with no frame): bad input, not a run that merely had nothing to do."""
    stats, uri = stream.stats, stream.source.uri
    if stats.corrupt_frames:
        return SourceError(
            f"{uri}: no frame could be read ({stats.corrupt_frames} corrupt frame(s) skipped, "
            f"the first: {stats.first_corrupt})"
        )
    return SourceError(f"{uri}: the source ended without a single frame")


def _open_all(streams: Sequence[Stream], timeout: float) -> list[Stream]:
    """Open every source at once, each within ``timeout``; the streams that did not open.

    One source that does not open is an error (SourceError, naming it), as it always was. Of
    several, the run starts with those that opened: a network stream that did not is reconnected
    by its own capture thread (counted as an outage), any other is counted as lost; when none
    opens, the first one's error is raised.
    """
    pending = [s for s in streams if not s.source.is_open]
    if len(streams) == 1:
        for s in pending:
            open_source(s.source, timeout)
        return []
    errors: dict[int, SourceError] = {}

    def attempt(s: Stream) -> None:
        try:
            open_source(s.source, timeout)
        except SourceError as exc:
            errors[s.index] = exc

    threads = [threading.Thread(target=attempt, args=(s,), daemon=True) for s in pending]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 5.0)  # open_source keeps to its timeout; this only bounds a stuck backend
    failed = [s for s in pending if s.index in errors or not s.source.is_open]
    if len(failed) == len(streams):
        raise errors.get(failed[0].index) or SourceError(f"cannot open {failed[0].source.uri}")
    for s in failed:
        log.warning("source %d: %s", s.index, errors.get(s.index, f"{s.source.uri}: no answer"))
    return failed


def _warm_up(runtime: Runtime, batch: int) -> None:
    """First calls allocate and compile, per batch shape: not inside the first frames' latency."""
    shape = runtime.meta.input_shape()
    for n in sorted({1, batch}):
        infer_all(runtime, np.zeros((n, *shape), np.uint8))


def _timeline(streams: Sequence[Stream], index: int | None) -> tuple[bool, float | None]:
    """(live, fps) of what a sink receives: its stream's, or for a sink of every stream, live when
    all are and the fastest declared frame rate."""
    chosen = list(streams) if index is None else [streams[index]]
    rates = [s.source.fps for s in chosen if s.source.fps]
    return all(s.paced for s in chosen), max(rates) if rates else None


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
