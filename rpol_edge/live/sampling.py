"""Frames of any source `run` takes (camera, RTSP, MJPEG, video file, folder, glob), sampled over time
for a fit: what ``fit --source`` and ``refit --source`` read.

`source_chunks` yields `Chunk`s of frames made by the caller's framer (the fit's resize and crop, or
an exported model's own input), the count of frames they used up (the resume position), and counts
what the source met on the way (undecodable frames, reconnects) in a `SourceCount`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from rpol_edge.data import DatasetError, Sample
from rpol_edge.live.source_registry import parse_source
from rpol_edge.live.sources import CorruptFrame, Source, SourceError, StreamDropped, open_source

TIME_SLACK_S = 1e-3
"""--every compares timestamps with this slack: a decoder's positions (milliseconds, rounded) would
otherwise drop a frame exactly ``every`` seconds later."""

Framer = Callable[[np.ndarray, bool], np.ndarray]
"""(uint8 (H, W, 3) frame, whether it is RGB) -> the frame as the fit takes it."""


@dataclass
class Chunk:
    frames: np.ndarray
    """(n, ...) uint8: the framer's frames."""
    consumed: int
    """Items this chunk used up (frames kept plus skipped), for the resume position."""
    skipped: list[tuple[Sample, str]] = field(default_factory=list)


@dataclass
class SourceCount:
    """What a source run met besides the kept frames (reported, never fatal)."""

    corrupt: int = 0
    reconnects: int = 0


def source_chunks(
    uri: str | Source,
    framer: Framer,
    frames: int,
    every: float,
    batch_size: int,
    skip: int = 0,
    open_timeout: float = 10.0,
    counts: SourceCount | None = None,
) -> Iterator[Chunk]:
    """Up to ``frames`` frames of a source, one every ``every`` seconds (0: every frame), in
    batches. Time is the video's own clock for files (so a video gives the same frames at any
    decoding speed) and arrival time for live sources. ``uri``: the source's URI or path, or the
    (unopened) source `parse_source` made of it. ``skip``: frames a resumed run already
    added; a file or folder is read again from its start and those are passed over (the same
    frames follow), a live source just goes on. A source that cannot be parsed or opened (again,
    after a drop) ends in a one-line `DatasetError`."""

    counts = counts if counts is not None else SourceCount()
    try:
        yield from _sampled(uri, framer, frames, every, batch_size, skip, open_timeout, counts)
    except SourceError as exc:
        raise DatasetError(str(exc)) from None


def _sampled(
    uri: str | Source,
    framer: Framer,
    frames: int,
    every: float,
    batch_size: int,
    skip: int,
    open_timeout: float,
    counts: SourceCount,
) -> Iterator[Chunk]:
    source = parse_source(uri) if isinstance(uri, str) else uri
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
            batch.append(framer(got.image, got.is_rgb))  # FrameSizeError: one line
            if len(batch) >= batch_size:
                yield Chunk(np.stack(batch), len(batch))
                batch = []
        if batch:
            yield Chunk(np.stack(batch), len(batch))
    finally:
        source.close()


@dataclass
class SourceFrames:
    """`source_chunks` bound to one source, as ``fit --source`` reads it (the fit sits below the
    sources): called with the fit's framer and the frames a resumed fit already added, it yields
    the frames in batches; what the source met on the way is in ``counts``."""

    source: Source
    frames: int
    every: float
    batch_size: int
    open_timeout: float = 10.0
    counts: SourceCount = field(default_factory=SourceCount)

    @property
    def corrupt(self) -> int:
        """Undecodable frames met so far (the model's ``n_skipped``)."""
        return self.counts.corrupt

    def __call__(self, framer: Framer, skip: int) -> Iterator[np.ndarray]:
        for chunk in source_chunks(
            self.source,
            framer,
            self.frames,
            self.every,
            self.batch_size,
            skip,
            self.open_timeout,
            self.counts,
        ):
            yield chunk.frames


def source_reader(
    uri: str, frames: int, every: float, batch_size: int, open_timeout: float = 10.0
) -> SourceFrames:
    """`SourceFrames` of ``uri``, parsed here: a missing file or an unknown scheme is told before
    the backbone loads."""
    try:
        source = parse_source(uri)
    except SourceError as exc:
        raise DatasetError(str(exc)) from None
    return SourceFrames(source, frames, every, batch_size, open_timeout)
