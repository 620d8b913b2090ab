"""Decoding and pre-processing in worker processes, shared by fit and eval.

A file that fails to decode becomes a counted skip (with its reason kept for the summary); it never
stops the run.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

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


class _Frames(Dataset[Item]):
    def __init__(self, samples: Sequence[Sample], resize: int, crop: int) -> None:
        self.samples = samples
        self.resize = resize
        self.crop = crop

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Item:
        try:
            image = load_rgb(self.samples[i].path)
        except ImageError as exc:
            return i, None, None, str(exc)
        frame, t = resize_crop(image, self.resize, self.crop)
        return i, frame, t, ""


def _collate(items: list[Item]) -> list[Item]:
    """Keep items as they are: failed decodes (None) must survive batching to be counted."""
    return items


def iterate_batches(
    samples: Sequence[Sample], resize: int, crop: int, batch_size: int = 16, workers: int = 2
) -> Iterator[Batch]:
    """Yield pre-processed batches in data-set order; failed files ride along in ``skipped``."""
    loader = DataLoader(
        _Frames(samples, resize, crop),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_collate,
        persistent_workers=False,
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
