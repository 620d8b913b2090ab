"""Runtimes as a typed registry: name -> where it lives, what it runs, on which devices, which extra it needs.

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
    title: str
    """Its name in prose (error messages)."""
    devices: tuple[str, ...] = ("cuda", "cpu")
    """Device kinds it runs on (`DEVICE_KINDS`), in the order ``device=auto`` tries them: a kind is
    taken when it is ``cuda`` and ``cuda_probe`` says one is reachable, or when it is anything else
    (or ``cuda`` with no probe: a runtime that runs only there)."""
    cuda_probe: str = ""
    """``module:function`` answering whether this runtime reaches a CUDA device, without allocating
    anything; imported only when ``device=auto`` asks."""
    device_advice: str = ""
    """Added to the refusal of a device kind it does not run on."""
    cpu_auto: str = ""
    """Its part in choosing the runtime of an ``.onnx`` on a CPU (`rpol_edge.runtimes.cpu_auto`):
    ``default`` runs it unless a measured rule picks another, ``candidate`` may be picked by a rule
    (compiled when picked, so that a failure falls back to the default), empty: none."""


RUNTIMES: dict[str, RuntimeInfo] = {
    "torch": RuntimeInfo(
        "torch",
        "rpol_edge.modeling.torch_runtime",
        "TorchRuntime",
        (".rpol",),
        ("torch", "timm"),
        "torch",
        "PyTorch reference (CPU/CUDA, FP32/FP16)",
        "PyTorch",
        cuda_probe="rpol_edge.modeling.torch_runtime:cuda_available",
    ),
    "ort": RuntimeInfo(
        "ort",
        "rpol_edge.runtimes.ort_runtime",
        "OrtRuntime",
        (".onnx",),
        ("onnxruntime",),
        "ort",
        "ONNX Runtime (TensorRT EP, CUDA EP, CPU)",
        "ONNX Runtime",
        cuda_probe="rpol_edge.runtimes.ort_runtime:cuda_available",
        cpu_auto="default",
    ),
    "openvino": RuntimeInfo(
        "openvino",
        "rpol_edge.runtimes.openvino_runtime",
        "OpenVinoRuntime",
        (".xml", ".onnx"),
        ("openvino",),
        "openvino",
        "OpenVINO (CPU; Intel GPU/NPU passed through)",
        "OpenVINO",
        devices=("cpu", "gpu", "npu"),
        device_advice=" (Intel); for an NVIDIA GPU use runtime=ort or trt",
        cpu_auto="candidate",
    ),
    "trt": RuntimeInfo(
        "trt",
        "rpol_edge.runtimes.trt_runtime",
        "TrtRuntime",
        (".engine", ".plan"),
        ("tensorrt:Builder", "cuda.bindings"),
        "tensorrt",
        "native TensorRT engine through cuda-python",
        "TensorRT",
        devices=("cuda",),
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


DEVICE_KINDS = {
    "cpu": ("cpu", ("cpu",)),
    "cuda": (r"cuda(:\d+)?", ("cuda", "cuda:N")),
    "gpu": (r"gpu(\.\d+)?", ("gpu", "gpu.N")),
    "npu": ("npu", ("npu",)),
}
"""Device kind -> (the pattern of its devices, those devices in words). Every runtime's
``--device`` takes auto, cpu and cuda[:N] (a runtime not running on one refuses it by name); gpu[.N]
(Intel) and npu only a runtime that declares them, which passes them through."""


def check_device(device: str, runtime: str = "") -> str:
    """``auto`` / ``cpu`` / ``cuda`` / ``cuda:N``, plus the other kinds ``runtime`` declares (for
    OpenVINO ``gpu``, ``gpu.N``, ``npu``), lower-cased; anything else is refused in one line (every
    command and runtime validates ``--device`` here, so none ignores a typo)."""
    info = RUNTIMES.get(runtime)
    return _device_text(device, info.devices if info else ())


def _device_text(device: str, kinds: tuple[str, ...]) -> str:
    text = str(device).strip().lower()
    extra = [DEVICE_KINDS[k][0] for k in kinds if k not in ("cpu", "cuda")]
    if not re.fullmatch("|".join([r"auto|cpu|cuda(:\d+)?", *extra]), text):
        close = (
            ["cuda"]
            if text.startswith("gpu")
            else difflib.get_close_matches(text, ["auto", "cpu", "cuda"], n=1)
        )
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise InferenceError(f"device {device!r}{hint}: choose {DEVICE_HELP}")
    return text


def cuda_available(info: RuntimeInfo) -> bool:
    """Whether this runtime can reach a CUDA device here, by its declared probe (imported only now;
    a runtime without one, or whose modules are missing, reaches none)."""
    if not info.cuda_probe:
        return False
    module, _, function = info.cuda_probe.partition(":")
    try:
        return bool(getattr(importlib.import_module(module), function)())
    except ImportError:
        return False


def resolve_device(info: RuntimeInfo, device: str) -> str:
    """``auto`` is the first of the runtime's device kinds it can use (CUDA when reachable, else
    the CPU, for the runtimes that run on both); a kind it does not run on is refused in one line."""
    device = _device_text(device, info.devices)
    if device == "auto":
        usable = (k for k in info.devices if k != "cuda" or not info.cuda_probe or cuda_available(info))
        return next(usable, info.devices[-1])
    kind = re.split(r"[:.]", device)[0]
    if kind not in info.devices:
        words = [w for k in info.devices for w in DEVICE_KINDS[k][1]]
        runs_on = f"{', '.join(words[:-1])} or {words[-1]}" if len(words) > 1 else words[0]
        title = f"{'an' if info.title[0] in 'AEIOU' else 'a'} {info.title}"
        raise InferenceError(
            f"device {device!r} is not {title} device: it runs on {runs_on}" + info.device_advice
        )
    return device


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


CPU_AUTO_OPTIONS = frozenset({"device", "threads"})
"""The options every runtime of the CPU auto policy takes; any other keeps the default runtime."""


def _cpu_auto(role: str) -> list[RuntimeInfo]:
    return [i for i in RUNTIMES.values() if i.cpu_auto == role]


def _cpu_pick(model: Path, options: dict[str, Any]) -> Runtime | None:
    """The `cpu_auto` choice for an ``.onnx`` on a CPU, said in one log line; a candidate's choice
    is compiled here so that a graph it cannot compile on this CPU falls back to the default
    runtime with one line, never a traceback. None: the default (not a CPU run, no rule for this
    graph, the rule's choice, no candidate installed, or an option only the default takes)."""
    from rpol_edge.core.onnx_meta import read_onnx_meta
    from rpol_edge.runtimes.cpu_auto import cpu_rule, this_cpu

    default = _cpu_auto("default")[0]
    device = options.get("device") or "cpu"
    if resolve_device(default, str(device)) != "cpu":
        return None
    if all(missing_modules(i) for i in _cpu_auto("candidate")):
        return None
    if set(k for k, v in options.items() if v is not None) - CPU_AUTO_OPTIONS:
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
    picked = RUNTIMES[rule.runtime]
    if picked.cpu_auto != "candidate":  # the rule keeps the default: said, then opened as usual
        log.info("%s", rule.reason(cpu, meta.precision))
        return None
    if missing_modules(picked):
        return None
    rt = _create(picked, model, {**options, "device": "cpu"})
    try:
        rt.start()
    except InferenceError as exc:
        log.warning(
            "runtime auto: %s cannot run %s here (%s); using %s", picked.title, model.name, exc, default.title
        )
        return None
    log.info("%s", rule.reason(cpu, meta.precision))
    return rt
