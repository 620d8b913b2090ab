"""What every data-set reader gives: :class:`Sample` records (boxes in original-image pixels,
0-based inclusive), the one error type, and the small parsing helpers the readers share."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class DatasetError(Exception):
    """Metadata is missing or malformed; the one-line message names the file/line."""


@dataclass(frozen=True, eq=False)
class Sample:
    """One image of a data set, as its metadata describes it.

    Attributes:
        image_id: stable identifier, unique within a split (a file stem for VOC,
            the relative image path for CUB, wsolevaluation and folders).
        path: where the image file is expected; not opened by the reader.
        boxes: ``(M, 4)`` float64, 0-based inclusive ``x0, y0, x1, y1`` in the
            original image; ``(0, 4)`` when the image is unlabeled. Stored as a
            read-only copy, so a sample really is immutable.
        label: 0-based class index when the data set has one, else ``None``.
        size: ``(width, height)`` the annotation claims, else ``None``; the
            decoded image is the authority, this is for cross-checks.

    Equality is identity (``eq=False``): comparing arrays field by field has no
    single truth value, so compare the fields you care about explicitly.
    """

    image_id: str
    path: Path
    boxes: np.ndarray
    label: int | None = None
    size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        boxes = np.array(self.boxes, dtype=np.float64)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"{self.image_id}: boxes must have shape (M, 4), got {boxes.shape}")
        boxes.setflags(write=False)
        object.__setattr__(self, "boxes", boxes)


def no_boxes() -> np.ndarray:
    """An empty ``(0, 4)`` float64 box array, for unlabeled samples."""
    return np.zeros((0, 4), dtype=np.float64)


def text_lines(path: Path) -> list[tuple[int, str]]:
    """Non-blank lines of a UTF-8 text file as ``(1-based line number, text)``.

    Surrounding whitespace (including ``\\r`` and a BOM) is stripped. A missing
    or undecodable file raises :class:`DatasetError` naming it.
    """
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise DatasetError(f"{path}: file not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read: {exc}") from exc
    return [(number, line.strip()) for number, line in enumerate(raw.splitlines(), start=1) if line.strip()]


def parse_float(text: str, where: str) -> float:
    """Parse one finite number; ``where`` (``file:line``) goes into the error."""
    try:
        value = float(text)
    except ValueError as exc:
        raise DatasetError(f"{where}: not a number: {text!r}") from exc
    if not np.isfinite(value):
        raise DatasetError(f"{where}: not a finite number: {text!r}")
    return value


def parse_int(text: str, where: str) -> int:
    """Parse one integer; ``where`` (``file:line``) goes into the error."""
    try:
        return int(text)
    except ValueError as exc:
        raise DatasetError(f"{where}: not an integer: {text!r}") from exc


def short_list(names: list[str], limit: int = 20) -> str:
    """``a, b, c, ... (N more)``: split names for an error message, bounded for huge trees."""
    more = len(names) - limit
    return ", ".join(names[:limit]) + (f", ... ({more} more)" if more > 0 else "")


def check_box(x0: float, y0: float, x1: float, y1: float, where: str) -> None:
    """Reject boxes whose far corner lies before the near one."""
    if x1 < x0 or y1 < y0:
        raise DatasetError(f"{where}: box has x1 < x0 or y1 < y0: ({x0:g}, {y0:g}, {x1:g}, {y1:g})")


def sample_list_sha256(samples: Sequence[Sample]) -> str:
    """Hash of the ordered (id, path) list: another split, order or sampling gives another hash
    (a resumed fit and a feature cache both refuse a list that is not theirs)."""
    import hashlib

    h = hashlib.sha256()
    for s in samples:
        h.update(f"{s.image_id}\t{s.path}\n".encode())
    return h.hexdigest()


def sample_subset(samples: list[Sample], ratio: float, seed: int) -> list[Sample]:
    """A seeded random ``ratio`` of ``samples``, kept in data-set order (fit's --sampling-ratio and
    the INT8 calibration set draw the same way)."""
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"sampling ratio {ratio} must be in (0, 1]")
    if ratio == 1.0:
        return samples
    k = max(1, int(round(len(samples) * ratio)))
    idx = sorted(random.Random(seed).sample(range(len(samples)), k))
    return [samples[i] for i in idx]
