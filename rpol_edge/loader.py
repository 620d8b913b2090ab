"""Decoding and pre-processing in worker processes, shared by fit and eval.

A file that fails to decode becomes a counted skip (with its reason kept for the summary); it never
stops the run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader, Dataset

from rpol_edge.data import Sample
from rpol_edge.geometry import CropTransform, resize_crop
from rpol_edge.images import ImageError, load_rgb

Item = tuple[int, np.ndarray | None, CropTransform | None, str]
"""(index in the sample list, frame or None, transform or None, error message or "")."""


@dataclass
class Batch:
    frames: np.ndarray  # (n, K, K, 3) uint8
    samples: list[Sample]
    transforms: list[CropTransform]
    skipped: list[tuple[Sample, str]] = field(default_factory=list)


class PathTable:
    """File paths packed into one byte buffer plus offsets.

    Forked decoding workers that read a list of Python objects write to each object's reference
    count and so copy its memory page: their memory would grow with the data set (1.28 M samples
    on ImageNet). Two numpy buffers have no per-item objects, so the pages stay shared.
    """

    def __init__(self, paths: Sequence[str]) -> None:
        encoded = [p.encode("utf-8", "surrogateescape") for p in paths]
        self.blob = np.frombuffer(b"".join(encoded), np.uint8)
        self.ends = np.cumsum([len(e) for e in encoded], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.ends)

    def __getitem__(self, i: int) -> str:
        start = int(self.ends[i - 1]) if i > 0 else 0
        return self.blob[start : int(self.ends[i])].tobytes().decode("utf-8", "surrogateescape")


class _Frames(Dataset[Item]):
    def __init__(self, samples: Sequence[Sample], resize: int, crop: int) -> None:
        self.paths = PathTable([str(s.path) for s in samples])
        self.resize = resize
        self.crop = crop

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Item:
        try:
            image = load_rgb(Path(self.paths[i]))
        except ImageError as exc:
            return i, None, None, str(exc)
        frame, t = resize_crop(image, self.resize, self.crop)
        return i, frame, t, ""


def _collate(items: list[Item]) -> list[Item]:
    """Keep items as they are: failed decodes (None) must survive batching to be counted."""
    return items


def iterate_batches(
    samples: Sequence[Sample],
    resize: int,
    crop: int,
    batch_size: int = 16,
    workers: int = 2,
    worker_init: Callable[[int], None] | None = None,
) -> Iterator[Batch]:
    """Yield pre-processed batches in data-set order; failed files ride along in ``skipped``.

    With ``workers`` > 0, decoding runs in that many processes, two batches ahead each, while the
    caller computes on the current batch; memory is bounded by those batches, not the data set.
    """
    loader = DataLoader(
        _Frames(samples, resize, crop),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_collate,
        persistent_workers=False,
        worker_init_fn=worker_init,
    )
    for items in loader:
        ok = [(i, f, t) for i, f, t, _ in items if f is not None]
        frames = np.stack([f for _, f, _ in ok]) if ok else np.zeros((0, crop, crop, 3), np.uint8)
        yield Batch(
            frames=frames,
            samples=[samples[i] for i, _, _ in ok],
            transforms=[t for _, _, t in ok],  # type: ignore[misc]
            skipped=[(samples[i], err) for i, f, _, err in items if f is None],
        )
