"""rpol-edge: unsupervised object localization with representer point selection, for edge devices.

    import rpol_edge
    rpol_edge.fit("photos/", "model.rpol").close()        # w* in closed form, no labels
    with rpol_edge.load("model.onnx") as model:           # exported with rpol_edge.export
        det = model.predict("photo.jpg")
    det.box, det.score, det.score_map, det.mask
    rpol_edge.refit("model.onnx", "lobby.onnx", source="rtsp://cam/stream", frames=200, every=2.0)

The names resolve on first use (PEP 562), so ``import rpol_edge`` stays light and never imports
torch: a device that only runs exported graphs needs neither torch nor the fitting code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_API = {
    "Model": "rpol_edge.api.model",
    "Prediction": "rpol_edge.api.model",
    "load": "rpol_edge.api.model",
    "fit": "rpol_edge.api.jobs",
    "export": "rpol_edge.api.jobs",
    "refit": "rpol_edge.api.refit_job",
    "SAMPLE_ROOT": "rpol_edge.data.sample",
}
__all__ = ["SAMPLE_ROOT", "Model", "Prediction", "__version__", "export", "fit", "load", "refit"]

if TYPE_CHECKING:
    from rpol_edge.api.jobs import export, fit
    from rpol_edge.api.model import Model, Prediction, load
    from rpol_edge.api.refit_job import refit
    from rpol_edge.data.sample import SAMPLE_ROOT


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rpol_edge' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


# Old import paths that exported Triton ensembles and DeepStream READMEs use (_moved.py).
importlib.import_module("rpol_edge._moved").install()
