"""The configurations the GPU check measures: torch CUDA runtime options by name, the defaults, the target."""

from __future__ import annotations

from typing import Any

SPEEDUP_TARGET = 2.5
"""CUDA graph over plain torch CUDA at batch 1."""

PLAIN = {"cuda_graph": False, "fold_bn": False, "cudnn_benchmark": False}
"""The plain torch CUDA runtime the target is measured against: eager, as it was before graphs."""

GRAPH = {**PLAIN, "cuda_graph": True}
CONFIGS: dict[str, dict[str, Any]] = {
    "fp32_plain": {"precision": "fp32", **PLAIN},
    "fp32_graph_only": {"precision": "fp32", **GRAPH},
    "fp32_graph_benchmark": {"precision": "fp32", **GRAPH, "cudnn_benchmark": True},
    "fp32_graph_fold": {"precision": "fp32", **GRAPH, "fold_bn": True},
    "fp32_graph_fold_benchmark": {"precision": "fp32", **GRAPH, "fold_bn": True, "cudnn_benchmark": True},
    "fp32_eager_fold_benchmark": {"precision": "fp32", **PLAIN, "fold_bn": True, "cudnn_benchmark": True},
    "fp16_plain": {"precision": "fp16", **PLAIN},
    "fp16_graph_fold": {"precision": "fp16", **GRAPH, "fold_bn": True},
    "fp16_graph_fold_benchmark": {"precision": "fp16", **GRAPH, "fold_bn": True, "cudnn_benchmark": True},
}
"""Name -> runtime options, every option spelled out (a later change of the runtime's defaults
does not change what a name measured)."""

DEFAULTS = {"fp32": "fp32_graph_fold", "fp16": "fp16_graph_fold"}
"""What ``open_runtime(model, device="cuda", precision=...)`` does with no other option."""

PROFILE = ("fp32_plain", "fp32_graph_fold", "fp16_graph_fold")
"""Configurations whose eager forward is profiled kernel by kernel (graphs replay the same kernels)."""
