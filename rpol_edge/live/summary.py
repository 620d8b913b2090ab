"""Run counters and the end-of-run summary (printed, and written as JSON with ``--summary``).

Each counter is written by exactly one pipeline thread (capture counts corrupt frames and
reconnects; every stage counts, under its own key of ``handoff_drops``, the items it replaced
before the next stage took them; output counts processed frames), so plain ints suffice; the
summary is built after the threads have stopped.

Memory stays constant however long the run: `run` is left on for days on a device with a few GB,
and a list of floats per frame and stage grows by about 0.5 GB a day at 30 FPS. Means are running
sums; percentiles come from a fixed-bin log histogram per series (`LogHistogram`), so they are
still over the whole run, to within half a bin (0.5 %), not over a recent window.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rpol_edge.live.frames import STAGES, FrameResult


@dataclass(frozen=True)
class StreamSummary:
    """One source's share of a run (the run's totals add these up)."""

    stream: int
    """The source's position in the run (0-based, in the order given)."""
    source: str
    ended_by: str
    """end of stream, max frames, source lost, or running (the run was stopped first)."""
    frames: int
    captured: int
    dropped_frames: int
    corrupt_frames: int
    stream_drops: int
    reconnects: int
    reconnect_attempts: int
    mean_fps: float
    """This stream's frames / seconds from its first read to its last output."""
    latency_ms: dict[str, float]


@dataclass(frozen=True)
class RunSummary:
    source: str
    runtime: str
    stop_reason: str
    """end of stream, max frames, interrupted, SIGTERM, window closed, source lost, or error."""
    frames: int
    """Frames processed and written to every output (all streams)."""
    captured: int
    dropped_frames: int
    """Live sources: frames replaced by a newer one at any hand-off between two stages before the
    next stage took them (only the newest is ever shown)."""
    corrupt_frames: int
    stream_drops: int
    """Outages: a working (or newly opened) stream lost; failed reconnects do not add to it."""
    reconnects: int
    """Outages that ended: counted at the first frame after a reopen, not at the reopen."""
    reconnect_attempts: int
    elapsed_s: float
    mean_fps: float
    """Processed frames (all streams) / seconds from the first read to the last output."""
    latency_ms: dict[str, float]
    """End-to-end (read start to output written): p50, p95, p99 (whole run, within 0.5 %), max."""
    stage_ms: dict[str, dict[str, float]]
    """Per stage: mean (exact), p50, p95 (whole run, within 0.5 %)."""
    batch_size: dict[str, float] = field(default_factory=dict)
    """Frames per inference call: mean and max (1 for a single stream)."""
    streams: list[StreamSummary] = field(default_factory=list)
    """Per source, in the order given."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class LogHistogram:
    """Counts of positive values in bins whose edges grow by ``RATIO``: constant memory, any run length.

    Bins span ``LOW``..``HIGH`` ms (1 us to about 28 hours), 1 % wide: about 2,500 int64
    counters (20 KB). A percentile is its bin's geometric centre, within 0.5 % of the exact
    nearest-rank value, clipped to the exact min and max. Values at or below ``LOW`` (a stage
    that did not run: 0) share the first bin. The mean and max are kept exactly.
    """

    LOW = 1e-3
    HIGH = 1e8
    RATIO = 1.01

    def __init__(self) -> None:
        self._log_ratio = math.log(self.RATIO)
        self._bins = math.ceil(math.log(self.HIGH / self.LOW) / self._log_ratio) + 1
        self.counts = np.zeros(self._bins, np.int64)
        self.n = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, value: float) -> None:
        i = 0 if value <= self.LOW else int(math.log(value / self.LOW) / self._log_ratio) + 1
        self.counts[min(i, self._bins - 1)] += 1
        self.n += 1
        self.total += value
        self.min = min(self.min, value)
        self.max = max(self.max, value)

    def percentile(self, q: float) -> float:
        """Nearest-rank ``q``-th percentile (0..100); 0.0 when empty."""
        if self.n == 0:
            return 0.0
        rank = max(1, math.ceil(q / 100.0 * self.n))
        i = int(np.searchsorted(np.cumsum(self.counts), rank))
        centre = self.LOW if i == 0 else self.LOW * self.RATIO ** (i - 0.5)
        return min(max(centre, self.min), self.max)

    def stat(self, name: str) -> float:
        if self.n == 0:
            return 0.0
        if name == "mean":
            return self.total / self.n
        if name == "max":
            return self.max
        return self.percentile(float(name.removeprefix("p")))


@dataclass
class RunStats:
    captured: int = 0
    handoff_drops: dict[str, int] = field(
        default_factory=lambda: {stage: 0 for stage in ("capture", "prepare", "infer", "render")}
    )
    corrupt_frames: int = 0
    first_corrupt: str = ""
    """Why the first corrupt frame was skipped: named when a source gives no frame at all."""
    stream_drops: int = 0
    reconnects: int = 0
    reconnect_attempts: int = 0
    frames: int = 0
    first_read: float | None = None
    last_output: float | None = None
    latency: LogHistogram = field(default_factory=LogHistogram)
    stages: dict[str, LogHistogram] = field(default_factory=lambda: {s: LogHistogram() for s in STAGES})
    ended_by: str = "running"
    """How this stream's capture ended (set by its capture thread)."""

    def record(self, r: FrameResult) -> None:
        self.frames += 1
        self.last_output = time.perf_counter()
        self.latency.add(r.latency_ms)
        for s in STAGES:
            self.stages[s].add(r.frame.ms.get(s, 0.0))

    def mean_fps(self) -> float | None:
        """Frames out per second since the first frame was read: the summary's ``mean_fps``, so
        far (None before two frames are out). The overlay shows this, so frame and summary agree."""
        if self.first_read is None or self.last_output is None or self.frames < 2:
            return None
        return self.frames / max(self.last_output - self.first_read, 1e-9)

    def elapsed(self) -> float:
        if self.first_read is None or self.last_output is None:
            return 0.0
        return max(self.last_output - self.first_read, 1e-9)

    def stream_summary(self, stream: int, source: str) -> StreamSummary:
        elapsed = self.elapsed()
        return StreamSummary(
            stream=stream,
            source=source,
            ended_by=self.ended_by,
            frames=self.frames,
            captured=self.captured,
            dropped_frames=sum(self.handoff_drops.values()),
            corrupt_frames=self.corrupt_frames,
            stream_drops=self.stream_drops,
            reconnects=self.reconnects,
            reconnect_attempts=self.reconnect_attempts,
            mean_fps=round(self.frames / elapsed, 3) if elapsed else 0.0,
            latency_ms=_stats(self.latency, LATENCY_STATS),
        )


LATENCY_STATS = ("p50", "p95", "p99", "max")


def run_summary(
    streams: list[StreamSummary],
    total: RunStats,
    batch_sizes: dict[int, int],
    runtime: str,
    stop_reason: str,
) -> RunSummary:
    """The run's totals (``total`` holds what the output thread recorded for every stream) and
    its per-stream parts; ``batch_sizes`` counts inference calls by their number of frames."""
    elapsed = total.elapsed()
    calls = sum(batch_sizes.values())
    frames_inferred = sum(n * c for n, c in batch_sizes.items())

    def add(name: str) -> int:
        return sum(int(getattr(s, name)) for s in streams)

    return RunSummary(
        source=", ".join(s.source for s in streams),
        runtime=runtime,
        stop_reason=stop_reason,
        frames=total.frames,
        captured=add("captured"),
        dropped_frames=add("dropped_frames"),
        corrupt_frames=add("corrupt_frames"),
        stream_drops=add("stream_drops"),
        reconnects=add("reconnects"),
        reconnect_attempts=add("reconnect_attempts"),
        elapsed_s=round(elapsed, 3),
        mean_fps=round(total.frames / elapsed, 3) if elapsed else 0.0,
        latency_ms=_stats(total.latency, LATENCY_STATS),
        stage_ms={s: _stats(h, ("mean", "p50", "p95")) for s, h in total.stages.items()},
        batch_size={
            "mean": round(frames_inferred / calls, 3) if calls else 0.0,
            "max": float(max(batch_sizes, default=0)),
        },
        streams=streams,
    )


def _stats(h: LogHistogram, which: tuple[str, ...]) -> dict[str, float]:
    return {k: round(h.stat(k), 3) for k in which}
