"""Image files as a source: one file, a folder or a glob, every image one frame."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rpol_edge.data.images import ImageError, load_rgb
from rpol_edge.live.sources import Captured, CorruptFrame, Source


class ImageFilesSource(Source):
    """An image file, a folder or a glob: every image is one frame, decoded by the shared loader."""

    def __init__(self, uri: str, paths: Sequence[Path], kind: str) -> None:
        super().__init__(uri, is_live=False)
        self.paths = list(paths)
        self.kind = kind
        self._next = 0

    def open(self, timeout: float) -> None:
        self._next = 0
        self.is_open = True

    def read(self) -> Captured | None:
        if self._next >= len(self.paths):
            return None
        path = self.paths[self._next]
        self._next += 1
        try:
            rgb = load_rgb(path)
        except ImageError as exc:
            raise CorruptFrame(str(exc)) from None
        return Captured(rgb, str(path), is_rgb=True)

    def close(self) -> None:
        self.is_open = False

    @property
    def length(self) -> int:
        return len(self.paths)

    def describe(self) -> str:
        return f"{self.uri} ({self.kind}, {len(self.paths)} image(s))"
