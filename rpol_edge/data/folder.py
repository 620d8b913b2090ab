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

import glob
import os
from collections.abc import Sequence
from pathlib import Path

from rpol_edge.data.images import is_image_path
from rpol_edge.data.samples import DatasetError, Sample, no_boxes

__all__ = ["expand_images", "list_images", "read"]


def read(root: Path, split: str) -> list[Sample]:
    """Image files under ``root/<split>`` if that folder exists, else under ``root``."""
    base = root
    if split and split not in (".", "all") and (root / split).is_dir():
        base = root / split
    return [
        Sample(image_id=p.relative_to(base).as_posix(), path=p, boxes=no_boxes()) for p in list_images(base)
    ]


def list_images(base: Path, exclude: Sequence[Path] = ()) -> list[Path]:
    """Every image file under ``base``, recursively (the one folder rule of every command), leaving
    out the folders in ``exclude`` (a command's own output folder inside its input)."""
    relative: list[str] = []
    skip = {os.path.realpath(p) for p in exclude}

    def on_error(exc: OSError) -> None:
        raise DatasetError(f"{exc.filename}: cannot list folder: {exc.strerror}")

    for directory, subdirs, files in os.walk(base, onerror=on_error):
        subdirs[:] = [
            name
            for name in subdirs
            if not name.startswith(".") and os.path.realpath(os.path.join(directory, name)) not in skip
        ]
        here = Path(directory)
        for name in files:
            path = here / name
            if name.startswith(".") or not is_image_path(path):
                continue
            relative.append(path.relative_to(base).as_posix())
    relative.sort()
    return [base / rel for rel in relative]


GLOB_CHARS = "*?["


def expand_images(args: Sequence[str | Path], exclude: Sequence[Path] = ()) -> list[Path]:
    """Image arguments as a user types them -> image files, in order, before any work starts.

    A file is itself; a folder is every image under it, recursively (as ``fit --data folder``
    reads it); a pattern with ``*``, ``?`` or ``[`` (quoted, so the shell left it) is expanded,
    ``**`` across folders. A path that does not exist, a folder or pattern without images, is an
    error naming it: something the user typed is never skipped silently. Files that exist but do
    not decode are the caller's counted skips. ``exclude``: folders left out of a folder's listing
    (where the command writes, so a second run does not read the first one's output).
    """
    out: list[Path] = []
    for arg in args:
        text = str(arg)
        path = Path(text).expanduser()
        if path.is_dir():
            found = list_images(path, exclude)
            if not found:
                raise DatasetError(f"{text}: the folder holds no image files")
            out += found
        elif path.exists():
            out.append(path)
        elif any(c in text for c in GLOB_CHARS):
            found = [Path(p) for p in sorted(glob.glob(text, recursive=True)) if is_image_path(Path(p))]
            if not found:
                raise DatasetError(f"{text}: the pattern matches no image files")
            out += found
        else:
            raise DatasetError(f"{text}: no such file or folder")
    return out
