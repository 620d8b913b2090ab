"""Starting and ending a live run: run_live checks its inputs, warms the runtime up, opens the
sources, starts the sinks and the stage threads (rpol_edge/live/stages.py), and on any ending
closes every sink and source and returns the run's summary, all under the signal handlers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

import numpy as np

from rpol_edge.core.prepare import describe
from rpol_edge.live.outputs import Sink
from rpol_edge.live.signals import Interrupted, RunSignals
from rpol_edge.live.sources import Backoff, Source, SourceError, open_source
from rpol_edge.live.stages import Progress, StageRun
from rpol_edge.live.stream import Stream, StreamPolicy
from rpol_edge.live.summary import RunSummary, run_summary
from rpol_edge.runtimes import Runtime, infer_all

log = logging.getLogger("rpol_edge.live")

RECONNECT_BACKOFF = Backoff(first=0.5, factor=2.0, cap=10.0)

BATCH_WAIT_S = 0.005
"""How long a batch waits for the other streams' frames after its first one is ready."""


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
    sources = _checked_sources(runtime, source)
    policy = StreamPolicy(max_frames, open_timeout, max_reconnects, backoff, queue_size, realtime)
    run = StageRun(runtime, sources, outputs, policy, progress, min_area, batch_wait, boxes)
    workers, captures = run.threads()
    started: list[Sink] = []
    close_errors: list[BaseException] = []
    with RunSignals(run) as signals:
        try:
            _start(run, signals, open_timeout, started, (*workers, *captures))
            run.output()
        except Interrupted:
            pass  # the handler recorded why; end like any other stop, with closed outputs
        except BaseException as exc:
            run.request_stop("interrupted" if isinstance(exc, KeyboardInterrupt) else "error")
            raise
        finally:
            signals.phase = "closing"
            close_errors = _shut_down(run, started, sources, workers, captures, join_timeout)
        summary = _finish(run, close_errors, report)
    return summary


def _checked_sources(runtime: Runtime, source: Source | Sequence[Source]) -> list[Source]:
    if runtime.meta.n_heads != 1:
        raise ValueError("run needs a class-agnostic model (a class-wise fit localizes a known class)")
    sources = [source] if isinstance(source, Source) else list(source)
    if not sources:
        raise ValueError("run needs at least one source")
    return sources


def _start(
    run: StageRun,
    signals: RunSignals,
    open_timeout: float,
    started: list[Sink],
    threads: Sequence[threading.Thread],
) -> None:
    """Warm up, open the sources, start the sinks (each one appended to ``started`` as it starts,
    so a failure closes those already started) and the stage threads."""
    # Warm up first: frames a stream buffers while the first calls compile would reach
    # the pipeline in a burst, and newest-wins would drop them.
    _warm_up(run.runtime, run.max_batch)
    for stream in _open_all(run.streams, open_timeout):
        stream.start_in_outage()
    signals.phase = "running"
    for stream in run.streams:
        log.info("source %d: %s", stream.index, stream.source.describe())
    log.info("pre-processing: %s", describe(run.runtime.meta))
    for sink in run.sinks:
        live, fps = _timeline(run.streams, sink.stream)
        sink.start(live, fps)
        started.append(sink)
    for t in threads:
        t.start()


def _shut_down(
    run: StageRun,
    started: Sequence[Sink],
    sources: Sequence[Source],
    workers: Sequence[threading.Thread],
    captures: Sequence[threading.Thread],
    join_timeout: float,
) -> list[BaseException]:
    """Stop every thread, close the started sinks first and the sources last; the sinks' errors."""
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
            log.warning("%s: capture did not stop within %g s; leaving it", stream.source.uri, join_timeout)
    return close_errors


def _finish(
    run: StageRun, close_errors: Sequence[BaseException], report: Callable[[RunSummary], None] | None
) -> RunSummary:
    """Re-raise a stage's or a sink's error, else summarize the run and hand it to ``report``."""
    if run.errors:
        raise run.errors[0]
    if close_errors:
        raise close_errors[0]
    reason = run.stop_reason or run.end_reason()
    used = f"{run.runtime.description}, pre-processing {describe(run.runtime.meta)}"
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
