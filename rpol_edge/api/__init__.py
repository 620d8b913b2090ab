"""The public Python API: `fit`, `load`, `Model.predict`, `export`, `refit` (re-exported by
``rpol_edge``)."""

from rpol_edge.api.jobs import export, fit
from rpol_edge.api.model import Model, Prediction, load
from rpol_edge.api.refit_job import refit

__all__ = ["Model", "Prediction", "export", "fit", "load", "refit"]
