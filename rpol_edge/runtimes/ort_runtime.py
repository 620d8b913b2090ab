"""ONNX Runtime backend: TensorRT EP (with engine cache), CUDA EP (IO binding), or CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rpol_edge.core.onnx_meta import INPUT, OUTPUTS, graph_outputs, read_onnx_header
from rpol_edge.runtimes.base import InferenceError, Output, Runtime

CUDA_PROVIDERS = frozenset({"CUDAExecutionProvider", "TensorrtExecutionProvider"})


def cuda_available() -> bool:
    """Whether this onnxruntime has a CUDA or TensorRT provider (the registry's CUDA probe)."""
    import onnxruntime

    return bool(CUDA_PROVIDERS & set(onnxruntime.get_available_providers()))


def provider_chain(device: str, available: list[str], precision: str, cache: Path) -> list[Any]:
    """Preferred execution providers for a device, restricted to those this onnxruntime has."""
    chain: list[Any] = []
    if device.startswith("cuda"):
        dev_id = int(device.split(":")[1]) if ":" in device else 0
        if "TensorrtExecutionProvider" in available:
            chain.append(
                (
                    "TensorrtExecutionProvider",
                    {
                        "device_id": dev_id,
                        "trt_engine_cache_enable": True,
                        "trt_engine_cache_path": str(cache),
                        "trt_timing_cache_enable": True,
                        "trt_fp16_enable": precision == "fp16",
                    },
                )
            )
        if "CUDAExecutionProvider" in available:
            chain.append(("CUDAExecutionProvider", {"device_id": dev_id}))
        if not chain:
            raise InferenceError(
                "ort runtime: device=cuda but this onnxruntime has no CUDA/TensorRT provider; "
                "pip install 'rpol-edge[ort-gpu]' (on Jetson: the Jetson onnxruntime-gpu wheel)"
            )
    chain.append("CPUExecutionProvider")
    return chain


class OrtRuntime(Runtime):
    name = "ort"

    def __init__(
        self,
        model_path: Path,
        device: str = "cpu",
        threads: int | None = None,
        precision: str | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        meta, (lo, hi) = read_onnx_header(model_path)
        super().__init__(meta, lo, hi)
        self.path = Path(model_path)
        self.device = device
        self.device_id = int(device.split(":")[1]) if ":" in device else 0
        self.threads = threads
        self.precision = precision or meta.precision
        self.cache_dir = cache_dir or self.path.parent / "ort_trt_cache"
        self.session: Any = None
        self.providers: list[str] = []

    @property
    def description(self) -> str:
        first = self.providers[0].replace("ExecutionProvider", "") if self.providers else "?"
        return f"ort {first} {self.meta.precision}"

    def activate(self) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.threads:
            opts.intra_op_num_threads = self.threads
        opts.log_severity_level = 3
        chain = provider_chain(self.device, ort.get_available_providers(), self.precision, self.cache_dir)
        if any(isinstance(p, tuple) and p[0] == "TensorrtExecutionProvider" for p in chain):
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=chain)
        except Exception as exc:
            raise InferenceError(f"{self.path}: onnxruntime could not load it ({exc})") from None
        self.providers = list(self.session.get_providers())
        names = [o.name for o in self.session.get_outputs()]
        outputs = graph_outputs(names)
        if outputs is None:
            raise InferenceError(f"{self.path}: outputs {names}, expected {list(OUTPUTS)}")
        self.outputs = outputs

    def deactivate(self) -> None:
        self.session = None

    def _infer(self, frames: np.ndarray) -> Output:
        if self.providers and self.providers[0] != "CPUExecutionProvider":
            # IO binding: outputs are allocated on the GPU and copied back once, together.
            io = self.session.io_binding()
            io.bind_cpu_input(INPUT, frames)
            for name in self.outputs:
                io.bind_output(name, "cuda", self.device_id)
            self.session.run_with_iobinding(io)
            got = io.copy_outputs_to_cpu()
        else:
            got = self.session.run(list(self.outputs), {INPUT: frames})
        peak = np.asarray(got[2], np.float32) if len(got) > 2 else None
        return Output(np.asarray(got[0], np.float32), np.asarray(got[1], np.uint8), peak)
