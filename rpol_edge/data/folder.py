"""A plain folder of images: enough to fit ``w*``, which needs no labels.

Every file under the folder (recursively) whose suffix is in
:data:`rpol_edge.images.IMAGE_SUFFIXES` (any letter case) is a sample with no
boxes and no label. Hidden files and folders (name starting with ``.``) are
skipped, and folder symlinks are not followed (no cycles, no double counting).

``split``: when ``root/<split>`` is a folder, only that folder is read (so
``root/train`` and ``root/test`` work as splits); otherwise ``split`` is
ignored and the whole of ``root`` is read.

Order is deterministic: sorted by the path relative to the folder read, which
is also the ``image_id`` (POSIX separators), so the same tree gives the same
list on every machine.
"""

from __future__ import annotations

import os
from pathlib import Path

from rpol_edge.data import DatasetError, Sample, no_boxes
from rpol_edge.data.images import is_image_path

__all__ = ["read"]


def read(root: Path, split: str) -> list[Sample]:
    """Image files under ``root/<split>`` if that folder exists, else under ``root``."""
    base = root
    if split and split not in (".", "all") and (root / split).is_dir():
        base = root / split
    relative: list[str] = []

    def on_error(exc: OSError) -> None:
        raise DatasetError(f"{exc.filename}: cannot list folder: {exc.strerror}")

    for directory, subdirs, files in os.walk(base, onerror=on_error):
        subdirs[:] = [name for name in subdirs if not name.startswith(".")]
        here = Path(directory)
        for name in files:
            path = here / name
            if name.startswith(".") or not is_image_path(path):
                continue
            relative.append(path.relative_to(base).as_posix())
    relative.sort()
    return [Sample(image_id=rel, path=base / rel, boxes=no_boxes()) for rel in relative]
