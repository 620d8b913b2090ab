"""Where refit's frames come from: a data set (the readers and decoding workers `fit` uses) or any
source `run` takes (camera, RTSP, MJPEG, video file, folder), sampled over time.

Each yields `Chunk`s of model-input frames (the model's own input: K x K RGB crops made on the
host, or the raw W x H frames a ``--frame-size`` graph resizes itself), the count of items they
consumed (for the resume position) and the unreadable ones with a reason.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from rpol_edge.core.metadata import ModelMeta
from rpol_edge.core.prepare import FrameSizeError, prepare
from rpol_edge.data import Sample
from rpol_edge.data.images import ImageError, load_rgb
from rpol_edge.data.loader import iterate_batches

TIME_SLACK_S = 1e-3
"""--every compares timestamps with this slack: a decoder's positions (milliseconds, rounded) would
otherwise drop a frame exactly ``every`` seconds later."""


@dataclass
class Chunk:
    frames: np.ndarray
    """(n, *meta.input_shape()) uint8: what the model's input takes."""
    consumed: int
    """Items this chunk used up (frames kept plus skipped), for the resume position."""
    skipped: list[tuple[Sample, str]] = field(default_factory=list)


def data_chunks(samples: Sequence[Sample], meta: ModelMeta, batch_size: int, workers: int) -> Iterator[Chunk]:
    """A data set's images as the model takes them. A K x K model gets the loader's resize and
    crop (the same frames `fit` and `eval` see); a raw-frame model gets each image whole, and an
    image of another size is a counted skip, as `run` refuses such a source."""
    if not meta.raw_frames:
        for b in iterate_batches(samples, meta.resize_size, meta.input_size, batch_size, workers):
            yield Chunk(b.frames, len(b.frames) + len(b.skipped), list(b.skipped))
        return
    for start in range(0, len(samples), batch_size):
        kept: list[np.ndarray] = []
        skipped: list[tuple[Sample, str]] = []
        for s in samples[start : start + batch_size]:
            try:
                kept.append(prepare(load_rgb(s.path), meta, is_rgb=True)[0])
            except (ImageError, FrameSizeError) as exc:
                skipped.append((s, str(exc)))
        frames = np.stack(kept) if kept else np.zeros((0, *meta.input_shape()), np.uint8)
        yield Chunk(frames, len(kept) + len(skipped), skipped)


@dataclass
class SourceCount:
    """What a source run met besides the kept frames (reported, never fatal)."""

    corrupt: int = 0
    reconnects: int = 0


def source_chunks(
    uri: str,
    meta: ModelMeta,
    frames: int,
    every: float,
    batch_size: int,
    skip: int = 0,
    open_timeout: float = 10.0,
    counts: SourceCount | None = None,
) -> Iterator[Chunk]:
    """Up to ``frames`` frames of a source, one every ``every`` seconds (0: every frame), in
    batches. Time is the video's own clock for files (so a video gives the same frames at any
    decoding speed) and arrival time for live sources. ``skip``: frames a resumed run already
    added; a file or folder is read again from its start and those are passed over (the same
    frames follow), a live source just goes on."""
    from rpol_edge.live.source_registry import parse_source
    from rpol_edge.live.sources import CorruptFrame, StreamDropped, open_source

    counts = counts if counts is not None else SourceCount()
    source = parse_source(uri)
    replay = not source.is_live
    seen = 0  # frames sampled so far, the skipped ones of a replayed file included
    wanted = frames - (0 if replay else skip)
    last: float | None = None
    batch: list[np.ndarray] = []
    open_source(source, open_timeout)
    try:
        while seen < (wanted if not replay else frames):
            try:
                got = source.read()
            except CorruptFrame:
                counts.corrupt += 1
                continue
            except StreamDropped:
                if not source.can_reconnect:
                    break
                counts.reconnects += 1
                source.close()
                open_source(source, open_timeout)
                continue
            if got is None:
                break
            t = got.position_s if got.position_s is not None else (got.arrived or time.perf_counter())
            if last is not None and t - last < every - TIME_SLACK_S:
                continue
            last = t
            seen += 1
            if replay and seen <= skip:
                continue
            batch.append(prepare(got.image, meta, got.is_rgb)[0])  # FrameSizeError: one line
            if len(batch) >= batch_size:
                yield Chunk(np.stack(batch), len(batch))
                batch = []
        if batch:
            yield Chunk(np.stack(batch), len(batch))
    finally:
        source.close()
