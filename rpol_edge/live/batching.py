"""Frames of several streams into one inference call, with a bounded wait.

The inference thread takes whatever is ready, at most one frame per stream (so a stream's frames
stay in order and a fast file never crowds out a camera), and up to ``max_items``. When some
streams have nothing ready yet, it waits for them at most ``wait_s`` after the first frame of the
batch arrived: a slow or reconnecting stream delays the others by that much at most, never more.
Under load, frames pile up while the previous batch runs, so batches grow by themselves; under a
light load a frame goes through alone, without waiting for company it does not need.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

from rpol_edge.live.handoff import POLL_S

T = TypeVar("T")


class Ready(Protocol[T]):  # type: ignore[misc]
    """What the batcher needs of a stream."""

    @property
    def finished(self) -> bool: ...

    def take(self) -> T | None:
        """The stream's ready frame, without waiting; None when it has none now."""


class Batcher(Generic[T]):
    """Round-robin over the streams: the first stream asked rotates, so with more streams than
    ``max_items`` every stream gets its turn."""

    def __init__(
        self, streams: Sequence[Ready[T]], max_items: int, wait_s: float, wake: threading.Event
    ) -> None:
        self.streams = list(streams)
        self.max_items = max(1, max_items)
        self.wait_s = wait_s
        self.wake = wake
        self._next = 0

    def gather(self, stop: threading.Event) -> list[T] | None:
        """The next batch (1..max_items frames, each from a different stream), or None when every
        stream has finished or ``stop`` is set."""
        batch: list[T] = []
        taken: set[int] = set()
        deadline: float | None = None
        n = len(self.streams)
        while not stop.is_set():
            self.wake.clear()  # before looking: a frame offered after the look sets it again
            for k in range(n):
                i = (self._next + k) % n
                if i in taken or len(batch) >= self.max_items:
                    continue
                item = self.streams[i].take()
                if item is not None:
                    batch.append(item)
                    taken.add(i)
            open_streams = [i for i in range(n) if i not in taken and not self.streams[i].finished]
            if batch and deadline is None:
                deadline = time.perf_counter() + self.wait_s
            if batch and (len(batch) >= self.max_items or not open_streams):
                break
            if not batch and not open_streams:
                return None
            if deadline is not None:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                self.wake.wait(left)
            else:
                self.wake.wait(POLL_S)
        else:
            return None
        self._next = (self._next + 1) % n
        return batch
