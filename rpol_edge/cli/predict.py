"""`rpol-edge predict`: an overlay PNG and a box JSON per image, from any model file."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from rpol_edge.cli.console import err, out, report_skips
from rpol_edge.cli.errors import cli_errors
from rpol_edge.cli.options import Boxes, Device, MinArea, ModelFile, RuntimeOpt, Weights
from rpol_edge.cli.progress import progress_bar


def predict(
    model: ModelFile,
    images: Annotated[
        list[Path],
        typer.Argument(
            help="image files, folders (every image under them, recursively) or quoted patterns "
            "('photos/*.jpg', 'data/**/*.png')"
        ),
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="folder for overlays and JSON")] = Path(
        "predictions"
    ),
    runtime: RuntimeOpt = "auto",
    device: Device = "auto",
    weights: Weights = None,
    min_area: MinArea = 0.0,
    boxes: Boxes = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="print the records as JSON lines instead of text")
    ] = False,
) -> None:
    """Box (original pixels, JSON) and overlay PNG for each image, and all boxes in predictions.jsonl."""
    from rpol_edge.data.folder import expand_images
    from rpol_edge.results.detection import check_boxes, check_min_area, predict_files
    from rpol_edge.runtimes import open_runtime

    with cli_errors():
        check_min_area(min_area)
        if boxes is not None:
            check_boxes(boxes)
        # a typed path that does not exist fails here, before any work; -o is never read back
        files = expand_images(images, exclude=[output])
        rt = open_runtime(model, runtime, device=device, weights=weights)
        with rt, progress_bar("predict") as update:
            records, skipped = predict_files(
                rt, files, output, progress=update, min_area=min_area, boxes=boxes
            )
        report_skips(skipped)
        if json_out:  # stdout is then only JSON, one record a line (the summary goes to stderr)
            for r in records:
                sys.stdout.write(json.dumps(r) + "\n")
            err.print(f"wrote {len(records)} overlay(s) and JSON file(s) to {output}", highlight=False)
            return
        for r in records:
            more = f" (+{len(r['boxes']) - 1} more)" if len(r["boxes"]) > 1 else ""
            out.print(f"{r['image']}: box={r['box']} score={r['score']:.3f}{more}", highlight=False)
        out.print(f"wrote {len(records)} overlay(s) and JSON file(s) to {output}")
