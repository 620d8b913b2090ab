"""Where refit's frames come from: a data set (the readers and decoding workers `fit` uses) or any
source `run` takes (camera, RTSP, MJPEG, video file, folder), sampled over time by the sampler
`fit --source` reads too (`rpol_edge.live.sampling`).

Both yield `Chunk`s of model-input frames (the model's own input: K x K RGB crops made on the
host, or the raw W x H frames a ``--frame-size`` graph resizes itself), the count of items they
consumed (for the resume position) and the unreadable ones with a reason.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from rpol_edge.core.metadata import ModelMeta
from rpol_edge.core.prepare import FrameSizeError, prepare
from rpol_edge.data import Sample
from rpol_edge.data.images import ImageError, load_rgb
from rpol_edge.data.loader import iterate_batches
from rpol_edge.live.sampling import Chunk, Framer


def model_framer(meta: ModelMeta) -> Framer:
    """A source's frames as the model's input takes them (`prepare`: host resize and crop, or the
    raw frame a ``--frame-size`` graph takes; a frame of another size is a one-line error)."""

    def frame(image: np.ndarray, is_rgb: bool) -> np.ndarray:
        return prepare(image, meta, is_rgb)[0]

    return frame


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
