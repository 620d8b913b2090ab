"""Runtimes as a typed registry: name -> where it lives, what it runs, which extra it needs.

Backends are imported only when chosen, so ``import rpol_edge.runtimes`` never needs onnxruntime,
TensorRT or CUDA; a missing one is answered with the extra to install.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import logging
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
        "rpol_edge.modeling.torch_runtime",
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
    "openvino": RuntimeInfo(
        "openvino",
        "rpol_edge.runtimes.openvino_runtime",
        "OpenVinoRuntime",
        (".xml", ".onnx"),
        ("openvino",),
        "openvino",
        "OpenVINO (CPU; Intel GPU/NPU passed through)",
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


ALIASES = {"tensorrt": "trt", "onnxruntime": "ort", "onnx": "ort", "pytorch": "torch", "ov": "openvino"}


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
    """What to do instead: the runtime that runs this file, or the export that makes one (named as
    the export command, the one way to make it from either side)."""
    own = next((i.name for i in RUNTIMES.values() if suffix in i.suffixes), None)
    if own == "torch":
        flags = "--onnx --trt" if runtime == "trt" else "--onnx"
        return f"export it first (rpol-edge export MODEL {flags} -o DIR), or use runtime=torch (or auto)"
    if own is not None:
        build = " or build an engine from it (rpol-edge export MODEL.onnx --trt)" if own == "ort" else ""
        return f"use runtime={own} (or auto){build}"
    return "choose runtime=auto"


DEVICE_HELP = "auto, cpu, cuda or cuda:N"


OPENVINO_DEVICES = r"gpu(\.\d+)?|npu"
"""Devices only OpenVINO runs on (Intel GPU, NPU), passed through to it."""


def check_device(device: str, runtime: str = "") -> str:
    """``auto`` / ``cpu`` / ``cuda`` / ``cuda:N`` (for OpenVINO also ``gpu``, ``gpu.N``, ``npu``),
    lower-cased; anything else is refused in one line (every command and runtime validates
    ``--device`` here, so none ignores a typo)."""
    text = str(device).strip().lower()
    if runtime == "openvino" and re.fullmatch(OPENVINO_DEVICES, text):
        return text
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
    device = check_device(device, info.name)
    if info.name == "openvino" and device.startswith("cuda"):
        raise InferenceError(
            f"device {device!r} is not an OpenVINO device: it runs on cpu, gpu, gpu.N or npu (Intel); "
            "for an NVIDIA GPU use runtime=ort or trt"
        )
    if device != "auto":
        return device
    if info.name == "openvino":
        return "cpu"
    if info.name == "trt":
        return "cuda"
    return "cuda" if cuda_available(info) else "cpu"


log = logging.getLogger("rpol_edge.runtimes")


def open_runtime(model: Path, runtime: str = "auto", **options: Any) -> Runtime:
    """Create (not yet activate) the runtime for a model file; use it in a ``with`` block.

    ``runtime="auto"`` picks the runtime by file type (.rpol torch, .onnx ort, .engine trt, .xml
    openvino; on a CPU an INT8 .onnx runs where it was measured faster on this CPU family, see
    `rpol_edge.runtimes.cpu_auto`) and
    ``device="auto"`` the fastest device it can reach; ``runtime.description`` says what was chosen.
    """
    if runtime == "auto" and Path(model).suffix.lower() == ".onnx":
        picked = _cpu_pick(Path(model), options)
        if picked is not None:
            return picked
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
    return _create(info, Path(model), options)


def _create(info: RuntimeInfo, model: Path, options: dict[str, Any]) -> Runtime:
    cls = getattr(importlib.import_module(info.module), info.cls)
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "model_path"}
    given = {k: v for k, v in options.items() if v is not None}
    unused = sorted(set(given) - accepted)
    if unused:
        raise InferenceError(
            f"runtime {info.name} does not take {', '.join(f'{u}={given[u]!r}' for u in unused)} "
            f"(it takes {', '.join(sorted(accepted))})"
        )
    return cls(Path(model), **given)  # type: ignore[no-any-return]


def _cpu_pick(model: Path, options: dict[str, Any]) -> Runtime | None:
    """The `cpu_auto` choice for an ``.onnx`` on a CPU, said in one log line; an OpenVINO choice is
    compiled here so that a graph OpenVINO cannot compile on this CPU falls back to ONNX Runtime
    with one line, never a traceback. None: ONNX Runtime (not a CPU run, no rule for this graph,
    the rule's choice, OpenVINO not installed, or an option only ONNX Runtime takes)."""
    from rpol_edge.core.onnx_meta import read_onnx_meta
    from rpol_edge.runtimes.cpu_auto import cpu_rule, this_cpu

    ov = RUNTIMES["openvino"]
    device = options.get("device") or "cpu"
    if resolve_device(RUNTIMES["ort"], str(device)) != "cpu" or missing_modules(ov):
        return None
    if set(k for k, v in options.items() if v is not None) - {"device", "threads"}:
        return None
    meta = read_onnx_meta(model)
    if meta.raw_frames or meta.extra.get("int8_scheme") == "symmetric":
        # Not measured: raw-frame graphs (their in-graph resize differs on OpenVINO by up to 1.4e-3)
        # and the TensorRT-source INT8 graph stay on ONNX Runtime.
        return None
    cpu, flags = this_cpu()
    rule = cpu_rule(meta.precision, flags)
    if rule is None:
        return None
    if rule.runtime != "openvino":
        log.info("%s", rule.reason(cpu, meta.precision))
        return None
    rt = _create(ov, model, {**options, "device": "cpu"})
    try:
        rt.activate()
    except InferenceError as exc:
        log.warning("runtime auto: OpenVINO cannot run %s here (%s); using ONNX Runtime", model.name, exc)
        return None
    rt.active = True
    log.info("%s", rule.reason(cpu, meta.precision))
    return rt
