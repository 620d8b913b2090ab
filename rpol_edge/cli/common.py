"""What every CLI command shares: the consoles, the one-line error wrapper, progress bars, output
checks and the metrics table.

A module of its own so that ``rpol_edge.cli.app`` and the commands that live beside their library
(``rpol_edge.cli.run``) both import it, instead of importing each other.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
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
    from rpol_edge.core.export_formats import ExportError
    from rpol_edge.core.extras import MissingExtra
    from rpol_edge.core.metadata import MetadataError
    from rpol_edge.data import DatasetError
    from rpol_edge.data.images import ImageError
    from rpol_edge.exporters.trt.build import EngineBuildError
    from rpol_edge.integrations.triton.server_env import ServeError
    from rpol_edge.runtimes import InferenceError
    from rpol_edge.runtimes.cuda_mem import CudaError
    from rpol_edge.runtimes.trt_common import TrtUnavailable

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


@dataclass(frozen=True)
class Flag:
    """How the command line spells one parameter."""

    name: str
    """``--input-size``"""
    off: str | None = None
    """An on/off flag's off form (``--no-simplify``)."""
    switch: bool = False
    """An on/off flag: it takes no value."""


def command_flags(params: Iterable[Any], aliases: Mapping[str, str] | None = None) -> dict[str, Flag]:
    """Parameter name -> flag, read from a command's declared options (what the user typed), so
    the mapping cannot drift from the declarations. ``aliases``: library names that differ from the
    command's parameter (``tau_mode`` -> ``tau``)."""
    flags = {}
    for p in params:
        longs = [o for o in getattr(p, "opts", []) if o.startswith("--")]
        if getattr(p, "param_type_name", "") != "option" or not longs or not p.name:
            continue
        off = next((o for o in getattr(p, "secondary_opts", []) if o.startswith("--")), None)
        flags[p.name] = Flag(longs[0], off, bool(getattr(p, "is_flag", False)))
    return _aliased(flags, aliases)


def _aliased(flags: dict[str, Flag], aliases: Mapping[str, str] | None) -> dict[str, Flag]:
    return flags | {library: flags[param] for library, param in (aliases or {}).items() if param in flags}


def to_flags(message: str, flags: Mapping[str, Flag]) -> str:
    """A library message in the command line's words. The library names Python parameters, as a
    Python caller wrote them: ``input_size=16`` becomes ``--input-size 16``, ``int8=True`` becomes
    ``--int8`` (``simplify=False``: ``--no-simplify``) and a name in backticks (`` `calib_root` ``)
    the bare flag. Names that are not this command's options stay as they are."""
    if not flags:
        return message
    names = "|".join(sorted(map(re.escape, flags), key=len, reverse=True))

    def switch(m: re.Match[str]) -> str:
        flag = flags[m[1]]
        if not flag.switch:
            return f"{flag.name} {m[2]}"
        return flag.name if m[2] == "True" else flag.off or m[0]

    message = re.sub(rf"(?<![\w-])({names})=(True|False)\b", switch, message)
    message = re.sub(rf"(?<![\w-])({names})=", lambda m: flags[m[1]].name + " ", message)
    return re.sub(rf"`({names})`", lambda m: flags[m[1]].name, message)


_COMMAND_FLAGS: ContextVar[dict[str, Flag] | None] = ContextVar("command_flags", default=None)


@contextmanager
def speaking_flags(params: Iterable[Any]) -> Iterator[None]:
    """While a command runs, `cli_errors` shows library messages in its flags (`to_flags`)."""
    token = _COMMAND_FLAGS.set(command_flags(params))
    try:
        yield
    finally:
        _COMMAND_FLAGS.reset(token)


@contextmanager
def cli_errors(aliases: Mapping[str, str] | None = None) -> Iterator[None]:
    """Known failures end as one line on stderr and exit code 2, never a traceback. The line is the
    library's, with its parameter names shown as this command's flags (`to_flags`): the one place
    where the two vocabularies meet. ``aliases``: library names that differ from the command's
    parameter names (fit's ``tau_mode`` is its ``--tau``)."""
    try:
        yield
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        raise typer.Exit(130) from None
    except _known_errors() as exc:
        line = "error: " + to_flags(str(exc), _aliased(_COMMAND_FLAGS.get() or {}, aliases))
        err.print(line, markup=False, highlight=False, soft_wrap=True, emoji=False)
        raise typer.Exit(2) from None


def work_rate(task: Task) -> float | None:
    """Images per second: over rich's recent window once two reports are in (the last 30 s of
    updates, the first report's images excluded: data loading must keep up, and it shows); before
    that, the images done over the time since the work began (the task's start, see
    `progress_bar`), so that a run of one batch reads as fast as it was."""
    if task.speed is not None:
        return task.speed
    seconds = task.finished_time if task.finished_time is not None else task.elapsed
    return task.completed / seconds if seconds and task.completed else None


class RateColumn(ProgressColumn):
    """Images per second (`work_rate`)."""

    def render(self, task: Task) -> Text:
        speed = work_rate(task)
        return Text(f"{speed:.1f} img/s" if speed is not None else "- img/s")


class WorkClock:
    """When the work began: when the progress display was entered (callers enter it once their
    model is loaded), or later, at a report of nothing done yet (a library loop that loads its
    model and data first says when its work starts with ``progress(0, total)``)."""

    def __init__(self, now: Callable[[], float]) -> None:
        self.now = now
        self.began = now()

    def report(self, done: int) -> float:
        if done == 0:
            self.began = self.now()
        return self.began

    def rate(self, done: int) -> float:
        return done / max(self.now() - self.began, 1e-9)


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr; yields the ``update(done, total)`` a library loop reports to.

    Its rate and elapsed time count from the start of the work (`WorkClock`), not from the first
    report: that arrives after the first batch, and counting from it made three images in one
    batch read as hundreds per second."""
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
    clock = WorkClock(bar.get_time)
    task: list[TaskID] = []

    def update(done: int, total: int) -> None:
        began = clock.report(done)
        if not task:
            bar.start()
            task.append(bar.add_task(label, total=None))
        # rich starts a task's clock when the task is added: at the first report, after the first
        # batch. Its start is a public field: set to when the work began, before the update that
        # may finish the task (rich then freezes the elapsed time).
        bar.tasks[0].start_time = began
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

    clock = WorkClock(time.monotonic)
    last = [clock.began, 0, 0]

    def line(done: int, total: int) -> None:
        err.print(f"{label}: {done}/{total} images, {clock.rate(done):.1f} img/s", highlight=False)

    def update(done: int, total: int) -> None:
        clock.report(done)
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
