"""The data-set kinds `--data` names and the one entry point that reads any of them."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path

from rpol_edge.data import cub, folder, voc, wsol
from rpol_edge.data.samples import DatasetError, Sample

Reader = Callable[[Path, str], list[Sample]]

#: Reader per data-set kind: ``reader(root, split) -> samples``, in a fixed,
#: deterministic order. See each module's ``read`` for its layout and splits.
READERS: dict[str, Reader] = {
    "cub": cub.read,
    "wsol": wsol.read,
    "voc": voc.read,
    "folder": folder.read,
}


def read_dataset(kind: str, root: Path, split: str) -> list[Sample]:
    """Read the samples of ``split`` of a ``kind`` data set under ``root``.

    Checks the things a user gets wrong first, each with a one-line
    :class:`DatasetError`: an unknown ``kind`` (the message lists the valid
    kinds and the closest match), a ``root`` that does not exist or is not a
    folder, and a split that yields no images at all.
    """
    key = kind.strip().lower()
    reader = READERS.get(key)
    if reader is None:
        choices = sorted(READERS)
        close = difflib.get_close_matches(key, choices, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DatasetError(f"unknown dataset kind {kind!r}; choose one of: {', '.join(choices)}{hint}")
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"{root}: dataset root does not exist")
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset root is not a folder")
    samples = reader(root, split)
    if not samples:
        if key == "folder":  # a folder has no splits unless it has a subfolder of that name
            raise DatasetError(f"no images found in {root} (searched recursively)")
        raise DatasetError(f"no images found in {root} (kind {key}, split {split!r})")
    return samples
