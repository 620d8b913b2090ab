"""Read the metadata record of any artifact: model file, ONNX file, or engine (its sidecar)."""

from __future__ import annotations

from pathlib import Path

from rpol_edge.core.metadata import MetadataError, ModelMeta


def read_meta(path: Path) -> ModelMeta:
    suffix = path.suffix.lower()
    if not path.is_file():
        raise MetadataError(f"{path}: no such file")
    if suffix == ".rpol":
        from rpol_edge.core.artifact import ModelArtifact

        return ModelArtifact.load(path).meta
    if suffix == ".onnx":
        from rpol_edge.core.onnx_meta import read_onnx_meta

        return read_onnx_meta(path)
    if suffix == ".xml":
        from rpol_edge.core.ir_meta import read_ir_meta

        return read_ir_meta(path)[0]
    if suffix in (".engine", ".plan"):
        from rpol_edge.core.engine_meta import read_engine_meta

        return read_engine_meta(path).model
    raise MetadataError(f"{path}: unknown artifact type {suffix!r} (expected .rpol, .onnx, .xml, .engine)")
