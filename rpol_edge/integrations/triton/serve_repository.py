"""The model repository ``rpol-edge serve`` gives its Triton server: one Python-backend model that
takes raw RGB frames of any size and answers boxes in original pixels.

Its ``config.pbtxt`` is written with the same helpers as ``export --triton``
(`rpol_edge.integrations.triton.repository`): the client-facing tensors are the exported ensemble's, so a
client
talks to either server the same way. The model itself is `rpol_edge.integrations.triton.serve_model` (with
`rpol_edge.integrations.triton.wire` beside it), which hands every batch to the rpol-edge worker named in the
config's ``worker_command``.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from rpol_edge.core.metadata import ModelMeta
from rpol_edge.integrations.triton import serve_model, wire
from rpol_edge.integrations.triton.repository import base_config, check_config, frame_io, write_config
from rpol_edge.integrations.triton.server_env import ServerEnv


def worker_command(
    model: Path, runtime: str, device: str, threads: int, min_area: float, boxes: str | None = None
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "rpol_edge.integrations.triton.worker",
        "--model",
        str(Path(model).resolve()),
        "--runtime",
        runtime,
        "--device",
        device,
        "--threads",
        str(threads),
        "--min-area",
        repr(min_area),
        *(["--boxes", boxes] if boxes else []),
    ]


def write_serve_repository(
    repo: Path,
    name: str,
    meta: ModelMeta,
    env: ServerEnv,
    command: list[str],
    max_batch: int,
    batch_delay_us: int,
    instances: int,
    max_frame_pixels: int,
) -> Any:
    """The repository for one model; returns its parsed (and checked) config."""
    folder = repo / name
    inputs, outputs = frame_io(meta)
    params = {
        "EXECUTION_ENV_PATH": str(env.root),
        "worker_command": json.dumps(command),
        "max_frame_pixels": str(max_frame_pixels),
    }
    cfg = base_config(
        name,
        inputs,
        outputs,
        max_batch,
        meta,
        backend="python",
        instances=instances,
        batch_delay_us=batch_delay_us if max_batch > 1 else None,
        parameters=params,
    )
    (folder / "1").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(serve_model.__file__, folder / "1" / "model.py")
    shutil.copyfile(wire.__file__, folder / "1" / "wire.py")
    return check_config(write_config(folder, cfg), inputs, outputs)
