"""The metadata record of an OpenVINO IR (``model.xml`` + ``.bin`` written by
``rpol-edge export --openvino``): kept in the IR's rt_info, read without compiling the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rpol_edge.core.metadata import MetadataError, ModelMeta
from rpol_edge.core.onnx_meta import INPUT

RT_INFO_KEY = ["rpol_edge", "meta"]
"""Where an IR written by rpol-edge keeps the metadata record (``model.get_rt_info(*RT_INFO_KEY)``)."""


def read_ir_meta(xml: Path) -> tuple[ModelMeta, tuple[int, int | None]]:
    """Metadata record and batch range of an IR, without compiling it."""
    try:
        import openvino as ov
    except ImportError:
        raise MetadataError(
            f"{xml}: an OpenVINO IR needs openvino: pip install 'rpol-edge[openvino]'"
        ) from None
    try:
        model = ov.Core().read_model(str(xml))
    except Exception as exc:  # noqa: BLE001 - OpenVINO raises its own RuntimeError kinds
        raise MetadataError(f"{xml}: not a readable OpenVINO IR ({str(exc).splitlines()[0]})") from None
    return ir_meta(model, xml), ir_batch_range(model)


def ir_meta(model: Any, xml: Path) -> ModelMeta:
    if not model.has_rt_info(RT_INFO_KEY):
        raise MetadataError(
            f"{xml}: no rpol-edge metadata in the IR (not written by rpol-edge export --openvino?)"
        )
    return ModelMeta.from_json(model.get_rt_info(RT_INFO_KEY).astype(str), str(xml))


def ir_batch_range(model: Any) -> tuple[int, int | None]:
    first = model.input(INPUT).get_partial_shape()[0]
    if first.is_static:
        return int(first.get_length()), int(first.get_length())
    lo, hi = first.get_min_length(), first.get_max_length()
    return max(1, int(lo)), (int(hi) if hi > 0 else None)
