"""Factories: a fitted model file -> the reference Localizer module, with the backbone rebuilt
and checked against the hash recorded at fit time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rpol_edge.backbones.timm_backbone import BackboneError, BackboneSpec, build_backbone
from rpol_edge.core.artifact import ModelArtifact
from rpol_edge.core.metadata import ModelMeta
from rpol_edge.core.scene import background
from rpol_edge.modeling.localizer import Localizer


def backbone_spec(meta: ModelMeta, weights: Path | None = None) -> BackboneSpec:
    path = str(weights) if weights else meta.extra.get("weights", "")
    return BackboneSpec(name=meta.backbone, weights=path, output_stride=meta.output_stride)


def build_localizer(artifact: ModelArtifact, weights: Path | None = None) -> Localizer:
    """Rebuild the exact module that was fitted; refuses a checkpoint whose hash differs."""
    meta = artifact.meta
    spec = backbone_spec(meta, weights)
    if spec.weights and not Path(spec.weights).is_file():
        raise BackboneError(
            f"the model was fitted on weights {spec.weights}, which are not here; pass weights=PATH"
        )
    bb = build_backbone(spec, meta.input_size)
    if bb.weights_sha256 != meta.weights_sha256:
        raise BackboneError(
            f"backbone weights {bb.weights_sha256[:12]} differ from those the model was fitted on "
            f"({meta.weights_sha256[:12]}): refit, or pass the original checkpoint as weights=PATH"
        )
    if bb.channels != meta.channels:
        raise BackboneError(f"backbone gives {bb.channels} channels, the model expects {meta.channels}")
    return Localizer(
        bb.module,
        torch.from_numpy(artifact.w),
        meta.mean,
        meta.std,
        meta.input_size,
        meta.threshold,
        meta.head,
        meta.operating,
        None if artifact.cells is None else torch.from_numpy(background(artifact.cells)),
        None if artifact.zstats is None else torch.from_numpy(np.asarray(artifact.zstats, np.float32)),
    )
