"""Runtimes as a typed registry: name -> where it lives, what it runs, which extra it needs.

Re-exports only: the registry lives in `registry`."""

from __future__ import annotations

from rpol_edge.runtimes.registry import (
    DEVICE_KINDS,
    RUNTIMES,
    InferenceError,
    Output,
    Runtime,
    RuntimeInfo,
    check_device,
    choose,
    cuda_available,
    infer_all,
    missing_modules,
    open_runtime,
    resolve_device,
)

__all__ = [
    "DEVICE_KINDS",
    "InferenceError",
    "Output",
    "RUNTIMES",
    "Runtime",
    "RuntimeInfo",
    "check_device",
    "choose",
    "cuda_available",
    "infer_all",
    "missing_modules",
    "open_runtime",
    "resolve_device",
]
