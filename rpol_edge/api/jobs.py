"""The two jobs that make model files, as plain calls: fit w* on a folder or a source, export the
result.

Both take the same option names as the config records they fill (`FitConfig`, `ExportRequest`), so
a misspelt option is refused with the closest name and the list of valid ones instead of being
ignored; errors name these parameters (``int8=True needs ...``), as the caller wrote them. Fitting
and exporting need the ``torch`` and ``onnx`` extras; they are imported only when called.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rpol_edge.api.model import Model
from rpol_edge.api.option_check import check_options as _checked

if TYPE_CHECKING:
    from rpol_edge.fitting.checkpoint import CheckpointOptions
    from rpol_edge.fitting.config import FitConfig
    from rpol_edge.fitting.distributed import DistContext
    from rpol_edge.fitting.fitter import FitResult
    from rpol_edge.live.sampling import SourceCount


def fit(
    root: str | Path | None = None, output: str | Path | None = None, data: str = "", **options: Any
) -> Model:
    """Fit w* on the images under ``root`` (no labels used), or on frames of a source; write
    ``output`` (.rpol) and open it.

    ``data`` is the reader: ``folder`` (the default: any images), ``voc``, ``cub`` or ``wsol``.
    Instead of ``root``, ``source`` is any source `run` takes (``"camera://0"``, ``"rtsp://..."``,
    an HTTP MJPEG URL, a video file, a folder) with ``frames`` (how many) and ``every`` (seconds
    between two, 0: every frame), framed as a data set's images are. ``options`` are
    `rpol_edge.fitting.fitter.FitConfig` fields (``input_size``, ``backbone``, ``split``, ...).
    As on the command line, ``split="train"`` reads ``root/train`` when that folder exists and
    the whole of ``root`` otherwise.
    """
    from rpol_edge.fitting.config import FitConfig

    _checked(FitConfig, options, {"data", "root"})  # before PyTorch is imported: a typo is instant
    if output is None:
        raise TypeError("fit() needs output, the .rpol file to write")
    cfg = FitConfig(data=data, root=None if root is None else Path(root), **options)
    cfg.validate()
    fit_job(cfg, Path(output))
    return Model(output, "torch", device=cfg.device)


def fit_job(
    cfg: FitConfig,
    output: Path,
    checkpoints: CheckpointOptions | None = None,
    progress_for: Callable[[DistContext], AbstractContextManager[Callable[[int, int], None]]] | None = None,
) -> tuple[FitResult, DistContext, SourceCount]:
    """The fit job as `fit` and ``rpol-edge fit`` run it (`rpol_edge.fitting.fitter.fit_to_file`),
    a source opened here, where the sources are (`rpol_edge.live.sampling`): its undecodable
    frames and reconnects are counted in the `SourceCount` returned."""
    from rpol_edge.fitting.fitter import fit_to_file
    from rpol_edge.live.sampling import SourceCount, source_reader

    reader = source_reader(cfg.source, cfg.frames, cfg.every, cfg.batch_size) if cfg.source else None
    result, ctx = fit_to_file(cfg, output, checkpoints, progress_for, reader)
    return result, ctx, reader.counts if reader is not None else SourceCount()


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
