"""Bench rows as a markdown table, a plot and a JSON record (with the machine and the command)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rpol_edge.bench.runner import BenchConfig, machine_record
from rpol_edge.bench.spec import STAGES
from rpol_edge.bench.stats import Row, accuracy_keys


def _fmt(v: float | None, spec: str = ".2f", suffix: str = "") -> str:
    return "" if v is None else f"{v:{spec}}{suffix}"


COLUMNS = (
    "row", "runtime", "prec", "batch", "pre p50", "infer p50", "infer p90", "infer p99", "post p50",
    "total p50", "img/s", "vs ref", "vs 1st", "vs backbone", "MB", "peak MB",
)  # fmt: skip


def _vs_first(r: Row) -> str:
    text = _fmt(r.speedup_vs_first, ".2f", "x")
    if r.speedup_vs_first_range:
        lo, hi = r.speedup_vs_first_range
        text += f" ({lo:.2f}-{hi:.2f})"
    return text


def table_rows(rows: list[Row]) -> list[list[str]]:
    out = []
    for r in rows:
        if not r.available:
            out.append([r.label, r.runtime, r.precision, str(r.batch), f"n/a: {r.reason}"] + [""] * 11)
            continue
        peak = r.peak_cuda_mb if r.peak_cuda_mb is not None else r.peak_rss_mb
        out.append(
            [
                r.label, r.runtime, r.precision, str(r.batch),
                _fmt(r.ms["pre"]["p50"]), _fmt(r.ms["infer"]["p50"]), _fmt(r.ms["infer"]["p90"]),
                _fmt(r.ms["infer"]["p99"]), _fmt(r.ms["post"]["p50"]), _fmt(r.ms["total"]["p50"]),
                _fmt(r.throughput, ".1f"), _fmt(r.speedup_vs_reference, ".2f", "x"), _vs_first(r),
                _fmt(r.overhead_vs_backbone, ".2f", "x"), _fmt(r.artifact_mb, ".2f"),
                f"{peak:.0f}" + (" cuda" if r.peak_cuda_mb is not None else " rss"),
            ]
        )  # fmt: skip
    return out


def accuracy_rows(rows: list[Row]) -> list[list[str]]:
    out = []
    for r in rows:
        if r.accuracy:
            a, p = r.accuracy, r.parity
            out.append(
                [
                    r.label, str(r.batch), *(_fmt(a.get(key)) for key in accuracy_keys()),
                    _fmt(p.get("max_abs_score"), ".2e") if p else "",
                    f"{int(p['boxes_identical'])}/{int(p['n'])}" if p else "",
                    f"{int(p['boxes_iou_090'])}/{int(p['n'])}" if p else "",
                ]
            )  # fmt: skip
    return out


ACC_COLUMNS = (
    "row", "batch", "GT-known Loc", "MaxBoxAcc", "MaxBoxAccV2", "MaxBoxAccV2 (RPOL)", "max |d score|",
    "boxes identical", "IoU>=0.9",
)  # fmt: skip


def to_markdown(rows: list[Row], header: str = "") -> str:
    def md(cols: Sequence[str], body: list[list[str]]) -> str:
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        return "\n".join(lines + ["| " + " | ".join(c.replace("|", "/") for c in b) + " |" for b in body])

    parts = [header] if header else []
    rounds = max((r.rounds for r in rows), default=1)
    parts.append(
        "Latency in ms per batch (p50/p90/p99), throughput in images/s."
        + (
            f" {rounds} rounds, one process per row and round, rows interleaved; quantiles over the"
            " pooled rounds; speed-ups are the median of the per-round ratios (min-max in brackets)."
            if rounds > 1
            else ""
        )
        + "\n"
    )
    parts.append(md(COLUMNS, table_rows(rows)))
    acc = accuracy_rows(rows)
    if acc:
        parts.append("\n" + md(ACC_COLUMNS, acc))
    return "\n".join(parts) + "\n"


def plot(rows: list[Row], path: Path, title: str = "") -> None:
    """Horizontal bars of p50 latency per row, one panel per batch, stacked pre / infer / post."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rpol_edge.core.files import write_bytes_atomic

    batches = sorted({r.batch for r in rows})
    n = max(len([r for r in rows if r.batch == b]) for b in batches)
    fig, axes = plt.subplots(1, len(batches), figsize=(6.5 * len(batches), 0.55 * n + 1.6), squeeze=False)
    colors = {"pre": "#8da0cb", "infer": "#fc8d62", "post": "#66c2a5"}
    for ax, b in zip(axes[0], batches, strict=True):
        sub = [r for r in rows if r.batch == b]
        labels = [f"{r.label} ({r.precision})" if r.precision else r.label for r in sub]
        left = np.zeros(len(sub))
        for stage in STAGES:
            vals = np.array([r.ms[stage]["p50"] if r.available else 0.0 for r in sub])
            ax.barh(labels, vals, left=left, color=colors[stage], label=stage)
            left += vals
        for i, r in enumerate(sub):
            text = f"{left[i]:.1f} ms" if r.available else "n/a"
            ax.text(left[i], i, " " + text, va="center", fontsize=8)
        ax.invert_yaxis()
        ax.set_title(f"batch {b}: p50 latency per batch (ms)")
        ax.set_xlim(0, max(left.max(), 1.0) * 1.25)
        ax.legend(loc="lower right", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())


def record(rows: list[Row], cfg: BenchConfig, command: str) -> dict[str, Any]:
    return {
        "command": command,
        "machine": machine_record(any(r.runtime == "torch" for r in rows)),
        "images": len(cfg.images),
        "iters": cfg.iters,
        "warmup": cfg.warmup,
        "batches": cfg.batches,
        "rounds": cfg.rounds,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rows": [r.to_dict() for r in rows],
    }


def write_json(path: Path, rec: dict[str, Any]) -> None:
    from rpol_edge.core.files import write_text_atomic

    write_text_atomic(path, json.dumps(rec, indent=1))
