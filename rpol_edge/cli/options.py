"""Options several commands share, declared once (name, flag, help)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Data = Annotated[str, typer.Option("--data", help="cub | wsol | voc | folder")]
Root = Annotated[Path, typer.Option("--root", help="data-set root folder")]
Split = Annotated[str, typer.Option("--split", help="split name (train, test, ...)")]
RuntimeOpt = Annotated[str, typer.Option("--runtime", help="auto | torch | ort | openvino | trt")]
Device = Annotated[str, typer.Option("--device", help="auto (CUDA when reachable) | cpu | cuda | cuda:N")]
Weights = Annotated[Path | None, typer.Option("--weights", help="backbone checkpoint file")]
CudaGraph = Annotated[
    bool | None,
    typer.Option(
        "--cuda-graph/--no-cuda-graph",
        help="CUDA graphs (torch: default on for CUDA; trt: default off); falls back with a log line",
        show_default=False,
    ),
]
MinArea = Annotated[
    float,
    typer.Option(
        "--min-area",
        help="report no object (box null) when the mask covers less than this share of the input crop "
        "(0: any mask is an object)",
    ),
]
Boxes = Annotated[
    str | None,
    typer.Option(
        "--boxes",
        help="largest: one box, around the mask's largest region | all: one box per object "
        "(docs/instances.md) [default: the model's, see info; largest]",
        show_default=False,
    ),
]
