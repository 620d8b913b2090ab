"""`rpol-edge run`: parse options, build the source and outputs, call `run_live`, print the summary.

``rpol_edge.cli`` is imported inside the command, not at module level, because ``cli`` imports
this module while it is itself being imported (to register the command).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from rpol_edge.live.outputs import FramesSink, JsonlSink, Sink, VideoSink, WindowSink
from rpol_edge.live.sources import SourceError, accepted_sources, open_source, parse_source
from rpol_edge.live.stats import RunSummary

SOURCE_HELP = "camera, stream, video file, image file, folder or glob: " + accepted_sources()


def run_command(
    model: Annotated[Path, typer.Argument(help="model file (.rpol), ONNX file or TensorRT engine")],
    source: Annotated[str | None, typer.Option("--source", help=SOURCE_HELP)] = None,
    camera: Annotated[int | None, typer.Option("--camera", help="V4L2 camera index (same as --source camera://N)")] = None,
    runtime: Annotated[str, typer.Option("--runtime", help="auto | torch | ort | trt")] = "auto",
    device: Annotated[str, typer.Option("--device", help="cpu | cuda | cuda:N")] = "cpu",
    weights: Annotated[Path | None, typer.Option("--weights", help="backbone checkpoint file")] = None,
    show: Annotated[bool, typer.Option("--show", help="display a window (q or Esc ends the run)")] = False,
    save: Annotated[Path | None, typer.Option("--save", help="annotated video (.mp4, mp4v)")] = None,
    save_fps: Annotated[float | None, typer.Option(help="frame rate of --save (default: the source's, else 25)")] = None,
    jsonl: Annotated[Path | None, typer.Option("--jsonl", help="one JSON record per frame")] = None,
    save_frames: Annotated[Path | None, typer.Option("--save-frames", help="folder for annotated JPEG frames")] = None,
    summary: Annotated[Path | None, typer.Option("--summary", help="write the end-of-run summary as JSON")] = None,
    max_frames: Annotated[int | None, typer.Option(min=1, help="stop after this many frames")] = None,
    open_timeout: Annotated[float, typer.Option(min=0.1, help="seconds to wait for the source to open")] = 10.0,
    max_reconnects: Annotated[
        int, typer.Option(min=-1, help="failed reconnect attempts in a row before giving up (-1: never)")
    ] = 10,
) -> None:
    """Live localization on cameras, streams, video files and image folders.

    Capture, inference and output overlap; live sources keep only the newest frame. Ends at the
    end of the source, after --max-frames, or on Ctrl-C / SIGTERM, always with flushed outputs
    and a summary.
    """
    from rpol_edge.artifact import atomic_write
    from rpol_edge.cli import cli_errors, err, out
    from rpol_edge.live.pipeline import run_live
    from rpol_edge.runtimes import open_runtime

    with cli_errors(), _log_to(err), _source_errors(err):
        if (source is None) == (camera is None):
            raise ValueError("give exactly one of --source URI or --camera N")
        src = parse_source(source if source is not None else f"camera://{camera}")
        sinks = _sinks(show, save, save_fps, jsonl, save_frames)
        rt = open_runtime(model, runtime, device=device, weights=weights)
        err.print(f"runtime: {rt.description} ({model})", highlight=False)
        open_source(src, open_timeout)
        with src, rt:
            result = _run_with_progress(run_live, rt, src, sinks, max_frames, open_timeout, max_reconnects, err)
        _print_summary(out, result)
        if summary is not None:
            atomic_write(summary, lambda tmp: tmp.write_text(json.dumps(result.to_dict(), indent=1)))
        if result.stop_reason == "source lost":
            raise typer.Exit(1)


def _sinks(show: bool, save: Path | None, save_fps: float | None, jsonl: Path | None, frames: Path | None) -> list[Sink]:
    sinks: list[Sink] = []
    if show:
        sinks.append(WindowSink())
    if save is not None:
        if save.suffix.lower() != ".mp4":
            raise ValueError(f"--save {save}: write an .mp4 file (mp4v codec)")
        sinks.append(VideoSink(save, save_fps))
    if frames is not None:
        sinks.append(FramesSink(frames))
    if jsonl is not None:
        sinks.append(JsonlSink(jsonl))
    return sinks


def _run_with_progress(run_live, rt, src, sinks, max_frames, open_timeout, max_reconnects, err) -> RunSummary:  # type: ignore[no-untyped-def]
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("run"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task("run", total=None)

        def update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        return run_live(  # type: ignore[no-any-return]
            rt, src, sinks, max_frames=max_frames, open_timeout=open_timeout,
            max_reconnects=max_reconnects, progress=update,
        )


def _print_summary(console, s: RunSummary) -> None:  # type: ignore[no-untyped-def]
    from rich.table import Table

    table = Table("summary", "value", title=f"{s.frames} frames, {s.stop_reason}")
    rows = {
        "frames": s.frames,
        "dropped frames": s.dropped_frames,
        "corrupt frames": s.corrupt_frames,
        "stream drops": s.stream_drops,
        "reconnects": f"{s.reconnects} ({s.reconnect_attempts} attempts)",
        "mean FPS": f"{s.mean_fps:.2f}",
        "latency p50 / p95 ms": f"{s.latency_ms['p50']:.1f} / {s.latency_ms['p95']:.1f}",
    }
    rows.update({f"{k} ms (mean)": f"{v['mean']:.1f}" for k, v in s.stage_ms.items()})
    for k, v in rows.items():
        table.add_row(k, str(v))
    console.print(table)


@contextmanager
def _source_errors(err) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """SourceError is ours, not in cli's list: the same one-line message and exit code 2."""
    try:
        yield
    except SourceError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True, markup=True)
        raise typer.Exit(2) from None


@contextmanager
def _log_to(err) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """Drops, reconnects and skipped frames go to stderr through the CLI's console, for this run only."""
    from rich.logging import RichHandler

    logger = logging.getLogger("rpol_edge.live")
    handler = RichHandler(console=err, show_time=False, show_path=False, markup=False, rich_tracebacks=False)
    handler.setFormatter(logging.Formatter("%(message)s"))
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate
