"""`rpol-edge info`: the metadata record of any model file (and the trtexec line for an ONNX)."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from rpol_edge.cli.common import (
    cli_errors,
    out,
)


def info(model: Path) -> None:
    """Print the metadata record of a model file, ONNX file or engine."""
    from rpol_edge.core.model_file import read_meta

    with cli_errors():
        meta = read_meta(model)
        table = Table(show_header=False, box=None)
        for k, v in meta.to_dict().items():
            table.add_row(k, str(v))
        table.add_row("mask rule", meta.operating.describe())
        out.print(table)
        if model.suffix.lower() == ".onnx":
            from rpol_edge.exporters.trtexec import trtexec_lines

            lines = trtexec_lines(model)
            if not lines:
                out.print("no trtexec command: the ONNX Runtime (CPU) INT8 graph is not a TensorRT source")
            for label, cmd in lines:
                out.print(f"# trtexec, {label}:", highlight=False)
                out.print(cmd, markup=False, highlight=False, soft_wrap=True)
