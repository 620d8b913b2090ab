"""Export into temporary folders that are moved into place only when every file is written.

A failed export (calibration images that turn out unreadable after the FP32 graph was traced, a
TensorRT build error, a Triton check) leaves every output folder as it was: no ``model.onnx`` of
the failed call, no half set of files beside an earlier export's, no empty folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


class Staging:
    """Where each destination folder is written during the export, and where a file goes after it."""

    def __init__(self, folders: dict[Path, Path]) -> None:
        self.folders = folders
        """Destination -> its temporary folder (created by the first file written into it)."""

    def __getitem__(self, dest: Path) -> Path:
        return self.folders[dest]

    def final(self, path: Path) -> Path:
        """Where a file written under a temporary folder is once the export is committed."""
        for dest, tmp in self.folders.items():
            if path == tmp or tmp in path.parents:
                return dest / path.relative_to(tmp)
        return path


def _existing_ancestor(path: Path) -> Path:
    """The nearest folder of ``path`` (itself included) that exists: the temporary folder is made
    there, on the same file system, so committing is a rename and creates no folder early."""
    for p in (path, *path.parents):
        if p.is_dir():
            return p
    return Path(".")


@contextmanager
def staged(destinations: Iterable[Path]) -> Iterator[Staging]:
    """A temporary folder per destination; on a normal exit their files are moved into the
    destinations (files of other names already there are kept), on an error they are removed."""
    folders: dict[Path, Path] = {}
    try:
        for dest in dict.fromkeys(destinations):
            anchor = _existing_ancestor(dest.absolute().parent)
            root = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=anchor))
            folders[dest] = root / dest.name
        yield Staging(folders)
        for dest, tmp in folders.items():
            commit(tmp, dest)
    finally:
        for tmp in folders.values():
            shutil.rmtree(tmp.parent, ignore_errors=True)


def commit(tmp: Path, dest: Path) -> None:
    """Move what was written under ``tmp`` into ``dest``: one rename when ``dest`` does not exist yet,
    else file by file (each replaced atomically)."""
    if not tmp.exists():
        return  # nothing was written for this destination
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)
        return
    # An OpenVINO .xml names its .bin and is what readers open: it goes in after the .bin.
    files = sorted((p for p in tmp.rglob("*") if not p.is_dir()), key=lambda p: (p.suffix == ".xml", p))
    for src in files:
        target = dest / src.relative_to(tmp)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, target)
