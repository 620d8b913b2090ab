"""The end-of-run summary of `rpol-edge run` as tables: the run's totals, then one row per stream."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

if TYPE_CHECKING:
    from rich.console import Console

    from rpol_edge.live.summary import RunSummary


def print_summary(console: Console, s: RunSummary) -> None:
    table = Table("summary", "value")
    rows: dict[str, object] = {
        "source": s.source,
        "runtime": s.runtime,
        "stopped by": s.stop_reason,
        "frames": s.frames,
        "dropped frames": s.dropped_frames,
        "corrupt frames": s.corrupt_frames,
        "stream drops": s.stream_drops,
        "reconnects": f"{s.reconnects} ({s.reconnect_attempts} attempts)",
        "mean FPS": f"{s.mean_fps:.2f}",
        "latency p50 / p95 ms": f"{s.latency_ms['p50']:.1f} / {s.latency_ms['p95']:.1f}",
    }
    if len(s.streams) > 1:
        rows["source"] = f"{len(s.streams)} streams (below)"
        rows["mean FPS"] = f"{s.mean_fps:.2f} in total"
        rows["latency p50 / p95 ms"] = (
            f"{s.latency_ms['p50']:.1f} / {s.latency_ms['p95']:.1f} (p99 {s.latency_ms['p99']:.1f})"
        )
        rows["frames per inference"] = f"{s.batch_size['mean']:.2f} mean, {s.batch_size['max']:.0f} max"
    rows.update({f"{k} ms (mean)": f"{v['mean']:.1f}" for k, v in s.stage_ms.items()})
    for k, v in rows.items():
        table.add_row(k, str(v))
    console.print(table)
    if len(s.streams) > 1:
        console.print(_streams_table(s))


def _streams_table(s: RunSummary) -> Table:
    """One row per stream: what it gave, lost and took (the run's totals are above)."""
    table = Table(
        "#", "source", "ended by", "frames", "dropped", "drops", "reconnects", "FPS", "p50 / p95 ms"
    )
    for p in s.streams:
        table.add_row(
            str(p.stream),
            p.source,
            p.ended_by,
            str(p.frames),
            str(p.dropped_frames),
            str(p.stream_drops),
            f"{p.reconnects} ({p.reconnect_attempts})",
            f"{p.mean_fps:.2f}",
            f"{p.latency_ms['p50']:.1f} / {p.latency_ms['p95']:.1f}",
        )
    return table
