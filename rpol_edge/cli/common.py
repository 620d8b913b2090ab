"""What every CLI command shares: the consoles, the one-line error wrapper, progress bars, output
checks and the metrics table.

A module of its own so that ``rpol_edge.cli.app`` and the commands that live beside their library
(``rpol_edge.cli.run``) both import it, instead of importing each other.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from rpol_edge.fitting.distributed import DistContext

err = Console(stderr=True)
# Results on stdout are never hard-wrapped when they go to a pipe or a file: a box or a table row
# stays on one line for grep and logs (a terminal still gets its own width).
out = Console() if sys.stdout.isatty() else Console(soft_wrap=True, width=1000)

METRIC_KEYS = (
    "n_images",
    "operating_point",
    "gt_known_loc",
    "maxboxacc",
    "maxboxacc_v2",
    "maxboxacc_v2_rpol",
    "best_threshold",
)


def _known_errors() -> tuple[type[BaseException], ...]:
    """Every module named here must import without torch: this runs on any error of any command.

    (``rpol_edge.backbones.BackboneError``, beside torch and timm, is a ValueError, caught below.)
    """
    from rpol_edge.core.extras import MissingExtra
    from rpol_edge.core.metadata import MetadataError
    from rpol_edge.data import DatasetError
    from rpol_edge.data.images import ImageError
    from rpol_edge.exporters.formats import ExportError
    from rpol_edge.exporters.trt_build import EngineBuildError
    from rpol_edge.runtimes import InferenceError
    from rpol_edge.runtimes.cuda_mem import CudaError
    from rpol_edge.runtimes.trt_common import TrtUnavailable
    from rpol_edge.serving.server_env import ServeError

    return (
        MissingExtra,
        DatasetError,
        ExportError,
        ImageError,
        MetadataError,
        InferenceError,
        TrtUnavailable,
        EngineBuildError,
        CudaError,
        ServeError,
        OSError,
        ValueError,
        # An optional module (matplotlib for explain figures, a timm classifier) that is not installed.
        ImportError,
    )


@contextmanager
def cli_errors() -> Iterator[None]:
    """Known failures end as one line on stderr and exit code 2, never a traceback."""
    try:
        yield
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        raise typer.Exit(130) from None
    except _known_errors() as exc:
        err.print("error: " + str(exc), markup=False, highlight=False, soft_wrap=True, emoji=False)
        raise typer.Exit(2) from None


def field_flag(name: str, flags: dict[str, str]) -> str:
    return flags.get(name, "--" + name.replace("_", "-"))


def to_flags(message: str, fields: Iterable[str], flags: dict[str, str]) -> str:
    """A library message that names fields (``input_size=16: at least 32``) in the CLI's words
    (``--input-size 16: at least 32``): the library stays free of flags, the user sees the flags."""
    names = "|".join(sorted(map(re.escape, fields), key=len, reverse=True))
    pattern = rf"\b({names})=(\S+?)(?=[:,;)\s]|$)"
    return re.sub(pattern, lambda m: f"{field_flag(m[1], flags)} {m[2]}", message)


@contextmanager
def fields_as_flags(record: type, flags: dict[str, str] | None = None) -> Iterator[None]:
    """Re-raise a ValueError of a config record's ``validate`` with its fields shown as flags."""
    try:
        yield
    except ValueError as exc:
        names = [f.name for f in dataclasses.fields(record)]
        raise ValueError(to_flags(str(exc), names, flags or {})) from None


class RateColumn(ProgressColumn):
    """Images per second over rich's recent window (data loading must keep up: it shows)."""

    def render(self, task: Task) -> Text:
        speed = task.speed  # over the last 30 s of updates, first batch's arrival excluded
        if speed is None and task.elapsed and task.completed:
            speed = task.completed / task.elapsed
        return Text(f"{speed:.1f} img/s" if speed is not None else "- img/s")


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int, int], None]]:
    columns = (
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    # The bar starts with the first update, not on entry: a command that fails while it checks
    # its inputs (an unknown backbone, a missing image) prints its one error line and no empty bar.
    bar = Progress(*columns, console=err, transient=False)
    task: list[TaskID] = []

    def update(done: int, total: int) -> None:
        if not task:
            bar.start()
            task.append(bar.add_task(label, total=None))
        bar.update(task[0], completed=done, total=total)

    try:
        yield update
    finally:
        if task:
            bar.stop()


@contextmanager
def progress_lines(label: str, every_s: float = 30.0) -> Iterator[Callable[[int, int], None]]:
    """Plain progress lines for ranks other than 0: one every ``every_s`` seconds and a last one.

    Several ranks redrawing one terminal would garble it; lines stay readable in torchrun's
    per-rank logs (``--log-dir``) and interleaved on one console.
    """
    import time

    start = time.monotonic()
    last = [start, 0, 0]

    def line(done: int, total: int) -> None:
        rate = done / max(time.monotonic() - start, 1e-9)
        err.print(f"{label}: {done}/{total} images, {rate:.1f} img/s", highlight=False)

    def update(done: int, total: int) -> None:
        now = time.monotonic()
        last[1:] = [done, total]
        if now - last[0] >= every_s:
            last[0] = now
            line(done, total)

    yield update
    line(int(last[1]), int(last[2]))


def rank_progress(verb: str) -> Callable[[DistContext], AbstractContextManager[Callable[[int, int], None]]]:
    """Rank 0 (or a lone process) draws the bar; the other ranks print periodic lines."""

    def make(ctx: DistContext) -> AbstractContextManager[Callable[[int, int], None]]:
        if not ctx.enabled:
            return progress_bar(verb)
        label = f"{verb} {ctx.label}"
        return progress_bar(label) if ctx.is_main else progress_lines(label)

    return make


def check_writable(path: Path) -> None:
    """Refuse an output path before minutes of work, not after."""
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a file name (e.g. {path / 'model.rpol'})")
    parent = path.parent if str(path.parent) else Path(".")
    if parent.exists() and not os.access(parent, os.W_OK):
        raise ValueError(f"cannot write to {parent}")


TOPK_KEYS = (
    "top1_cls",
    "top5_cls",
    "top1_loc",
    "top5_loc",
    "top1_loc_best",
    "top1_loc_best_threshold",
    "top5_loc_best",
    "top5_loc_best_threshold",
)


def metrics_table(title: str, metrics: dict[str, Any], more: tuple[str, ...] = ()) -> Table:
    table = Table(title, "value")
    for key in METRIC_KEYS + more:
        value = metrics[key]
        table.add_row(key, f"{value:.2f}" if isinstance(value, float) else str(value))
    return table


def report_skips(skipped: list[tuple[Any, str]], total: int | None = None) -> None:
    """``total``: the count when ``skipped`` holds only examples (a distributed job's)."""
    if skipped:
        n = len(skipped) if total is None else total
        err.print(f"[yellow]skipped {n} unreadable image(s)[/], e.g. {skipped[0][1]}", highlight=False)


class ConsoleHandler(logging.Handler):
    """Log records as single unwrapped lines on the CLI's stderr console (shared with the progress bar)."""

    STYLES = {"WARNING": "yellow", "ERROR": "red", "CRITICAL": "red"}

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        from rich.text import Text

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
        logger.propagate = False
