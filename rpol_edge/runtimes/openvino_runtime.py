"""OpenVINO backend: runs the exported ``.onnx`` graphs directly, or an OpenVINO IR (``model.xml``
+ ``.bin``) written by ``rpol-edge export --openvino`` with the metadata record in its rt_info.

CPU by default. ``precision``: ``f32`` (exact FP32 kernels), ``bf16`` (OpenVINO's default where the
CPU has AMX or AVX-512 BF16: faster, not bit-exact), or None = what the model file says (an IR
records the precision it was exported for; an ``.onnx`` runs f32, so an FP32 graph gives FP32
results). A QDQ INT8 graph runs its INT8 kernels either way. Other OpenVINO devices (GPU, NPU)
are passed through by ``--device`` but have not been run here.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from rpol_edge.core.ir_meta import RT_INFO_KEY, ir_batch_range, ir_meta
from rpol_edge.core.metadata import ModelMeta
from rpol_edge.core.onnx_meta import INPUT, MAP_OUTPUTS, OUTPUTS, read_onnx_header
from rpol_edge.runtimes.base import InferenceError, Output, Runtime

CACHE_NAME = "openvino_cache"
"""Folder beside the model where OpenVINO keeps compiled models (skipped where it is read-only)."""

PRECISIONS = {"f32": "f32", "fp32": "f32", "bf16": "bf16"}


def ov_device(device: str) -> str:
    """rpol-edge's ``cpu`` is OpenVINO's ``CPU``; GPU / NPU / AUTO names pass through."""
    return "CPU" if device in ("cpu", "auto") else device.upper()


class OpenVinoRuntime(Runtime):
    name = "openvino"

    def __init__(
        self, model_path: Path, device: str = "cpu", threads: int | None = None, precision: str | None = None
    ) -> None:
        import openvino as ov

        self.path = Path(model_path)
        self.core = ov.Core()
        self.model: Any = None
        if self.path.suffix.lower() == ".onnx":
            # The graph is compiled from its path (activate): with the compiled-model cache that
            # skips parsing the ONNX again; the record and batch range come from its header.
            meta, (lo, hi) = read_onnx_header(self.path)
        else:
            try:
                self.model = self.core.read_model(str(self.path))
            except Exception as exc:  # noqa: BLE001
                why = str(exc).splitlines()[0]
                raise InferenceError(f"{self.path}: OpenVINO could not read it ({why})") from None
            meta, (lo, hi) = ir_meta(self.model, self.path), ir_batch_range(self.model)
        recorded = meta.extra.get("openvino_precision", "")
        chosen = precision or recorded or "f32"
        if chosen not in PRECISIONS:
            raise InferenceError(f"openvino runtime: precision {chosen!r}, choose f32 or bf16")
        self.hint = PRECISIONS[chosen]
        super().__init__(meta, lo, hi)
        self.device = ov_device(device)
        self.threads = threads
        self.compiled: Any = None
        self.request: Any = None

    @property
    def description(self) -> str:
        kind = "int8" if self.meta.precision == "int8" else self.hint
        return f"openvino {self.device} {kind}"

    def activate(self) -> None:
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": self.hint, "PERFORMANCE_HINT": "LATENCY"}
        cache = self.path.parent / CACHE_NAME
        if os.access(cache if cache.exists() else self.path.parent, os.W_OK):
            # OpenVINO keeps the compiled model there (keyed by the model and these settings):
            # measured on the AMD EPYC, a second start compiles in 0.12 s instead of 0.38 s.
            config["CACHE_DIR"] = str(cache)
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        source = self.model if self.model is not None else str(self.path)
        try:
            try:
                self.compiled = self.core.compile_model(source, self.device, config)
            except Exception:  # noqa: BLE001 - an unreadable cache (another user's): once without it
                if "CACHE_DIR" not in config:
                    raise
                config.pop("CACHE_DIR")
                self.compiled = self.core.compile_model(source, self.device, config)
        except Exception as exc:  # noqa: BLE001
            raise InferenceError(
                f"{self.path}: OpenVINO could not compile it for {self.device} ({str(exc).splitlines()[0]})"
            ) from None
        # A tensor may carry several names (the graph's and its producer's): match by membership.
        outs = [set(o.get_names()) for o in self.compiled.outputs]
        ins = [set(i.get_names()) for i in self.compiled.inputs]
        expected = OUTPUTS if len(outs) == len(OUTPUTS) else MAP_OUTPUTS
        if (
            len(outs) != len(expected)
            or any(n not in o for n, o in zip(expected, outs, strict=True))
            or len(ins) != 1
            or INPUT not in ins[0]
        ):
            self.compiled = None
            raise InferenceError(f"{self.path}: tensors {ins} -> {outs}, expected {INPUT} -> {list(OUTPUTS)}")
        self.request = self.compiled.create_infer_request()
        self.has_peak = expected == OUTPUTS

    def deactivate(self) -> None:
        self.request = None
        self.compiled = None

    def _infer(self, frames: np.ndarray) -> Output:
        self.request.infer({INPUT: frames})
        score = self.request.get_tensor(OUTPUTS[0]).data
        mask = self.request.get_tensor(OUTPUTS[1]).data
        peak = np.array(self.request.get_tensor(OUTPUTS[2]).data, np.float32) if self.has_peak else None
        return Output(score=np.array(score, np.float32), mask=np.array(mask, np.uint8), peak=peak)


def write_ir(onnx_path: Path, xml: Path, precision: str = "f32") -> ModelMeta:
    """An exported ONNX graph as an OpenVINO IR beside it, with the same metadata record (plus the
    precision to run it at) in its rt_info; written to temporary names, then renamed."""

    import openvino as ov

    meta, _ = read_onnx_header(onnx_path)
    meta = meta.replace(extra={**meta.extra, "openvino_precision": PRECISIONS[precision]})
    model = ov.convert_model(str(onnx_path))
    model.set_rt_info(meta.to_json(), RT_INFO_KEY)
    xml.parent.mkdir(parents=True, exist_ok=True)
    save_ir(ov, model, xml)
    return meta


def save_ir(ov: Any, model: Any, xml: Path) -> None:
    """Write an OpenVINO model as ``xml`` + its ``.bin``, atomically: both are written in a
    temporary folder beside ``xml`` and moved into place, the ``.xml`` last (it names the ``.bin``,
    and readers look for it)."""
    tmp = Path(tempfile.mkdtemp(prefix=".ir.", dir=xml.parent))
    try:
        ov.save_model(model, str(tmp / "m.xml"), compress_to_fp16=False)
        os.replace(tmp / "m.bin", xml.with_suffix(".bin"))
        os.replace(tmp / "m.xml", xml)
    finally:
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()
