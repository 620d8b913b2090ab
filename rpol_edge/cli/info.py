"""`rpol-edge info`: the metadata record of any model file (and the trtexec line for an ONNX)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from rpol_edge.cli.console import out
from rpol_edge.cli.errors import cli_errors
from rpol_edge.cli.options import ModelFile


def batch_range(model: Path) -> tuple[int, int | None]:
    """The batch sizes an exported graph or engine takes."""
    if model.suffix.lower() == ".onnx":
        from rpol_edge.core.onnx_meta import onnx_batch_range

        return onnx_batch_range(model)
    if model.suffix.lower() == ".xml":
        from rpol_edge.core.ir_meta import read_ir_meta

        return read_ir_meta(model)[1]
    from rpol_edge.core.engine_meta import read_engine_meta

    side = read_engine_meta(model)
    return side.min_batch, side.max_batch


def info(
    model: ModelFile,
    json_out: Annotated[bool, typer.Option("--json", help="print the whole record as JSON")] = False,
) -> None:
    """Print the metadata record of a model file, ONNX file or engine."""
    from rpol_edge.core.model_file import read_meta

    with cli_errors():
        meta = read_meta(model)
        if json_out:
            record: dict[str, object] = {"file": str(model), "meta": meta.to_dict()}
            if model.suffix.lower() != ".rpol":
                record["tensors"] = dict(meta.io(batch_range(model)))
            sys.stdout.write(json.dumps(record, indent=1) + "\n")
            return
        table = Table(show_header=False, box=None)
        for k, v in meta.shown().items():
            table.add_row(k, str(v))
        table.add_row("mask rule", meta.operating.describe())
        if model.suffix.lower() != ".rpol":
            for name, what in meta.io(batch_range(model)):
                table.add_row(name, what)
        out.print(table)
        if model.suffix.lower() == ".onnx":
            from rpol_edge.exporters.trt.trtexec import trtexec_lines

            lines = trtexec_lines(model)
            if not lines:
                out.print("no trtexec command: the ONNX Runtime (CPU) INT8 graph is not a TensorRT source")
            for label, cmd in lines:
                out.print(f"# trtexec, {label}:", highlight=False)
                out.print(cmd, markup=False, highlight=False, soft_wrap=True)
