"""A bench row's numbers: per-stage quantiles, rounds pooled across processes, paired ratios.

Rounds of different rows run side by side (interleaved), so speed-ups are medians of per-round
ratios: the machine's drift between rounds cancels in each ratio.
"""

from __future__ import annotations

import platform
import resource
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import numpy as np

from rpol_edge.bench.spec import QUANTILES, STAGES


def accuracy_keys() -> tuple[str, ...]:
    """The accuracies a row reports, in percent: the box-accuracy record's float fields less its
    thresholds (``best_threshold``, ``operating_threshold``) and the oracles (what the maps allow
    with labels, `eval`'s concern, not a runtime's), in the record's order."""
    from rpol_edge.evaluate.metrics import BoxAccuracyResult  # not on the timing path

    fields = get_type_hints(BoxAccuracyResult)
    return tuple(
        key
        for key, kind in fields.items()
        if kind is float and not key.endswith("threshold") and not key.startswith("oracle_")
    )


@dataclass
class Row:
    label: str
    kind: str
    runtime: str
    precision: str
    batch: int
    device: str = ""
    available: bool = True
    reason: str = ""
    ms: dict[str, dict[str, float]] = field(default_factory=dict)
    """stage (pre, infer, post, total) -> {p50, p90, p99} in ms per batch."""
    throughput: float = 0.0
    """Images per second at the median total latency."""
    artifact: str = ""
    artifact_mb: float = 0.0
    """What the row needs on disk or in memory: the model file, plus for a .rpol the backbone
    weights it builds (a .rpol itself holds only w* and its sums)."""
    peak_rss_mb: float = 0.0
    peak_cuda_mb: float | None = None
    iters: int = 0
    speedup_vs_reference: float | None = None
    overhead_vs_backbone: float | None = None
    speedup_vs_first: float | None = None
    """Speed-up over the first given spec's row at the same batch (e.g. INT8 over FP32)."""
    speedup_vs_first_range: list[float] = field(default_factory=list)
    """[min, max] of the per-round speed-ups over the first spec when ``rounds`` > 1."""
    rounds: int = 1
    round_total_p50: list[float] = field(default_factory=list)
    """Total p50 (ms) of each round's process, in round order."""
    accuracy: dict[str, float] = field(default_factory=dict)
    parity: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _quantiles(values: Sequence[float]) -> dict[str, float]:
    return {f"p{q}": round(float(np.percentile(values, q)) * 1000.0, 3) for q in QUANTILES}


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: Linux keeps ru_maxrss across
    exec, so a spawned child would report its parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024.0, 1)
    except OSError:
        pass
    scale = 1024.0 if platform.system() == "Linux" else 2**20  # KiB on Linux, bytes on macOS
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale, 1)


SAMPLES = "_samples"
"""Key of a child's raw per-stage times (s), pooled over rounds by the parent, never recorded."""


def summarize(times: dict[str, list[float]], batch: int) -> tuple[dict[str, dict[str, float]], float]:
    """Per-stage seconds -> (stage and total quantiles in ms, images/s at the median total)."""
    total = [a + b + c for a, b, c in zip(times["pre"], times["infer"], times["post"], strict=True)]
    ms = {s: _quantiles(v) for s, v in times.items()}
    ms["total"] = _quantiles(total)
    return ms, round(batch / float(np.median(total)), 2)


def interleaved(items: Sequence[Any], round_index: int) -> list[Any]:
    """``items`` in order on even rounds, reversed on odd ones: a drifting machine (or a warm
    cache) then favours no position."""
    return list(items)[::-1] if round_index % 2 else list(items)


def merge_rounds(parts: list[dict[str, Any]]) -> Row:
    """One Row from the same (row, batch) timed in several processes: quantiles of the pooled
    samples, each round's own p50 kept (the speed-ups pair rounds, which ran side by side), peak
    memory the highest seen, accuracy from the round that evaluated."""
    bad = next((d for d in parts if not d["available"]), None)
    if bad is not None:
        return Row(**{k: v for k, v in bad.items() if k != SAMPLES})
    first = {k: v for k, v in parts[0].items() if k != SAMPLES}
    row = Row(**first)
    if len(parts) == 1:
        return row
    pooled: dict[str, list[float]] = {s: [] for s in STAGES}
    for d in parts:
        for s in STAGES:
            pooled[s] += d[SAMPLES][s]
    row.ms, row.throughput = summarize(pooled, row.batch)
    row.iters = sum(int(d["iters"]) for d in parts)
    row.rounds = len(parts)
    row.round_total_p50 = [float(d["ms"]["total"]["p50"]) for d in parts]
    row.peak_rss_mb = max(float(d["peak_rss_mb"]) for d in parts)
    cuda = [d["peak_cuda_mb"] for d in parts if d.get("peak_cuda_mb") is not None]
    row.peak_cuda_mb = max(cuda) if cuda else None
    row.accuracy = next((d["accuracy"] for d in parts if d["accuracy"]), {})
    return row


def paired_ratio(base: Sequence[float], other: Sequence[float]) -> tuple[float, list[float]] | None:
    """base[k] / other[k] per round k (rounds of the same k ran side by side): their median and
    [min, max]; None without a usable pair. Callers pass only rounds both sides have."""
    ratios = [b / o for b, o in zip(base, other, strict=True) if o > 0]
    if not ratios:
        return None
    return round(float(np.median(ratios)), 3), [round(min(ratios), 3), round(max(ratios), 3)]


def paired_speedup(base: Row, row: Row) -> tuple[float, list[float]]:
    """Median over rounds of base/row total p50, and [min, max] of the per-round ratios when there
    is more than one round (else the ratio of the p50s and no range)."""
    n = min(len(base.round_total_p50), len(row.round_total_p50))
    paired = paired_ratio(base.round_total_p50[:n], row.round_total_p50[:n]) if n >= 2 else None
    if paired is None:
        return round(base.ms["total"]["p50"] / row.ms["total"]["p50"], 3), []
    return paired
