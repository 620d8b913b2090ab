"""Every stream's overlay tiled into one picture, for one window or one video of a many-camera run.

The mosaic is emitted once per round (when a stream that is already on the current picture sends
its next frame, or when every stream has), so it follows the fastest stream and a stalled one
keeps its last picture instead of holding the others back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from rpol_edge.live._opencv import cv2
from rpol_edge.live.frames import FrameResult
from rpol_edge.live.outputs import Sink

MOSAIC_MAX_WIDTH = 1920
TILE = (640, 480)


def grid(n: int) -> tuple[int, int]:
    """(columns, rows) of the most nearly square grid that holds ``n`` tiles."""
    cols = math.ceil(math.sqrt(n))
    return cols, math.ceil(n / cols)


def tile_size(n: int) -> tuple[int, int]:
    """(width, height) of one tile: 640 x 480, smaller when the grid would exceed 1920 wide."""
    cols, _ = grid(n)
    w = min(TILE[0], MOSAIC_MAX_WIDTH // cols) // 2 * 2
    return w, (w * TILE[1] // TILE[0]) // 2 * 2


def letterbox(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` scaled to fit ``size`` (w, h) with its aspect kept, centred on black."""
    w, h = size
    ih, iw = image.shape[:2]
    s = min(w / iw, h / ih)
    nw, nh = max(1, round(iw * s)), max(1, round(ih * s))
    out = np.zeros((h, w, 3), np.uint8)
    x0, y0 = (w - nw) // 2, (h - nh) // 2
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    out[y0 : y0 + nh, x0 : x0 + nw] = cv2.resize(image, (nw, nh), interpolation=interp)
    return out


class MosaicSink(Sink):
    """Tiles the overlays of ``n_streams`` streams and hands the mosaic to ``inner`` image sinks
    (a window, a video); each inner sink sees one picture per round."""

    def __init__(self, n_streams: int, inner: Sequence[Sink]) -> None:
        self.n = n_streams
        self.inner = list(inner)
        self.size = tile_size(n_streams)
        cols, rows = grid(n_streams)
        w, h = self.size
        self.picture = np.zeros((rows * h, cols * w, 3), np.uint8)
        for i in range(n_streams):
            self._put(i, _waiting(self.size, i))
        self._fresh: set[int] = set()
        self._last: FrameResult | None = None

    def start(self, live: bool, fps: float | None) -> None:
        for sink in self.inner:
            sink.start(live, fps)

    def write(self, result: FrameResult, image: np.ndarray | None) -> None:
        assert image is not None
        i = result.frame.stream
        if i in self._fresh:  # a new round begins: show the one that is complete
            self._emit()
        self._put(i, letterbox(image, self.size))
        self._fresh.add(i)
        self._last = result
        if len(self._fresh) == self.n:
            self._emit()

    def _put(self, i: int, tile: np.ndarray) -> None:
        cols, _ = grid(self.n)
        w, h = self.size
        r, c = divmod(i, cols)
        self.picture[r * h : (r + 1) * h, c * w : (c + 1) * w] = tile

    def _emit(self) -> None:
        assert self._last is not None
        for sink in self.inner:
            sink.write(self._last, self.picture)
        self._fresh.clear()
        self.stop_requested = any(s.stop_requested for s in self.inner)

    def close(self) -> None:
        try:
            if self._fresh:
                self._emit()
        finally:
            errors = []
            for sink in self.inner:
                try:
                    sink.close()
                except Exception as exc:  # noqa: BLE001 - every inner sink is closed, the first error raised
                    errors.append(exc)
            if errors:
                raise errors[0]


def _waiting(size: tuple[int, int], i: int) -> np.ndarray:
    tile = np.zeros((size[1], size[0], 3), np.uint8)
    cv2.putText(
        tile, f"[{i}] waiting for frames", (12, 32), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (200, 200, 200), 2
    )
    return tile
