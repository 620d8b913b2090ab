"""`refit` as a plain call: an exported model fitted again through its own runtime, no PyTorch
(rpol_edge/refitting), then opened. Torch-free, so `Model.refit` stays on the runtime side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rpol_edge.api.model import Model
from rpol_edge.api.option_check import check_options


def refit(model: str | Path, output: str | Path, **options: Any) -> Model:
    """Refit w* of an exported model (``.onnx``, ``.xml``, ``.engine``) through its own runtime,
    without PyTorch; write ``output`` (the same kind) and open it.

    ``options`` are `rpol_edge.refitting.job.RefitRequest` fields: a data set (``data="folder"``,
    ``root=...``, ``split``) or a source (``source="rtsp://..."``, ``frames=200``, ``every=2.0``),
    and ``runtime``, ``device``, ``threads``, ``batch_size``, ``tau_mode``, ``features_from``.
    """
    from rpol_edge.refitting.job import RefitRequest
    from rpol_edge.refitting.job import refit as run_refit

    check_options(RefitRequest, options, {"model", "output"})
    for key in ("root", "features_from"):
        if options.get(key) is not None:
            options[key] = Path(options[key])
    req = RefitRequest(model=Path(model), output=Path(output), **options)
    run_refit(req)
    runtime = req.runtime if req.runtime in ("ort", "openvino") else "auto"
    return Model(output, runtime, device=req.device)
