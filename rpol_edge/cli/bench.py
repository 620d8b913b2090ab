"""`rpol-edge bench`: the one benchmark, every row in its own process."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from rpol_edge.bench import report
from rpol_edge.bench.stats import Row
from rpol_edge.cli.console import err, out
from rpol_edge.cli.errors import cli_errors
from rpol_edge.cli.options import CudaGraph, Device
from rpol_edge.cli.paths import check_writable
from rpol_edge.data.sample import SAMPLE_ROOT

Models = Annotated[
    list[str],
    typer.Argument(
        help="model files (.rpol, .onnx, .engine) on their runtime, or PATH@key=value,... with runtime "
        "options, e.g. m.rpol@precision=fp16 exp/model.onnx@runtime=ort,device=cuda"
    ),
]
Images = Annotated[
    Path, typer.Option(help="folder of images to time on", show_default="the bundled sample photos")
]
Batch = Annotated[str, typer.Option(help="batch sizes, comma-separated, e.g. 1,4")]
Iters = Annotated[int, typer.Option(help="timed calls per row and batch size")]
Warmup = Annotated[int, typer.Option(help="untimed calls before them")]
Threads = Annotated[int | None, typer.Option(help="CPU threads for torch/ORT")]
Reference = Annotated[bool, typer.Option(help="time the reference implementation's pipeline")]
Backbone = Annotated[bool, typer.Option(help="time the bare backbone per runtime (needs .rpol)")]
EvalData = Annotated[str, typer.Option(help="accuracy + parity per row (voc, cub, wsol)")]
EvalRoot = Annotated[Path | None, typer.Option(help="data root for --eval-data")]
EvalSplit = Annotated[str, typer.Option(help="split for --eval-data")]
WorkDir = Annotated[Path, typer.Option(help="bare-backbone ONNX and scratch files")]
JsonOut = Annotated[Path | None, typer.Option("--json", help="write the record (machine, rows)")]
Markdown = Annotated[Path | None, typer.Option(help="write the tables as Markdown here")]
PlotOut = Annotated[Path | None, typer.Option("--plot", help="PNG: p50 ms per row/batch/stage")]
Rounds = Annotated[
    int, typer.Option(help="time every row this many times, a new process each, rows interleaved")
]


def bench(
    models: Models,
    images: Images = SAMPLE_ROOT / "JPEGImages",
    device: Device = "auto",
    batch: Batch = "1",
    iters: Iters = 30,
    warmup: Warmup = 5,
    threads: Threads = None,
    reference: Reference = True,
    backbone: Backbone = True,
    eval_data: EvalData = "",
    eval_root: EvalRoot = None,
    eval_split: EvalSplit = "test",
    work_dir: WorkDir = Path("bench_work"),
    json_out: JsonOut = None,
    markdown: Markdown = None,
    plot_out: PlotOut = None,
    cuda_graph: CudaGraph = None,
    rounds: Rounds = 1,
) -> None:
    """The one benchmark: each runtime x precision x batch in its own process, against the
    reference pipeline and the bare backbone; p50/p90/p99 per stage, throughput, size, peak memory."""
    import shlex

    from rpol_edge.bench import runner
    from rpol_edge.bench import spec as bench_spec
    from rpol_edge.data.images import is_image_path

    with cli_errors():
        files = sorted(p for p in images.iterdir() if is_image_path(p))[:32] if images.is_dir() else [images]
        if not files:
            raise ValueError(f"no images in {images}")
        try:
            batches = sorted({int(x) for x in batch.split(",") if x.strip()})
        except ValueError:
            raise ValueError(f"--batch {batch!r}: give sizes like 1,4") from None
        if not batches or min(batches) < 1:
            raise ValueError(f"--batch {batch!r}: sizes must be >= 1")
        if rounds < 1:
            raise ValueError(f"--rounds {rounds}: give 1 or more")
        if bool(eval_data) != bool(eval_root):
            raise ValueError("--eval-data and --eval-root go together")
        for path in (json_out, markdown, plot_out):
            if path:
                check_writable(path)
        specs = [bench_spec.parse_spec(m) for m in models]
        if cuda_graph is not None:  # a spec's own @cuda_graph=... wins; ONNX Runtime has no such option
            for spec in specs:
                if spec.runtime in ("torch", "trt"):
                    spec.options.setdefault("cuda_graph", cuda_graph)
        cfg = runner.BenchConfig(
            specs=specs, images=files, batches=batches, iters=iters,
            warmup=warmup, device=device, threads=threads, reference=reference, backbone=backbone,
            work_dir=work_dir, eval_data=eval_data, eval_root=eval_root, eval_split=eval_split,
            rounds=rounds,
        )  # fmt: skip
        with err.status("benchmark...") as status:
            rows = runner.run_bench(cfg, lambda what: status.update(f"timing {what} (own process)..."))
        for table in bench_tables(rows, eval_split):
            out.print(table)
        command = "rpol-edge " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        rec = report.record(rows, cfg, command)
        if json_out:
            report.write_json(json_out, rec)
        if markdown:
            from rpol_edge.core.files import write_text_atomic

            write_text_atomic(markdown, report.to_markdown(rows, f"`{command}`\n"))
        if plot_out:
            title = f"{rec['machine'].get('gpu') or platform_name()}, {len(files)} images"
            report.plot(rows, plot_out, title)


def bench_tables(rows: list[Row], eval_split: str = "test") -> list[Table]:
    """The timing tables (and the accuracy table when rows were evaluated), readable at 80
    columns: 16 columns do not fit, so three tables, each naming its rows; cells fold onto a second
    line instead of being cut to "refere..." or "6..."."""
    title = (
        "ms per batch; img/s; vs ref / vs 1st = speed-up over the reference / the first model given;"
        " vs backbone = infer time over the bare one"
    )
    cells = report.table_rows(rows)
    at = {name: i for i, name in enumerate(report.COLUMNS)}
    parts = [
        (title, ("row", "runtime", "prec", "batch", "total p50", "img/s", "vs ref", "vs 1st")),
        (
            "per stage, ms per batch",
            ("row", "batch", "pre p50", "infer p50", "infer p90", "infer p99", "post p50"),
        ),
        ("against the bare backbone, and size", ("row", "batch", "vs backbone", "MB", "peak MB")),
    ]
    tables = [_table(heading, cols, [[r[at[c]] for c in cols] for r in cells]) for heading, cols in parts]
    acc = report.accuracy_rows(rows)
    if acc:
        heading = f"accuracy and parity with the reference ({eval_split})"
        tables.append(_table(heading, report.ACC_COLUMNS, acc))
    return tables


def _table(title: str, columns: Sequence[str], cells: list[list[str]]) -> Table:
    table = Table(title=title)
    for name in columns:
        table.add_column(name, overflow="fold")
    for r in cells:
        table.add_row(*r)
    return table


def platform_name() -> str:
    import os
    import platform

    return f"{platform.machine()} {platform.processor() or ''} x{os.cpu_count()}".strip()
