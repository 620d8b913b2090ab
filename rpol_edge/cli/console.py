"""The CLI's consoles: results on stdout, everything else (errors, progress, log lines) on stderr,
and the log handler that prints the library's log records there."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.text import Text

if TYPE_CHECKING:
    from rpol_edge.live.sampling import SourceCount

err = Console(stderr=True)
# Results on stdout are never hard-wrapped when they go to a pipe or a file: a box or a table row
# stays on one line for grep and logs (a terminal still gets its own width).
out = Console() if sys.stdout.isatty() else Console(soft_wrap=True, width=1000)


def report_skips(skipped: list[tuple[Any, str]], total: int | None = None) -> None:
    """``total``: the count when ``skipped`` holds only examples (a distributed job's)."""
    if skipped:
        n = len(skipped) if total is None else total
        err.print(f"[yellow]skipped {n} unreadable image(s)[/], e.g. {skipped[0][1]}", highlight=False)


def report_source(counts: SourceCount) -> None:
    """What a ``--source`` met besides its frames, if anything."""
    if counts.corrupt or counts.reconnects:
        err.print(
            f"{counts.corrupt} undecodable frames skipped, {counts.reconnects} reconnects", highlight=False
        )


class ConsoleHandler(logging.Handler):
    """Log records as single unwrapped lines on the CLI's stderr console (shared with the progress bar)."""

    STYLES = {"WARNING": "yellow", "ERROR": "red", "CRITICAL": "red"}

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.print(
                Text(self.format(record), style=self.STYLES.get(record.levelname, "")), soft_wrap=True
            )
        except Exception:  # noqa: BLE001 - logging must never break the run
            self.handleError(record)


def show_runtime_choices() -> None:
    """The runtimes' one-line notes (which runtime ``auto`` chose and why, a fallback) on stderr."""
    logger = logging.getLogger("rpol_edge.runtimes")
    if not any(isinstance(h, ConsoleHandler) for h in logger.handlers):
        logger.addHandler(ConsoleHandler(err))
        logger.setLevel(logging.INFO)
