"""`rpol-edge predict`: an overlay PNG and a box JSON per image, from any model file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rpol_edge.cli.common import (
    cli_errors,
    out,
    progress_bar,
    report_skips,
)
from rpol_edge.cli.options import Device, RuntimeOpt, Weights


def predict(
    model: Path,
    images: Annotated[list[Path], typer.Argument(help="image files")],
    output: Annotated[Path, typer.Option("-o", "--output", help="folder for overlays and JSON")] = Path(
        "predictions"
    ),
    runtime: RuntimeOpt = "auto",
    device: Device = "auto",
    weights: Weights = None,
) -> None:
    """Box (original pixels, JSON) and overlay PNG for each image."""
    from rpol_edge.evaluate.predict import predict_files
    from rpol_edge.runtimes import open_runtime

    with cli_errors():
        rt = open_runtime(model, runtime, device=device, weights=weights)
        with rt, progress_bar("predict") as update:
            records, skipped = predict_files(rt, images, output, progress=update)
        report_skips(skipped)
        for r in records:
            out.print(f"{r['image']}: box={r['box']} score={r['score']:.3f}", highlight=False)
        out.print(f"wrote {len(records)} overlay(s) and JSON file(s) to {output}")
