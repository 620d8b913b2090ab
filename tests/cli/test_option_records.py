"""The options of `rpol-edge export` and `rpol-edge fit` map onto the library's records by name."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

from rpol_edge.cli.export import export, export_request
from rpol_edge.cli.fit import NOT_CONFIG, fit, fit_config
from rpol_edge.exporters.orchestrator import ExportRequest
from rpol_edge.fitting.config import FitConfig


def _defaults(command: object = export) -> dict[str, object]:
    params = inspect.signature(command).parameters.values()  # type: ignore[arg-type]
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def test_every_option_is_a_request_field() -> None:
    fields = {f.name for f in dataclasses.fields(ExportRequest)}
    assert set(inspect.signature(export).parameters) - {"output", "onnx"} == fields - {"out_dir"}


def test_the_defaults_are_the_library_defaults() -> None:
    req = export_request({"model": Path("m.rpol"), **_defaults()})
    assert req == ExportRequest(model=Path("m.rpol"), out_dir=Path("export"))


def test_texts_are_parsed() -> None:
    options = _defaults() | {
        "model": Path("m.onnx"),
        "output": Path("out"),
        "batch": "1:4:8",
        "trt_targets": "8.6,10.3",
        "frame_size": "640x480",
    }
    req = export_request(options)
    assert (req.out_dir, req.batch, req.frame_size) == (Path("out"), (1, 4, 8), (640, 480))
    assert req.trt_targets is not None and len(req.trt_targets) == 2


def test_fit_options_are_config_fields() -> None:
    fields = {f.name for f in dataclasses.fields(FitConfig)}
    options = set(inspect.signature(fit).parameters) - set(NOT_CONFIG)
    assert options - {"tau"} | {"tau_mode"} <= fields  # a few fields are for Python callers only


def test_fit_defaults_and_the_threshold_rule() -> None:
    base = _defaults(fit) | {"root": Path("images")}
    assert fit_config(base) == FitConfig(root=Path("images"))
    fixed = fit_config(base | {"threshold": 0.3, "tau": "mean"})
    assert (fixed.operating_point, fixed.threshold, fixed.tau_mode) == ("fixed", 0.3, "mean")
    assert fit_config(base | {"threshold": 0.3, "operating_point": "otsu"}).operating_point == "otsu"
