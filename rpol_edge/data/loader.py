"""Decoding and pre-processing in worker processes, shared by fit, eval and compare.

A file that fails to decode becomes a counted skip (with its reason kept for the summary); it never
stops the run.

Plain ``concurrent.futures`` worker processes, not torch's DataLoader, so that evaluating an ONNX
file or an engine never imports torch. Like the DataLoader it replaces, each worker builds whole
batches, at most two per worker are in flight (memory stays bounded however slow inference is),
and batches come back in data-set order.
"""

from __future__ import annotations

import signal
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rpol_edge.core.geometry import CropTransform, resize_crop
from rpol_edge.data.images import ImageError, load_rgb
from rpol_edge.data.samples import Sample

Item = tuple[int, np.ndarray | None, CropTransform | None, str]
"""(index in the sample list, frame or None, transform or None, error message or "")."""

PREFETCH = 2
"""Batches in flight per worker process (the DataLoader's default prefetch factor)."""


@dataclass
class Batch:
    frames: np.ndarray  # (n, K, K, 3) uint8
    samples: list[Sample]
    transforms: list[CropTransform]
    skipped: list[tuple[Sample, str]] = field(default_factory=list)


def _decode(jobs: list[tuple[int, Path]], resize: int, crop: int) -> list[Item]:
    """Decode and pre-process one batch; runs in a worker process (or inline with no workers)."""
    items: list[Item] = []
    for i, path in jobs:
        try:
            image = load_rgb(path)
        except ImageError as exc:
            items.append((i, None, None, str(exc)))
            continue
        frame, t = resize_crop(image, resize, crop)
        items.append((i, frame, t, ""))
    return items


def _worker_init(extra: Callable[[int], None] | None = None) -> None:
    """Ctrl-C reaches the whole process group: the main process handles it (and stops the pool);
    a worker that raised too would print its own traceback over the one-line message."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if extra is not None:
        extra(0)


def _batch(samples: Sequence[Sample], items: list[Item], crop: int) -> Batch:
    ok = [(i, f, t) for i, f, t, _ in items if f is not None]
    frames = np.stack([f for _, f, _ in ok]) if ok else np.zeros((0, crop, crop, 3), np.uint8)
    return Batch(
        frames=frames,
        samples=[samples[i] for i, _, _ in ok],
        transforms=[t for _, _, t in ok],  # type: ignore[misc]
        skipped=[(samples[i], err) for i, f, _, err in items if f is None],
    )


def iterate_batches(
    samples: Sequence[Sample],
    resize: int,
    crop: int,
    batch_size: int = 16,
    workers: int = 2,
    worker_init: Callable[[int], None] | None = None,
) -> Iterator[Batch]:
    """Yield pre-processed batches in data-set order; failed files ride along in ``skipped``.

    Each job carries its own paths, so worker memory does not grow with the data set; at most
    ``workers * PREFETCH`` batches are in flight. ``worker_init`` runs once in each worker (the fit
    passes one that leaves SIGTERM to the main process while it checkpoints)."""
    jobs = [
        [(i, samples[i].path) for i in range(start, min(start + batch_size, len(samples)))]
        for start in range(0, len(samples), batch_size)
    ]
    if workers <= 0:
        for chunk in jobs:
            yield _batch(samples, _decode(chunk, resize, crop), crop)
        return
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_worker_init, initargs=(worker_init,))
    pending: deque[Future[list[Item]]] = deque()
    submitted = 0
    try:
        while submitted < len(jobs) or pending:
            while submitted < len(jobs) and len(pending) < workers * PREFETCH:
                pending.append(pool.submit(_decode, jobs[submitted], resize, crop))
                submitted += 1
            yield _batch(samples, pending.popleft().result(), crop)
    finally:
        # An early stop (error, Ctrl-C, a consumer that breaks off) drops the queued batches.
        pool.shutdown(wait=True, cancel_futures=True)
