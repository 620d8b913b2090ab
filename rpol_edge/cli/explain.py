"""`rpol-edge explain`: the representer points behind a map."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rpol_edge.cli.console import out
from rpol_edge.cli.errors import cli_errors
from rpol_edge.cli.options import BatchSize, Weights, Workers
from rpol_edge.cli.progress import progress_bar


def _parse_point(text: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--point {text!r}: expected X,Y in original-image pixels, e.g. 120,80") from None
    return x, y


def explain(
    model: Annotated[Path, typer.Argument(help="fitted model file (.rpol)")],
    images: Annotated[
        list[Path],
        typer.Argument(help="query image(s), folders or quoted patterns: one pass over the training set"),
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="folder for the figures and JSON")] = Path(
        "explain"
    ),
    point: Annotated[
        list[str] | None,
        typer.Option("--point", help="X,Y in original pixels (repeatable); default: map peak and lowest"),
    ] = None,
    data: Annotated[str | None, typer.Option("--data", help="training data kind (default: fit's)")] = None,
    root: Annotated[Path | None, typer.Option("--root", help="training data root (default: fit's)")] = None,
    split: Annotated[str | None, typer.Option("--split", help="training split (default: fit's)")] = None,
    top: Annotated[int, typer.Option("--top", help="K most excitatory and K most inhibitory images")] = 3,
    cache: Annotated[
        Path | None, typer.Option("--cache", help="float16 feature cache folder (written if empty)")
    ] = None,
    head_index: Annotated[int, typer.Option(help="class-wise model: which head (class row)")] = 0,
    weights: Weights = None,
    no_figure: Annotated[bool, typer.Option("--no-figure", help="JSON only")] = False,
    batch_size: BatchSize = 16,
    workers: Workers = 2,
) -> None:
    """Representer points: which training images (and where) push a query point's activation up or down."""
    from rpol_edge.data.folder import expand_images
    from rpol_edge.explain.explainer import ExplainConfig
    from rpol_edge.explain.explainer import explain as run_explain
    from rpol_edge.explain.figure import write_explanation

    with cli_errors():
        cfg = ExplainConfig(
            model=model,
            images=expand_images(images),
            points=[_parse_point(p) for p in point or []],
            data=data,
            root=root,
            split=split,
            top=top,
            cache=cache,
            head_index=head_index,
            weights=weights,
            batch_size=batch_size,
            workers=workers,
        )
        if output.exists() and not output.is_dir():
            raise ValueError(f"-o {output}: exists and is not a folder")
        with progress_bar("explain") as update:
            explanations = run_explain(cfg, update)
        files = []
        for ex in explanations:
            files += write_explanation(ex, output, figures=not no_figure)
            for q in ex.queries:
                out.print(
                    f"{Path(ex.meta['image']).name} {q.source} ({q.x:.0f},{q.y:.0f}): a_q={q.a_q:+.6f} "
                    f"sum r={q.sum_r:+.6f} |diff|={abs(q.sum_r - q.a_q):.1e}",
                    highlight=False,
                )
        out.print(f"wrote {len(files)} file(s) to {output}")
