"""The one runtime interface every backend implements.

``infer`` validates a batch against the model's metadata, then hands it to the backend's
``_infer``. Pre-processing (geometry) and box extraction (boxes) are shared, so backends only move
tensors. Runtimes are context managers: resources live between ``__enter__`` and ``__exit__``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import TracebackType
from typing import ClassVar

import numpy as np

from rpol_edge.core.metadata import ModelMeta


class InferenceError(RuntimeError):
    """A runtime that cannot be created or fed: missing extra, wrong model file, bad batch."""


@dataclass(frozen=True)
class Output:
    score: np.ndarray
    """(N, M, K, K) float32 in [0, 1]."""
    mask: np.ndarray
    """(N, M, K, K) uint8, nonzero above the model's operating threshold."""
    peak: np.ndarray | None = None
    """(N, M) float32, the largest raw response of each map; None from a graph exported before
    it was an output (core/onnx_meta.py `MAP_OUTPUTS`)."""


class Runtime(ABC):
    name: ClassVar[str]

    def __init__(self, meta: ModelMeta, min_batch: int = 1, max_batch: int | None = None) -> None:
        self.meta = meta
        self.min_batch = min_batch
        self.max_batch = max_batch
        self.active = False

    @property
    def description(self) -> str:
        """Backend, device and precision in a few words, for logs and benchmark rows."""
        return f"{self.name} {self.meta.precision}"

    def __enter__(self) -> Runtime:
        return self.start()

    def start(self) -> Runtime:
        """Activate once (what entering a ``with`` block does), so that a caller can learn whether
        it activates before handing it on; the ``with`` block then releases it."""
        if not self.active:
            self.activate()
            self.active = True
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.active:
            self.deactivate()
            self.active = False

    def activate(self) -> None:  # noqa: B027 - optional hook, most backends need it
        """Allocate what the backend needs (sessions, buffers, streams)."""

    def deactivate(self) -> None:  # noqa: B027 - optional hook
        """Release what ``activate`` allocated."""

    def infer(self, frames: np.ndarray) -> Output:
        """frames: (N, K, K, 3) uint8 RGB, K = meta.input_size; or, for a graph exported with
        ``--frame-size WxH``, the raw (N, H, W, 3) frames in its ``frame_format``."""
        if not self.active:
            raise InferenceError(f"{self.name} runtime used outside its 'with' block")
        shape = self.meta.input_shape()
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != shape:
            what = " raw camera frames (exported with --frame-size)" if self.meta.raw_frames else " frames"
            raise InferenceError(
                f"expected uint8{what} of shape (N, {', '.join(map(str, shape))}), "
                f"got {frames.dtype} {tuple(frames.shape)}"
            )
        n = frames.shape[0]
        if n < self.min_batch or (self.max_batch is not None and n > self.max_batch):
            raise InferenceError(f"batch {n} outside this model's range {self.min_batch}..{self.max_batch}")
        out = self._infer(np.ascontiguousarray(frames))
        m, k = self.meta.n_heads, self.meta.input_size
        if out.score.shape != (n, m, k, k) or out.mask.shape != (n, m, k, k):
            raise InferenceError(f"{self.name} returned {out.score.shape}, expected {(n, m, k, k)}")
        if out.peak is not None and out.peak.shape != (n, m):
            raise InferenceError(f"{self.name} returned peak {out.peak.shape}, expected {(n, m)}")
        return out

    @abstractmethod
    def _infer(self, frames: np.ndarray) -> Output: ...


def infer_all(runtime: Runtime, frames: np.ndarray) -> Output:
    """Any number of frames through a runtime whose batch range may be fixed: chunk, pad, trim."""
    n = len(frames)
    hi = runtime.max_batch or max(n, 1)
    scores, masks = [], []
    peaks: list[np.ndarray | None] = []
    for start in range(0, n, hi):
        chunk = frames[start : start + hi]
        real = len(chunk)
        if real < runtime.min_batch:
            pad = np.repeat(chunk[-1:], runtime.min_batch - real, axis=0)
            chunk = np.concatenate([chunk, pad])
        out = runtime.infer(chunk)
        scores.append(out.score[:real])
        masks.append(out.mask[:real])
        peaks.append(None if out.peak is None else out.peak[:real])
    if not scores:
        k, m = runtime.meta.input_size, runtime.meta.n_heads
        return Output(np.zeros((0, m, k, k), np.float32), np.zeros((0, m, k, k), np.uint8))
    if len(scores) == 1:  # the per-frame case: no copy
        return Output(scores[0], masks[0], peaks[0])
    got = [p for p in peaks if p is not None]
    peak = np.concatenate(got) if len(got) == len(peaks) else None
    return Output(np.concatenate(scores), np.concatenate(masks), peak)
