"""`rpol-edge run`: parse options, build the source and outputs, call `run_live`, print the summary.

Heavy modules (OpenCV, the pipeline, the runtimes) are imported inside the command, so that
``rpol-edge --help`` and the other commands do not pay for them. The shared CLI helpers come from
``rpol_edge.cli.common``; ``rpol_edge.cli.app`` imports this module to register the command.
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
from rpol_edge.cli.options import Boxes, MinArea, ModelFile, RuntimeOpt
from rpol_edge.cli.paths import check_writable
from rpol_edge.live.source_registry import SCHEMES
from rpol_edge.live.sources import SourceError

if TYPE_CHECKING:
    from rich.console import Console

    from rpol_edge.live.outputs import Sink
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
STREAM_FIELD = "{stream}"
"""In --save, --jsonl and --save-frames, replaced by each source's number (0, 1, ...): one output
per stream. Without it, several streams share one output (a tiled mosaic for --save and --show)."""


def run_command(
    model: ModelFile,
    source: Annotated[list[str] | None, typer.Option("--source", help=SOURCE_HELP)] = None,
    camera: Annotated[
        int | None, typer.Option("--camera", help="V4L2 camera index (same as --source camera://N)")
    ] = None,
    runtime: RuntimeOpt = "auto",
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N")] = "auto",
    weights: Annotated[Path | None, typer.Option("--weights", help="backbone checkpoint file")] = None,
    precision: Annotated[str | None, typer.Option(help="torch runtime: fp32 | fp16 (CUDA)")] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads for inference")] = None,
    cuda_graph: Annotated[
        bool | None,
        typer.Option(
            "--cuda-graph/--no-cuda-graph",
            help="CUDA graphs (torch: default on for CUDA; trt: default off)",
            show_default=False,
        ),
    ] = None,
    show: Annotated[bool, typer.Option("--show", help="display a window (q or Esc ends the run)")] = False,
    save: Annotated[Path | None, typer.Option("--save", help="annotated video (.mp4, mp4v)")] = None,
    save_fps: Annotated[
        float | None,
        typer.Option(min=0.1, help="frame rate of --save (default: the source's, else 25)"),
    ] = None,
    jsonl: Annotated[Path | None, typer.Option("--jsonl", help="one JSON record per frame")] = None,
    save_frames: Annotated[
        Path | None, typer.Option("--save-frames", help="folder for annotated JPEG frames")
    ] = None,
    summary: Annotated[
        Path | None, typer.Option("--summary", help="write the end-of-run summary as JSON")
    ] = None,
    max_frames: Annotated[
        int | None, typer.Option(min=1, help="stop after this many frames (of each stream)")
    ] = None,
    open_timeout: Annotated[
        float, typer.Option(min=0.1, help="seconds to wait for the source to open")
    ] = 10.0,
    max_reconnects: Annotated[
        int,
        typer.Option(
            min=-1, help="reconnect attempts without a frame in between before giving up (-1: never)"
        ),
    ] = 10,
    min_area: MinArea = 0.0,
    sources: Annotated[
        Path | None,
        typer.Option("--sources", help="text file of sources: one URI or path a line, # comments"),
    ] = None,
    realtime: Annotated[
        bool,
        typer.Option(
            "--realtime", help="read video files at their frame rate, newest frame wins, like cameras"
        ),
    ] = False,
    batch_wait_ms: Annotated[
        float,
        typer.Option(
            min=0.0, help="several streams: ms a batch waits for the others' frames after its first one"
        ),
    ] = 5.0,
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
    from rpol_edge.core.files import atomic_write
    from rpol_edge.results.detection import check_boxes, check_min_area
    from rpol_edge.runtimes import open_runtime

    with cli_errors(), _source_errors(err), _log_to(err), _interrupt_ends_run(err), _made_folders() as made:
        # Each source with where it was given: a line of a --sources file is named in its errors.
        uris = [(uri, "") for uri in source or []]
        uris += _read_sources(sources) if sources is not None else []
        if camera is not None:
            uris.insert(0, (f"camera://{camera}", ""))
        if not uris:
            raise ValueError("give a source: --source URI (repeatable), --sources FILE or --camera N")
        check_min_area(min_area)
        if boxes is not None:
            check_boxes(boxes)
        written = (
            [_pattern_root(save_frames)] if save_frames is not None else []
        )  # never read back our output
        srcs = [_parse_at(uri, where, written) for uri, where in uris]
        outputs = {"--save": save, "--jsonl": jsonl}
        _check_outputs(
            _expand(outputs, len(srcs)) | {"--summary": summary}, _expand_folder(save_frames, len(srcs)), made
        )
        sinks = _sinks(show, save, save_fps, jsonl, save_frames, len(srcs))
        rt = open_runtime(
            model,
            runtime,
            device=device,
            weights=weights,
            precision=precision,
            threads=threads,
            cuda_graph=cuda_graph,
        )

        def report(result: RunSummary) -> None:
            _print_summary(out, result)
            if summary is not None:
                text = json.dumps(result.to_dict(), indent=1)
                atomic_write(summary, lambda tmp: _write_text(tmp, text))

        with rt:  # run_live opens the source (within --open-timeout) and closes it
            err.print(f"runtime: {rt.description} ({model})", highlight=False, markup=False)
            options = {
                "min_area": min_area,
                "realtime": realtime,
                "batch_wait": batch_wait_ms / 1e3,
                "boxes": boxes,
            }
            result = _run(rt, srcs, sinks, max_frames, open_timeout, max_reconnects, err, report, options)
        if result.stop_reason == "source lost":
            raise typer.Exit(1)


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


def _per_stream(path: Path, stream: int) -> Path:
    return Path(str(path).replace(STREAM_FIELD, str(stream)))


def _pattern_root(path: Path) -> Path:
    """The part of an output path before any {stream}: what the sources must not read from."""
    text = str(path)
    return Path(text[: text.index(STREAM_FIELD)]).parent if STREAM_FIELD in text else path


def _expand(files: dict[str, Path | None], n: int) -> dict[str, Path | None]:
    """Each option's file per stream when it holds {stream}, else itself (shared by all streams)."""
    out: dict[str, Path | None] = {}
    for option, path in files.items():
        if path is not None and STREAM_FIELD in str(path):
            out |= {f"{option} (stream {i})": _per_stream(path, i) for i in range(n)}
        else:
            out[option] = path
    return out


def _expand_folder(frames: Path | None, n: int) -> list[Path]:
    if frames is None:
        return []
    return [_per_stream(frames, i) for i in range(n)] if STREAM_FIELD in str(frames) else [frames]


def _check_outputs(files: dict[str, Path | None], frames: list[Path], made: list[Path]) -> None:
    """Refuse an output that cannot be written now, before the model loads and the source opens,
    not at the first frame or, for --summary, at the very end of a long run.

    Parent folders are created here (a path under /proc, or under a file, fails now) and listed
    in ``made``, for `_made_folders` to take back if the command fails.
    """
    for option, path in files.items():
        if path is None:
            continue
        if path.is_dir():
            raise ValueError(f"{option} {path} is a folder; give a file name")
        _make_folder(f"{option} {path}", path.parent, made)
        try:
            check_writable(path)
        except ValueError as exc:
            raise ValueError(f"{option} {path}: {exc}") from None
    for folder in frames:
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


def _sinks(
    show: bool,
    save: Path | None,
    save_fps: float | None,
    jsonl: Path | None,
    frames: Path | None,
    n: int,
) -> list[Sink]:
    """The outputs asked for: per stream where the path holds {stream}; otherwise one output for
    every stream (--save and --show: a mosaic of the streams when there are several)."""
    from rpol_edge.live.mosaic import MosaicSink
    from rpol_edge.live.outputs import FramesSink, JsonlSink, VideoSink, WindowSink

    def each(path: Path, make: Callable[[Path], Sink]) -> list[Sink]:
        if STREAM_FIELD not in str(path):
            return [make(path)]
        sinks = [make(_per_stream(path, i)) for i in range(n)]
        for i, sink in enumerate(sinks):
            sink.stream = i
        return sinks

    shared: list[Sink] = []  # image sinks of every stream: tiled when there are several
    sinks: list[Sink] = []
    if show:
        shared.append(WindowSink())
    if save is not None:
        if save.suffix.lower() != ".mp4":
            raise ValueError(f"--save {save}: give an .mp4 file name (mp4v codec)")
        videos = each(save, lambda p: VideoSink(p, save_fps))
        (shared if len(videos) == 1 else sinks).extend(videos)
    if shared:
        sinks[:0] = [MosaicSink(n, shared)] if n > 1 else shared
    if frames is not None:
        sinks += each(frames, lambda p: FramesSink(p, name_streams=n > 1 and STREAM_FIELD not in str(frames)))
    if jsonl is not None:
        sinks += each(jsonl, JsonlSink)
    return sinks


def _run(
    rt: Runtime,
    srcs: list[Source],
    sinks: list[Sink],
    max_frames: int | None,
    open_timeout: float,
    max_reconnects: int,
    err: Console,
    report: Callable[[RunSummary], None],
    options: dict[str, Any],
) -> RunSummary:
    """run_live under a progress bar (frames done, of how many when the source knows); ``report``
    is called with the summary inside run_live, under its signal handlers."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from rpol_edge.live.stages import run_live

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
            max_frames=max_frames,
            open_timeout=open_timeout,
            max_reconnects=max_reconnects,
            progress=update,
            report=report_after_bar,
            **options,
        )


def _print_summary(console: Console, s: RunSummary) -> None:
    from rich.table import Table

    table = Table("summary", "value")
    rows: dict[str, object] = {
        "source": s.source,
        "runtime": s.runtime,
        "stopped by": s.stop_reason,
        "frames": s.frames,
        "dropped frames": s.dropped_frames,
        "corrupt frames": s.corrupt_frames,
        "stream drops": s.stream_drops,
        "reconnects": f"{s.reconnects} ({s.reconnect_attempts} attempts)",
        "mean FPS": f"{s.mean_fps:.2f}",
        "latency p50 / p95 ms": f"{s.latency_ms['p50']:.1f} / {s.latency_ms['p95']:.1f}",
    }
    if len(s.streams) > 1:
        rows["source"] = f"{len(s.streams)} streams (below)"
        rows["mean FPS"] = f"{s.mean_fps:.2f} in total"
        rows["latency p50 / p95 ms"] = (
            f"{s.latency_ms['p50']:.1f} / {s.latency_ms['p95']:.1f} (p99 {s.latency_ms['p99']:.1f})"
        )
        rows["frames per inference"] = f"{s.batch_size['mean']:.2f} mean, {s.batch_size['max']:.0f} max"
    rows.update({f"{k} ms (mean)": f"{v['mean']:.1f}" for k, v in s.stage_ms.items()})
    for k, v in rows.items():
        table.add_row(k, str(v))
    console.print(table)
    if len(s.streams) > 1:
        console.print(_streams_table(s))


def _streams_table(s: RunSummary) -> Any:
    """One row per stream: what it gave, lost and took (the run's totals are above)."""
    from rich.table import Table

    table = Table(
        "#", "source", "ended by", "frames", "dropped", "drops", "reconnects", "FPS", "p50 / p95 ms"
    )
    for p in s.streams:
        table.add_row(
            str(p.stream),
            p.source,
            p.ended_by,
            str(p.frames),
            str(p.dropped_frames),
            str(p.stream_drops),
            f"{p.reconnects} ({p.reconnect_attempts})",
            f"{p.mean_fps:.2f}",
            f"{p.latency_ms['p50']:.1f} / {p.latency_ms['p95']:.1f}",
        )
    return table


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
