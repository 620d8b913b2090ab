"""Runtimes as a typed registry: name -> where it lives, what it runs, which extra it needs.

Backends are imported only when chosen, so ``import rpol_edge.runtimes`` never needs onnxruntime,
TensorRT or CUDA; a missing one is answered with the extra to install.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rpol_edge.runtimes.base import InferenceError, Output, Runtime, infer_all

__all__ = ["RUNTIMES", "InferenceError", "Output", "Runtime", "RuntimeInfo", "infer_all", "open_runtime"]


@dataclass(frozen=True)
class RuntimeInfo:
    name: str
    module: str
    cls: str
    suffixes: tuple[str, ...]
    """Model files it runs."""
    requires: tuple[str, ...]
    """Python modules that must import."""
    extra: str
    description: str


RUNTIMES: dict[str, RuntimeInfo] = {
    "torch": RuntimeInfo(
        "torch",
        "rpol_edge.runtimes.torch_runtime",
        "TorchRuntime",
        (".rpol",),
        ("torch", "timm"),
        "torch",
        "PyTorch reference (CPU/CUDA, FP32/FP16)",
    ),
    "ort": RuntimeInfo(
        "ort",
        "rpol_edge.runtimes.ort_runtime",
        "OrtRuntime",
        (".onnx",),
        ("onnxruntime",),
        "ort",
        "ONNX Runtime (TensorRT EP, CUDA EP, CPU)",
    ),
    "trt": RuntimeInfo(
        "trt",
        "rpol_edge.runtimes.trt_runtime",
        "TrtRuntime",
        (".engine", ".plan"),
        ("tensorrt:Builder", "cuda.bindings"),
        "tensorrt",
        "native TensorRT engine through cuda-python",
    ),
}


ALIASES = {"tensorrt": "trt", "onnxruntime": "ort", "onnx": "ort", "pytorch": "torch"}


def missing_modules(info: RuntimeInfo) -> list[str]:
    """Requirements that do not import; ``module:attr`` also needs the attribute (the tensorrt-stubs
    package installs an empty ``tensorrt`` that imports fine but has no ``Builder``)."""
    out = []
    for req in info.requires:
        mod, _, attr = req.partition(":")
        try:
            loaded = importlib.import_module(mod)
        except ImportError:
            out.append(mod)
            continue
        if attr and not hasattr(loaded, attr):
            out.append(mod)
    return out


def available() -> list[str]:
    return [name for name, info in RUNTIMES.items() if not missing_modules(info)]


def choose(model: Path, runtime: str) -> RuntimeInfo:
    suffix = Path(model).suffix.lower()
    if runtime == "auto":
        for info in RUNTIMES.values():
            if suffix in info.suffixes:
                return info
        known = sorted(s for i in RUNTIMES.values() for s in i.suffixes)
        raise InferenceError(
            f"{model}: unknown model file type {suffix!r}; expected one of {', '.join(known)}"
        )
    runtime = ALIASES.get(runtime, runtime)
    if runtime not in RUNTIMES:
        close = difflib.get_close_matches(runtime, RUNTIMES, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise InferenceError(f"unknown runtime {runtime!r}{hint}; choose auto, {', '.join(RUNTIMES)}")
    info = RUNTIMES[runtime]
    if suffix not in info.suffixes:
        raise InferenceError(
            f"runtime {runtime} runs {'/'.join(info.suffixes)} files, not {Path(model).name}; "
            + _runtime_advice(suffix, runtime)
        )
    return info


def _runtime_advice(suffix: str, runtime: str) -> str:
    """What to do instead: the runtime that runs this file, or the export that makes one."""
    own = next((i.name for i in RUNTIMES.values() if suffix in i.suffixes), None)
    if own == "torch":
        flags = "--onnx --trt" if runtime == "trt" else "--onnx"
        return f"export it first (rpol-edge export MODEL {flags} -o DIR), or use --runtime torch (or auto)"
    if own is not None:
        build = " or build an engine from it (rpol-edge export MODEL.onnx --trt)" if own == "ort" else ""
        return f"use --runtime {own} (or auto){build}"
    return "choose --runtime auto"


DEVICE_HELP = "auto, cpu, cuda or cuda:N"


def check_device(device: str) -> str:
    """``auto`` / ``cpu`` / ``cuda`` / ``cuda:N``, lower-cased; anything else is refused in one line
    (every command and runtime validates ``--device`` here, so none ignores a typo)."""
    text = str(device).strip().lower()
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", text):
        close = (
            ["cuda"]
            if text.startswith("gpu")
            else difflib.get_close_matches(text, ["auto", "cpu", "cuda"], n=1)
        )
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise InferenceError(f"device {device!r}{hint}: choose {DEVICE_HELP}")
    return text


def cuda_available(info: RuntimeInfo) -> bool:
    """Whether this runtime can reach a CUDA device here (asked without allocating anything)."""
    try:
        if info.name == "ort":
            import onnxruntime

            gpu = {"CUDAExecutionProvider", "TensorrtExecutionProvider"}
            return bool(gpu & set(onnxruntime.get_available_providers()))
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def resolve_device(info: RuntimeInfo, device: str) -> str:
    """``auto`` is the fastest device this runtime can use: CUDA when reachable, else the CPU."""
    device = check_device(device)
    if device != "auto":
        return device
    if info.name == "trt":
        return "cuda"
    return "cuda" if cuda_available(info) else "cpu"


def open_runtime(model: Path, runtime: str = "auto", **options: Any) -> Runtime:
    """Create (not yet activate) the runtime for a model file; use it in a ``with`` block.

    ``runtime="auto"`` picks the runtime by file type (.rpol torch, .onnx ort, .engine trt) and
    ``device="auto"`` the fastest device it can reach; ``runtime.description`` says what was chosen.
    """
    info = choose(model, runtime)
    if "device" in options and options["device"] is not None:
        options["device"] = resolve_device(info, str(options["device"]))
    gone = missing_modules(info)
    if gone:
        raise InferenceError(
            f"runtime {info.name} needs {', '.join(gone)}: pip install 'rpol-edge[{info.extra}]'"
            if info.extra
            else f"runtime {info.name} needs {', '.join(gone)}"
        )
    cls = getattr(importlib.import_module(info.module), info.cls)
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "model_path"}
    given = {k: v for k, v in options.items() if v is not None}
    unused = sorted(set(given) - accepted)
    if unused:
        raise InferenceError(
            f"runtime {info.name} does not take {', '.join('--' + u.replace('_', '-') for u in unused)} "
            f"(it takes {', '.join(sorted(accepted))})"
        )
    return cls(Path(model), **given)  # type: ignore[no-any-return]
