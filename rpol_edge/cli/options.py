"""Options several commands share, declared once (name, flag, help)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rpol_edge.runtimes import RUNTIMES

RUNTIME_CHOICES = " | ".join(["auto", *RUNTIMES])
"""``--runtime``'s choices, from the registry: a runtime added there is offered everywhere."""

Data = Annotated[str, typer.Option("--data", help="cub | wsol | voc | folder")]
Root = Annotated[Path, typer.Option("--root", help="data-set root folder")]
Split = Annotated[str, typer.Option("--split", help="split name (train, test, ...)")]
FitSource = Annotated[
    str,
    typer.Option(
        "--source",
        help="fit on frames of this source instead of a data set: camera://N, rtsp://, http(s):// "
        "MJPEG, a video file, a folder or a glob",
    ),
]
Frames = Annotated[int, typer.Option("--frames", help="how many frames of --source to fit on")]
Every = Annotated[
    float,
    typer.Option("--every", help="seconds between two sampled frames of --source (0: every frame)"),
]
RuntimeOpt = Annotated[str, typer.Option("--runtime", help=RUNTIME_CHOICES)]
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
        help="largest: one box, around the mask's largest region | peak: one box, around the region "
        "holding the map's maximum | all: the largest box, then one per other object | objects: one "
        "box per object, the strongest first; see docs/instances.md",
        # a literal "[default: ...]" in the help text would be read as rich markup and vanish
        show_default="the model's, see info; largest",
    ),
]
ModelFile = Annotated[
    Path,
    typer.Argument(
        help="model file: a fitted .rpol, an exported .onnx, an OpenVINO .xml or a TensorRT .engine",
        show_default=False,
    ),
]
Workers = Annotated[int, typer.Option(help="image-decoding worker processes (0: decode in this one)")]
BatchSize = Annotated[int, typer.Option(help="images per inference call")]
