"""What every CLI command shares: the consoles, the one-line error wrapper, progress bars, output
checks and the metrics table.

A module of its own so that ``rpol_edge.cli`` and the commands that live beside their library
(``rpol_edge.live.command``) both import it, instead of importing each other.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

err = Console(stderr=True)
out = Console()

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
    from rpol_edge.data import DatasetError
    from rpol_edge.export.onnx_export import ExportError
    from rpol_edge.export.trt_build import EngineBuildError, TrtUnavailable
    from rpol_edge.extras import MissingExtra
    from rpol_edge.images import ImageError
    from rpol_edge.metadata import MetadataError
    from rpol_edge.runtimes import InferenceError
    from rpol_edge.runtimes.cuda_mem import CudaError

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
        err.print("error: " + str(exc), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int, int], None]]:
    columns = (
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


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


def report_skips(skipped: list[tuple[Any, str]]) -> None:
    if skipped:
        err.print(
            f"[yellow]skipped {len(skipped)} unreadable image(s)[/], e.g. {skipped[0][1]}", highlight=False
        )
