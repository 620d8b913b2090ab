"""Ctrl-C and SIGTERM during a live run: what a signal does depends on the run's phase, and the
run always ends with closed outputs and a summary.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any, Protocol

log = logging.getLogger("rpol_edge.live")


class Stoppable(Protocol):
    """What a signal needs of a run: its stop flag and the way to ask it to stop."""

    stop: threading.Event

    def request_stop(self, reason: str) -> None: ...


class Interrupted(BaseException):
    """Raised by the signal handler to leave a blocking call (the open, a stuck output) at once.

    A BaseException, like KeyboardInterrupt, so no ``except Exception`` on the way swallows it;
    private, so `run_live` catches only its own and still re-raises a caller's KeyboardInterrupt.
    """


class RunSignals:
    """Ctrl-C and SIGTERM for one run: the run always ends with closed outputs and a summary.

    What a signal does depends on the phase:

    * ``opening``: nothing is written yet and the open is a blocking call, so it is left at once;
    * ``running``: stop (capture and inference stop, output drains what is queued); a second
      Ctrl-C leaves a stuck output at once;
    * ``closing``: the outputs are being flushed, the threads joined (both bounded) and the
      summary reported; further signals are noted and ignored, so impatience never costs the
      recording or the summary.

    The handlers stay installed until `run_live` has closed every sink, joined its threads and
    reported the summary.
    Only possible from the main thread (Python's rule); elsewhere the caller owns signals.
    """

    REASONS = {signal.SIGINT: "interrupted", signal.SIGTERM: "SIGTERM"}

    def __init__(self, run: Stoppable) -> None:
        self.run = run
        self.phase = "opening"
        self._previous: dict[signal.Signals, Any] = {}

    def __enter__(self) -> RunSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handler) for sig in self.REASONS}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._previous.items():
            signal.signal(sig, old)

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        sig = signal.Signals(signum)
        run = self.run
        if self.phase == "closing":
            log.warning("%s received: still flushing outputs, finishing first", sig.name)
            return
        again = run.stop.is_set()
        run.request_stop(self.REASONS[sig])
        if self.phase == "opening" or (again and sig == signal.SIGINT):
            raise Interrupted
        log.warning("%s received: finishing (flushing outputs)", sig.name)
