"""Data-set readers: metadata in, a list of :class:`Sample` out.

Readers only read annotation and split files (and at most list a folder or
check that a file exists); they never decode images. Decoding happens later,
in workers, through :func:`rpol_edge.images.load_rgb`, so a reader stays fast
on 50k-image sets and a bad image costs one sample, not the whole run.

Box convention for every reader: ``(M, 4)`` float64 rows ``x0, y0, x1, y1`` in
0-based, inclusive pixel coordinates of the original (stored) image, i.e. the
box covers columns ``x0..x1`` and its width is ``x1 - x0 + 1`` (the IoU
convention in METHOD.md). Readers do not clip to the image: they do not know
its size without decoding it, and the evaluation code clips after resizing, as
the reference does.
"""

from rpol_edge.data.datasets import READERS, read_dataset
from rpol_edge.data.samples import DatasetError, Sample, sample_list_sha256, sample_subset

__all__ = [
    "READERS",
    "DatasetError",
    "Sample",
    "read_dataset",
    "sample_list_sha256",
    "sample_subset",
]
