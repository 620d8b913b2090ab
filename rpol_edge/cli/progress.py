"""Progress on stderr: a bar for the main process, plain periodic lines for the other ranks of a
distributed job, and the images-per-second rate both show."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING

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
from rich.text import Text

from rpol_edge.cli.console import err

if TYPE_CHECKING:
    from rpol_edge.fitting.distributed import DistContext


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
    except BaseException:
        if task and not bar.tasks[0].completed:
            bar.live.transient = True  # nothing done (a source with no readable frame): the error alone
        raise
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
