"""`rpol-edge run`: flags -> sources and an output plan (`rpol_edge.live.plan`) -> `run_live`, then
the summary.

Heavy modules (OpenCV, the pipeline, the runtimes) are imported inside the command, so that
``rpol-edge --help`` and the other commands do not pay for them.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from rpol_edge.cli.console import ConsoleHandler, err, out
from rpol_edge.cli.errors import cli_errors
from rpol_edge.cli.options import Boxes, MinArea, ModelFile, RuntimeOpt, Weights
from rpol_edge.cli.paths import check_writable
from rpol_edge.cli.run_summary import print_summary
from rpol_edge.live.source_registry import SCHEMES
from rpol_edge.live.sources import SourceError

if TYPE_CHECKING:
    from rich.console import Console

    from rpol_edge.live.outputs import Sink
    from rpol_edge.live.plan import OutputPlan
    from rpol_edge.live.sources import Source
    from rpol_edge.live.summary import RunSummary
    from rpol_edge.runtimes import Runtime

SOURCE_HELP = (
    "a camera, stream, video file, image file, folder or glob: a path, or a URI "
    f"({', '.join(f'{scheme}://' for scheme in SCHEMES)}; their forms and options: docs/live.md); "
    "repeat it for several streams, batched into one inference call"
)
"""Scheme names only, from the registry: the full forms (``csi://N?width=&height=&fps=&flip=``) do
not fit an 80-column help column; every error about a source lists them."""
# The command's options, declared once here so that the command itself reads as what it does.
Sources = Annotated[list[str] | None, typer.Option("--source", help=SOURCE_HELP)]
Camera = Annotated[
    int | None, typer.Option("--camera", help="V4L2 camera index (same as --source camera://N)")
]
RunDevice = Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N")]
Precision = Annotated[str | None, typer.Option(help="torch runtime: fp32 | fp16 (CUDA)")]
Threads = Annotated[int | None, typer.Option(help="CPU threads for inference")]
RunCudaGraph = Annotated[
    bool | None,
    typer.Option(
        "--cuda-graph/--no-cuda-graph",
        help="CUDA graphs (torch: default on for CUDA; trt: default off)",
        show_default=False,
    ),
]
Show = Annotated[bool, typer.Option("--show", help="display a window (q or Esc ends the run)")]
Save = Annotated[Path | None, typer.Option("--save", help="annotated video (.mp4, mp4v)")]
SaveFps = Annotated[
    float | None, typer.Option(min=0.1, help="frame rate of --save (default: the source's, else 25)")
]
Jsonl = Annotated[Path | None, typer.Option("--jsonl", help="one JSON record per frame")]
SaveFrames = Annotated[Path | None, typer.Option("--save-frames", help="folder for annotated JPEG frames")]
Summary = Annotated[Path | None, typer.Option("--summary", help="write the end-of-run summary as JSON")]
MaxFrames = Annotated[int | None, typer.Option(min=1, help="stop after this many frames (of each stream)")]
OpenTimeout = Annotated[float, typer.Option(min=0.1, help="seconds to wait for the source to open")]
MaxReconnects = Annotated[
    int,
    typer.Option(min=-1, help="reconnect attempts without a frame in between before giving up (-1: never)"),
]
SourcesFile = Annotated[
    Path | None, typer.Option("--sources", help="text file of sources: one URI or path a line, # comments")
]
Realtime = Annotated[
    bool,
    typer.Option("--realtime", help="read video files at their frame rate, newest frame wins, like cameras"),
]
BatchWaitMs = Annotated[
    float,
    typer.Option(
        min=0.0, help="several streams: ms a batch waits for the others' frames after its first one"
    ),
]


def run_command(
    model: ModelFile,
    source: Sources = None,
    camera: Camera = None,
    runtime: RuntimeOpt = "auto",
    device: RunDevice = "auto",
    weights: Weights = None,
    precision: Precision = None,
    threads: Threads = None,
    cuda_graph: RunCudaGraph = None,
    show: Show = False,
    save: Save = None,
    save_fps: SaveFps = None,
    jsonl: Jsonl = None,
    save_frames: SaveFrames = None,
    summary: Summary = None,
    max_frames: MaxFrames = None,
    open_timeout: OpenTimeout = 10.0,
    max_reconnects: MaxReconnects = 10,
    min_area: MinArea = 0.0,
    sources: SourcesFile = None,
    realtime: Realtime = False,
    batch_wait_ms: BatchWaitMs = 5.0,
    boxes: Boxes = None,
) -> None:
    """Live localization on cameras, streams, video files and image folders.

    Ends at the end of the source, after --max-frames, or on Ctrl-C / SIGTERM, with flushed outputs.

    Several sources (repeat --source, or list them in a file for --sources) run together: their
    frames are batched into one inference call, each stream reads, drops and reconnects on its
    own, records carry the stream's number, and --max-frames counts per stream. {stream} in --save, --jsonl or
    --save-frames gives one output per stream; without it --save and --show are a tiled mosaic.

    Exit codes: 0 when the run ends, Ctrl-C and SIGTERM included (also while the source is still
    opening): outputs flushed, summary printed, its "stopped by" saying why; 1 when a network
    stream was lost for good (after --max-reconnects); 2 on bad input.
    """
    from rpol_edge.live.plan import OutputPlan
    from rpol_edge.results.detection import check_boxes, check_min_area
    from rpol_edge.runtimes import open_runtime

    with cli_errors(), _source_errors(err), _log_to(err), _interrupt_ends_run(err), _made_folders() as made:
        uris = _all_sources(source, sources, camera)
        check_min_area(min_area)
        if boxes is not None:
            check_boxes(boxes)
        plan = OutputPlan(
            len(uris), show=show, save=save, save_fps=save_fps, jsonl=jsonl, save_frames=save_frames,
            summary=summary,
        )  # fmt: skip
        srcs = [_parse_at(uri, where, plan.written()) for uri, where in uris]  # never read back our output
        _check_outputs(plan, made)
        sinks = plan.sinks()
        rt = open_runtime(
            model, runtime, device=device, weights=weights, precision=precision, threads=threads,
            cuda_graph=cuda_graph,
        )  # fmt: skip
        with rt:  # run_live opens the source (within --open-timeout) and closes it
            err.print(f"runtime: {rt.description} ({model})", highlight=False, markup=False)
            options = {
                "max_frames": max_frames,
                "open_timeout": open_timeout,
                "max_reconnects": max_reconnects,
                "min_area": min_area,
                "realtime": realtime,
                "batch_wait": batch_wait_ms / 1e3,
                "boxes": boxes,
            }
            result = _run(rt, srcs, sinks, err, _reporter(summary), options)
        if result.stop_reason == "source lost":
            raise typer.Exit(1)


def _all_sources(source: list[str] | None, sources: Path | None, camera: int | None) -> list[tuple[str, str]]:
    """Each source with where it was given: a line of a --sources file is named in its errors."""
    uris = [(uri, "") for uri in source or []]
    uris += _read_sources(sources) if sources is not None else []
    if camera is not None:
        uris.insert(0, (f"camera://{camera}", ""))
    if not uris:
        raise ValueError("give a source: --source URI (repeatable), --sources FILE or --camera N")
    return uris


def _reporter(summary: Path | None) -> Callable[[RunSummary], None]:
    """Prints the end-of-run summary, and writes it as JSON to ``summary`` when given."""

    def report(result: RunSummary) -> None:
        from rpol_edge.core.files import atomic_write

        print_summary(out, result)
        if summary is not None:
            text = json.dumps(result.to_dict(), indent=1)
            atomic_write(summary, lambda tmp: _write_text(tmp, text))

    return report


def _read_sources(path: Path) -> list[tuple[str, str]]:
    """The sources of a --sources file, each with its ``FILE:LINE``: one URI or path a line; blank
    lines and # comments skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"--sources {path}: cannot read it ({getattr(exc, 'strerror', None) or exc})"
        ) from None
    lines = [(line.strip(), f"{path}:{n}") for n, line in enumerate(text.splitlines(), 1)]
    uris = [(u, where) for u, where in lines if u and not u.startswith("#")]
    if not uris:
        raise ValueError(f"--sources {path}: no source in it (one URI or path a line)")
    return uris


def _parse_at(uri: str, where: str, exclude: list[Path]) -> Source:
    """The source of ``uri``; its error names ``where`` it was given (a --sources file's line)."""
    from rpol_edge.live.source_registry import parse_source

    try:
        return parse_source(uri, exclude=exclude)
    except SourceError as exc:
        if not where:
            raise
        raise SourceError(f"{where}: {exc}") from None


def _check_outputs(plan: OutputPlan, made: list[Path]) -> None:
    """Refuse an output that cannot be written now, before the model loads and the source opens,
    not at the first frame or, for --summary, at the very end of a long run.

    Parent folders are created here (a path under /proc, or under a file, fails now) and listed
    in ``made``, for `_made_folders` to take back if the command fails.
    """
    for (name, stream), path in plan.files().items():
        # the flag typer derives from the parameter's name
        option = f"--{name.replace('_', '-')}" + (f" (stream {stream})" if stream is not None else "")
        if path.is_dir():
            raise ValueError(f"{option} {path} is a folder; give a file name")
        _make_folder(f"{option} {path}", path.parent, made)
        try:
            check_writable(path)
        except ValueError as exc:
            raise ValueError(f"{option} {path}: {exc}") from None
    for folder in plan.frame_folders():
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"--save-frames {folder} is a file; give a folder")
        _make_folder(f"--save-frames {folder}", folder, made)
        if not os.access(folder, os.W_OK):
            raise ValueError(f"--save-frames {folder}: cannot write to this folder")


def _make_folder(what: str, folder: Path, made: list[Path]) -> None:
    made += reversed([p for p in (folder, *folder.parents) if not p.exists()])  # outermost first
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        why = "a file is in the way" if isinstance(exc, FileExistsError) else exc.strerror
        raise ValueError(f"{what}: cannot create the folder {exc.filename}: {why}") from None


@contextmanager
def _made_folders() -> Iterator[list[Path]]:
    """The output folders the command creates to prove they can be written, taken back (those
    still empty, innermost first) when it fails: a failed run leaves no empty folder behind."""
    made: list[Path] = []
    try:
        yield made
    except BaseException:
        for folder in reversed(made):
            try:
                folder.rmdir()
            except OSError:  # not empty (frames were written), or already gone
                pass
        raise


@contextmanager
def _interrupt_ends_run(err: Console) -> Iterator[None]:
    """Ctrl-C outside the pipeline's own handling (while the model loads) ends like one during
    the run, with exit code 0, not cli's 130: one rule for the whole command."""
    try:
        yield
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        raise typer.Exit(0) from None


def _run(
    rt: Runtime,
    srcs: list[Source],
    sinks: list[Sink],
    err: Console,
    report: Callable[[RunSummary], None],
    options: dict[str, Any],
) -> RunSummary:
    """run_live under a progress bar (frames done, of how many when the source knows); ``report``
    is called with the summary inside run_live, under its signal handlers."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from rpol_edge.live.launch import run_live

    columns = (TextColumn("run"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task("run", total=None)

        def update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        def report_after_bar(summary: RunSummary) -> None:
            bar.stop()  # the transient bar goes before the summary table is printed
            report(summary)

        return run_live(
            rt,
            srcs,
            sinks,
            progress=update,
            report=report_after_bar,
            **options,
        )


@contextmanager
def _source_errors(err: Console) -> Iterator[None]:
    """SourceError is not in cli's list of known errors: same one-line message, same exit code 2."""
    from rich.markup import escape

    try:
        yield
    except SourceError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


@contextmanager
def _log_to(err: Console) -> Iterator[None]:
    """Drops, reconnects and skipped frames are logged to stderr for the duration of this command."""
    logger = logging.getLogger("rpol_edge.live")
    handler = ConsoleHandler(err)
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


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
