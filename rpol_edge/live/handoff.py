"""Hand-offs between the live pipeline's threads: a one-item slot for live sources (the newest
frame wins, an overwrite is a dropped frame) and a bounded queue put that gives up on stop.
"""

from __future__ import annotations

import queue
import threading
from typing import Generic, TypeVar

T = TypeVar("T")


POLL_S = 0.1
"""How often blocked threads look at the stop flag; bounds how late a stop is noticed."""


class LatestSlot(Generic[T]):
    """A one-item mailbox where ``put`` replaces an unread item instead of waiting.

    This is what keeps a live source live: capture never blocks, inference always gets the newest
    frame, and ``put`` reports each overwrite so it can be counted as a drop.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._full = False

    def put(self, item: T) -> T | None:
        """Store ``item``; returns the item it replaced, unread (a drop), or None."""
        with self._cond:
            dropped = self._item if self._full else None
            self._item, self._full = item, True
            self._cond.notify()
            return dropped

    def get(self, timeout: float) -> T:
        with self._cond:
            if not self._cond.wait_for(lambda: self._full, timeout):
                raise queue.Empty
            item, self._item, self._full = self._item, None, False
            return item  # type: ignore[return-value]

    def empty(self) -> bool:
        with self._cond:
            return not self._full


def put_until_stopped(q: queue.Queue[T], item: T, *stops: threading.Event) -> bool:
    """Blocking put that gives up when any of ``stops`` is set (the consumer may be gone)."""
    while not any(stop.is_set() for stop in stops):
        try:
            q.put(item, timeout=POLL_S)
            return True
        except queue.Full:
            pass
    return False
