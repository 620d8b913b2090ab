"""Run counters and the end-of-run summary (printed, and written as JSON with ``--summary``).

Each counter is written by exactly one pipeline thread (capture counts drops, corrupt frames and
reconnects; output counts processed frames), so plain ints suffice; the summary is built after
the threads have stopped.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rpol_edge.live.frames import STAGES, FrameResult


@dataclass(frozen=True)
class RunSummary:
    source: str
    runtime: str
    stop_reason: str
    """end of stream, max frames, interrupted, SIGTERM, window closed, source lost, or error."""
    frames: int
    """Frames processed and written to every output."""
    captured: int
    dropped_frames: int
    """Live sources: frames replaced by a newer one before inference could take them."""
    corrupt_frames: int
    stream_drops: int
    reconnects: int
    """Successful reconnects after a drop."""
    reconnect_attempts: int
    elapsed_s: float
    mean_fps: float
    """Processed frames / seconds from the first read to the last output."""
    latency_ms: dict[str, float]
    """End-to-end (read start to output written): p50, p95, max."""
    stage_ms: dict[str, dict[str, float]]
    """Per stage: mean, p50, p95."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class RunStats:
    captured: int = 0
    dropped_frames: int = 0
    corrupt_frames: int = 0
    stream_drops: int = 0
    reconnects: int = 0
    reconnect_attempts: int = 0
    frames: int = 0
    first_read: float | None = None
    last_output: float | None = None
    latencies: list[float] = field(default_factory=list)
    stage_samples: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})

    def record(self, r: FrameResult) -> None:
        self.frames += 1
        self.last_output = time.perf_counter()
        self.latencies.append(r.latency_ms)
        for s in STAGES:
            self.stage_samples[s].append(r.frame.ms.get(s, 0.0))

    def summary(self, source: str, runtime: str, stop_reason: str) -> RunSummary:
        elapsed = 0.0
        if self.first_read is not None and self.last_output is not None:
            elapsed = max(self.last_output - self.first_read, 1e-9)
        return RunSummary(
            source=source,
            runtime=runtime,
            stop_reason=stop_reason,
            frames=self.frames,
            captured=self.captured,
            dropped_frames=self.dropped_frames,
            corrupt_frames=self.corrupt_frames,
            stream_drops=self.stream_drops,
            reconnects=self.reconnects,
            reconnect_attempts=self.reconnect_attempts,
            elapsed_s=round(elapsed, 3),
            mean_fps=round(self.frames / elapsed, 3) if elapsed else 0.0,
            latency_ms=_percentiles(self.latencies, ("p50", "p95", "max")),
            stage_ms={s: _percentiles(v, ("mean", "p50", "p95")) for s, v in self.stage_samples.items()},
        )


def _percentiles(values: list[float], which: tuple[str, ...]) -> dict[str, float]:
    if not values:
        return {k: 0.0 for k in which}
    a = np.asarray(values, dtype=np.float64)
    fns = {
        "mean": lambda: a.mean(),
        "p50": lambda: np.percentile(a, 50),
        "p95": lambda: np.percentile(a, 95),
        "max": lambda: a.max(),
    }
    return {k: round(float(fns[k]()), 3) for k in which}
