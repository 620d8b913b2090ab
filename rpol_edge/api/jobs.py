"""The jobs that make model files, as plain calls: fit w* on a folder, export the result, refit an
exported model through its own runtime.

Both take the same option names as the config records they fill (`FitConfig`, `ExportRequest`), so
a misspelt option is refused with the list of valid ones instead of being ignored. Fitting and
exporting need the ``torch`` and ``onnx`` extras; they are imported only when called.
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Any

from rpol_edge.api.model import Model


def _checked(cls: type, given: dict[str, Any], fixed: set[str]) -> None:
    names = {f.name for f in dataclasses.fields(cls)} - fixed
    for key in given:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise TypeError(f"unknown option {key!r}{hint}; options: {', '.join(sorted(names))}")


def fit(root: str | Path, output: str | Path, data: str = "folder", **options: Any) -> Model:
    """Fit w* on the images under ``root`` (no labels used), write ``output`` (.rpol), open it.

    ``data`` is the reader: ``folder`` (any images), ``voc``, ``cub`` or ``wsol``; ``options`` are
    `rpol_edge.fitting.pipeline.FitConfig` fields (``input_size``, ``backbone``, ``split``, ...).
    As on the command line, ``split="train"`` reads ``root/train`` when that folder exists and
    the whole of ``root`` otherwise.
    """
    from rpol_edge.fitting.pipeline import FitConfig, fit_to_file

    _checked(FitConfig, options, {"data", "root"})
    cfg = FitConfig(data=data, root=Path(root), **options)
    fit_to_file(cfg, Path(output))
    return Model(output, "torch", device=cfg.device)


def refit(model: str | Path, output: str | Path, **options: Any) -> Model:
    """Refit w* of an exported model (``.onnx``, ``.xml``, ``.engine``) through its own runtime,
    without PyTorch; write ``output`` (the same kind) and open it.

    ``options`` are `rpol_edge.refitting.job.RefitRequest` fields: a data set (``data="folder"``,
    ``root=...``, ``split``) or a source (``source="rtsp://..."``, ``frames=200``, ``every=2.0``),
    and ``runtime``, ``device``, ``threads``, ``batch_size``, ``tau_mode``, ``features_from``.
    """
    from rpol_edge.refitting.job import RefitRequest
    from rpol_edge.refitting.job import refit as run_refit

    _checked(RefitRequest, options, {"model", "output"})
    for key in ("root", "features_from"):
        if options.get(key) is not None:
            options[key] = Path(options[key])
    req = RefitRequest(model=Path(model), output=Path(output), **options)
    run_refit(req)
    runtime = req.runtime if req.runtime in ("ort", "openvino") else "auto"
    return Model(output, runtime, device=req.device)


def export(model: str | Path, out_dir: str | Path, **options: Any) -> dict[str, Path]:
    """Export a fitted ``.rpol`` (or build a TensorRT engine from an exported ``.onnx``).

    ``options`` are `rpol_edge.exporters.pipeline.ExportRequest` fields: ``trt``, ``fp16``, ``int8``
    (with ``calib_data`` and ``calib_root``), ``batch=(min, opt, max)``, ``frame_size=(W, H)``...
    Returns the written files by format name (``onnx``, ``onnx-fp16``, ``trt``, ...).
    """
    from rpol_edge.exporters.pipeline import ExportRequest, run_export

    _checked(ExportRequest, options, {"model", "out_dir"})
    for key in ("calib_root", "weights"):
        if options.get(key) is not None:
            options[key] = Path(options[key])
    return run_export(ExportRequest(model=Path(model), out_dir=Path(out_dir), **options)).files
