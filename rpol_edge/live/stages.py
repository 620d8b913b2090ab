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
and a RunSummary is returned, with the totals and one part per stream. This module holds the
threads; run_live (rpol_edge/live/launch.py) starts them and ends the run.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from rpol_edge.live.batching import Batcher
from rpol_edge.live.frames import FrameResult
from rpol_edge.live.handoff import POLL_S, LatestSlot, put_until_stopped
from rpol_edge.live.outputs import Sink
from rpol_edge.live.sources import Source
from rpol_edge.live.stream import Stream, StreamPolicy, Work
from rpol_edge.live.summary import RunStats
from rpol_edge.results.detection import box_mode, detect, others, peak_of
from rpol_edge.results.overlay import render
from rpol_edge.runtimes import Runtime, infer_all

log = logging.getLogger("rpol_edge.live")


Progress = Callable[[int, int | None], None]
"""Called after each output frame with (frames done, total or None for live sources)."""


Batch = list[Work]
Channel = LatestSlot[Batch] | queue.Queue[Batch]


class StageRun:
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
