"""Latency of any runtime against the PyTorch reference: pre / infer / post in ms, medians and tails.

Frames are real images pre-processed by the shared code; devices are synchronized by the runtimes'
own copy-back (every backend returns host arrays), so wall-clock timing covers the whole call.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rpol_edge.geometry import resize_crop
from rpol_edge.images import load_rgb
from rpol_edge.predict import detect
from rpol_edge.runtimes import Runtime, infer_all


@dataclass(frozen=True)
class BenchRow:
    model: str
    runtime: str
    batch: int
    input_size: int
    pre_ms_p50: float
    infer_ms_p50: float
    infer_ms_p95: float
    post_ms_p50: float
    total_ms_p50: float
    fps: float
    iters: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ms(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)) * 1000.0, 3)


def bench_runtime(
    runtime: Runtime, images: list[Path], batch: int = 1, iters: int = 30, warmup: int = 5
) -> BenchRow:
    """Time ``iters`` batches (after ``warmup``) of real images through pre, infer and post."""
    meta = runtime.meta
    decoded = [load_rgb(p) for p in images]
    pre_t, inf_t, post_t = [], [], []
    for it in range(warmup + iters):
        chunk = [decoded[(it * batch + j) % len(decoded)] for j in range(batch)]
        t0 = time.perf_counter()
        prepped = [resize_crop(img, meta.resize_size, meta.input_size) for img in chunk]
        frames = np.stack([f for f, _ in prepped])
        t1 = time.perf_counter()
        out = infer_all(runtime, frames)
        t2 = time.perf_counter()
        for i, (_, t) in enumerate(prepped):
            detect(out.score[i, 0], out.mask[i, 0], t)
        t3 = time.perf_counter()
        if it >= warmup:
            pre_t.append(t1 - t0)
            inf_t.append(t2 - t1)
            post_t.append(t3 - t2)
    total = [a + b + c for a, b, c in zip(pre_t, inf_t, post_t, strict=True)]
    return BenchRow(
        model="",
        runtime=runtime.description,
        batch=batch,
        input_size=meta.input_size,
        pre_ms_p50=_ms(pre_t, 50),
        infer_ms_p50=_ms(inf_t, 50),
        infer_ms_p95=_ms(inf_t, 95),
        post_ms_p50=_ms(post_t, 50),
        total_ms_p50=_ms(total, 50),
        fps=round(batch / float(np.median(total)), 2),
        iters=iters,
    )
