"""What a fit reads: a data set's samples (the readers and decoding workers) or frames of a source,
both framed the same way (resize S, centre crop K, RGB), and how the model file records it.

The fit sits below the sources (`rpol_edge.live`), so a source reaches it as a `SourceReader`: the
source and its sampling bound by the caller (`rpol_edge.live.sampling.source_reader`, which
``rpol_edge.fit`` and ``rpol-edge fit`` pass), called here with the fit's framing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from rpol_edge.core.prepare import resize_crop_rgb
from rpol_edge.data import DatasetError, Sample, read_dataset, sample_subset
from rpol_edge.data.loader import Batch, iterate_batches
from rpol_edge.fitting.config import FitConfig, without_password

Framer = Callable[[np.ndarray, bool], np.ndarray]
"""(uint8 (H, W, 3) frame, whether it is RGB) -> the fit's K x K RGB crop."""


class SourceReader(Protocol):
    """A source bound to its sampling (`rpol_edge.live.sampling.SourceFrames`)."""

    def __call__(self, framer: Framer, skip: int) -> Iterable[np.ndarray]:
        """Called with the fit's framer and the frames a resumed fit already added: the source's
        next frames, in batches of (n, K, K, 3) uint8."""
        ...

    @property
    def corrupt(self) -> int:
        """Undecodable frames met so far: counted as skipped, as a data set's unreadable images."""
        ...


def fit_samples(cfg: FitConfig, distributed: bool, reader: SourceReader | None) -> list[Sample]:
    """The data set's samples (after ``sampling_ratio``); none for a source, which is read by one
    process through ``reader``."""
    if not cfg.source:
        return sample_subset(
            read_dataset(cfg.kind, Path(cfg.root or "."), cfg.data_split), cfg.sampling_ratio, cfg.seed
        )
    check_source_run(cfg, distributed)
    if reader is None:
        raise ValueError(
            f"source={cfg.source}: the source is opened by rpol_edge.fit or rpol-edge fit "
            "(here pass reader=rpol_edge.live.sampling.source_reader(...))"
        )
    return []


def check_source_run(cfg: FitConfig, distributed: bool) -> None:
    """A source is one stream of frames with no shards: refused under torchrun."""
    if cfg.source and distributed:
        raise ValueError(
            f"source={cfg.source}: a source is read by one process; run this fit without torchrun"
        )


def fit_batches(
    cfg: FitConfig,
    reader: SourceReader | None,
    samples: Sequence[Sample],
    position: int,
    frame: tuple[int, int],
    worker_init: Callable[[int], None] | None,
) -> Iterable[Batch]:
    """The batches from ``position`` on, each image or frame resized to ``frame[0]`` and
    centre-cropped to ``frame[1]``: the data set's decoded by the workers, or the source's."""
    resize, crop = frame
    if reader is None or not cfg.source:
        return iterate_batches(samples[position:], resize, crop, cfg.batch_size, cfg.workers, worker_init)

    def framed(image: np.ndarray, is_rgb: bool) -> np.ndarray:
        return resize_crop_rgb(image, resize, crop, is_rgb)[0]

    return (Batch(frames, [], []) for frames in reader(framed, position))


def nothing_read(cfg: FitConfig, n_samples: int, skipped: list[tuple[Sample, str]]) -> DatasetError:
    """The error of a fit that read no image at all, naming the first reason."""
    why = skipped[0][1] if skipped else ""
    if cfg.source:
        return DatasetError(
            f"{cfg.source}: no frame could be read ({why or 'the source gave no decodable frame'})"
        )
    return DatasetError(f"none of the {n_samples} images could be read ({why})")


def recorded_root(cfg: FitConfig) -> str:
    """``fit_root`` as the model file records it: the data set's folder, absolute; or the source,
    a local path made absolute and a URL without its password."""
    if not cfg.source:
        return str(Path(cfg.root or ".").expanduser().resolve())
    if "://" not in cfg.source:
        return os.path.abspath(os.path.expanduser(cfg.source))
    return without_password(cfg.source)
