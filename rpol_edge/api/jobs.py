"""The two jobs that make model files, as plain calls: fit w* on a folder, export the result.

Both take the same option names as the config records they fill (`FitConfig`, `ExportRequest`), so
a misspelt option is refused with the closest name and the list of valid ones instead of being
ignored; errors name these parameters (``int8=True needs ...``), as the caller wrote them. Fitting
and exporting need the ``torch`` and ``onnx`` extras; they are imported only when called.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rpol_edge.api.model import Model
from rpol_edge.api.option_check import check_options as _checked


def fit(root: str | Path, output: str | Path, data: str = "folder", **options: Any) -> Model:
    """Fit w* on the images under ``root`` (no labels used), write ``output`` (.rpol), open it.

    ``data`` is the reader: ``folder`` (any images), ``voc``, ``cub`` or ``wsol``; ``options`` are
    `rpol_edge.fitting.fitter.FitConfig` fields (``input_size``, ``backbone``, ``split``, ...).
    As on the command line, ``split="train"`` reads ``root/train`` when that folder exists and
    the whole of ``root`` otherwise.
    """
    from rpol_edge.fitting.config import FitConfig

    _checked(FitConfig, options, {"data", "root"})  # before PyTorch is imported: a typo is instant
    from rpol_edge.fitting.fitter import fit_to_file

    cfg = FitConfig(data=data, root=Path(root), **options)
    fit_to_file(cfg, Path(output))
    return Model(output, "torch", device=cfg.device)


def export(model: str | Path, out_dir: str | Path, **options: Any) -> dict[str, Path]:
    """Export a fitted ``.rpol`` (or build a TensorRT engine from an exported ``.onnx``).

    ``options`` are `rpol_edge.exporters.orchestrator.ExportRequest` fields: ``trt``, ``fp16``, ``int8``
    (with ``calib_data`` and ``calib_root``), ``batch=(min, opt, max)``, ``frame_size=(W, H)``...
    Returns the written files by format name (``onnx``, ``onnx-fp16``, ``trt``, ...).
    """
    from rpol_edge.exporters.orchestrator import ExportRequest, run_export

    _checked(ExportRequest, options, {"model", "out_dir"})
    for key in ("calib_root", "weights"):
        if options.get(key) is not None:
            options[key] = Path(options[key])
    return run_export(ExportRequest(model=Path(model), out_dir=Path(out_dir), **options)).files
