"""The second pass of a ``zscore`` fit: once w* is known, the per-cell statistics of its response.

The fit's sums give w* in one pass; the mean and spread of w*^T f / ||f|| at each cell need w*
first, so the fit frames are read again (a data set or a folder: the rule refuses a live source).
The pass is not checkpointed: a resumed fit restores the first pass and reads this one again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from rpol_edge.core.scene import ResponseSums
from rpol_edge.data import Sample
from rpol_edge.data.loader import iterate_batches
from rpol_edge.modeling.localizer import EPS, Localizer


def response_sums(
    extractor: Localizer,
    w: np.ndarray,
    samples: Sequence[Sample],
    grid: tuple[int, int],
    frame: tuple[int, int],
    batch_size: int,
    workers: int,
    progress: Callable[[int, int], None] | None = None,
) -> ResponseSums:
    """Sum and sum of squares per cell of a = w*^T f / ||f|| over ``samples`` (this rank's shard),
    each image framed as the fit framed it (``frame`` = resize, crop)."""
    device = extractor.pixel_mean.device
    head = torch.from_numpy(np.asarray(w[0], np.float32)).to(device)
    sums = ResponseSums.zeros(grid)
    done = 0
    with torch.inference_mode():
        for batch in iterate_batches(samples, frame[0], frame[1], batch_size, workers):
            done += len(batch.frames) + len(batch.skipped)
            if len(batch.frames):
                f = extractor.features(torch.from_numpy(batch.frames).to(device)).float()
                a = torch.einsum("c,nchw->nhw", head, f) / f.norm(dim=1).clamp_min(EPS)
                sums.add(a.cpu().numpy())
            if progress:
                progress(done, len(samples))
    return sums
