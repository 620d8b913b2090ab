"""Run a model's fit graph on a runtime: uint8 frames in (the model's own input), per-image sums out
(and, for a scene model, the unit features per cell).

ONNX Runtime runs the fit graph of an ``.onnx`` (CPU, or CUDA / TensorRT execution providers on a
GPU: the provider chain of the ort runtime); OpenVINO runs it for an ``.xml`` IR or an ``.onnx``,
at f32 (its bf16 default on AMX / AVX-512 BF16 CPUs is not exact, see docs/runtimes.md). A
TensorRT engine's sums come from the ONNX it was built from, through ONNX Runtime's TensorRT
execution provider on the GPU (`models.open_model` finds that ONNX beside the engine).
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from rpol_edge.core.metadata import ModelMeta
from rpol_edge.core.onnx_meta import INPUT
from rpol_edge.refitting.onnx_graph import CELLS, SUMS, RefitError
from rpol_edge.runtimes import RUNTIMES as _RUNTIMES
from rpol_edge.runtimes import InferenceError, RuntimeInfo, check_device, missing_modules, resolve_device

SUMS_RUNTIMES = ("ort", "openvino")
"""Runtimes that run a fit graph here; a TensorRT engine refits through its ONNX on ``ort``."""


def pick_runtime(model: Path, runtime: str) -> RuntimeInfo:
    """``auto``: OpenVINO for an IR, ONNX Runtime for an ONNX graph or an engine's ONNX."""
    runtime = {"onnxruntime": "ort", "ov": "openvino", "onnx": "ort"}.get(runtime, runtime)
    if runtime == "auto":
        runtime = "openvino" if model.suffix.lower() == ".xml" else "ort"
    if runtime not in SUMS_RUNTIMES:
        raise RefitError(
            f"--runtime {runtime}: refit runs the fit graph on {', '.join(SUMS_RUNTIMES)} (or auto)"
        )
    if model.suffix.lower() == ".xml" and runtime != "openvino":
        raise RefitError(f"{model.name} is an OpenVINO IR: refit it with --runtime openvino (or auto)")
    info = _RUNTIMES[runtime]
    gone = missing_modules(info)
    if gone:
        raise RefitError(f"runtime {runtime} needs {', '.join(gone)}: pip install 'rpol-edge[{info.extra}]'")
    return info


class SumsRunner:
    """A fit graph compiled on one runtime; ``sums(frames)`` -> (v_mean, u_mean, norm_sum)."""

    def __init__(
        self,
        graph: Any,
        meta: ModelMeta,
        info: RuntimeInfo,
        device: str = "auto",
        threads: int | None = None,
        batch_range: tuple[int, int | None] = (1, None),
        cache_dir: Path = Path("ort_trt_cache"),
    ) -> None:
        self.graph = graph
        """An onnx ModelProto (ort) or an ov.Model (openvino)."""
        self.meta = meta
        self.info = info
        check_device(device, info.name)
        try:
            self.device = resolve_device(info, device)
        except InferenceError as exc:
            raise RefitError(str(exc)) from None
        self.threads = threads
        self.cache_dir = cache_dir
        """TensorRT execution provider's engine cache (on a GPU), as the ort runtime keeps it."""
        self.min_batch, self.max_batch = batch_range
        self.outputs = (*SUMS, CELLS) if meta.operating_point == "scene" else SUMS
        """The fit graph's outputs: a ``scene`` model's also gives the unit features per cell."""
        self.session: Any = None
        self.description = info.name

    def __enter__(self) -> SumsRunner:
        if self.info.name == "ort":
            self._open_ort()
        else:
            self._open_openvino()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.session = None

    def _open_ort(self) -> None:
        import onnxruntime as ort

        from rpol_edge.runtimes.ort_runtime import provider_chain

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        if self.threads:
            opts.intra_op_num_threads = self.threads
        try:
            chain = provider_chain(
                self.device, ort.get_available_providers(), self.meta.precision, self.cache_dir
            )
            self.session = ort.InferenceSession(self.graph.SerializeToString(), opts, providers=chain)
        except InferenceError as exc:
            raise RefitError(str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own kinds
            raise RefitError(
                f"onnxruntime could not load the fit graph ({str(exc).splitlines()[0]})"
            ) from None
        first = self.session.get_providers()[0].replace("ExecutionProvider", "")
        self.description = f"ort {first} {self.meta.precision}"

    def _open_openvino(self) -> None:
        import openvino as ov

        from rpol_edge.runtimes.openvino_runtime import ov_device

        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        try:
            compiled = ov.Core().compile_model(self.graph, ov_device(self.device), config)
        except Exception as exc:  # noqa: BLE001
            raise RefitError(
                f"OpenVINO could not compile the fit graph ({str(exc).splitlines()[0]})"
            ) from None
        self.session = compiled.create_infer_request()
        self.description = f"openvino {ov_device(self.device)} {self.meta.precision}"

    def _run(self, frames: np.ndarray) -> list[np.ndarray]:
        if self.info.name == "ort":
            return [np.asarray(x) for x in self.session.run(list(self.outputs), {INPUT: frames})]
        self.session.infer({INPUT: frames})
        return [np.array(self.session.get_tensor(name).data) for name in self.outputs]

    def sums(
        self, frames: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """(v_mean, u_mean, norm_sum, cells) of any number of frames, chunked and padded to the
        graph's batch range like `infer_all`; ``cells`` is a ``scene`` model's per-cell sum of unit
        features over the frames, (C, h, w) float64 (None for other models)."""
        if self.session is None:
            raise RefitError("fit graph used outside its 'with' block")
        n = len(frames)
        hi = self.max_batch or max(n, 1)
        parts: list[list[np.ndarray]] = []
        cells: np.ndarray | None = None
        for start in range(0, n, hi):
            chunk = frames[start : start + hi]
            real = len(chunk)
            if real < self.min_batch:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.min_batch - real, axis=0)])
            got = [x[:real] for x in self._run(np.ascontiguousarray(chunk))]
            if len(got) > 3:  # the padding is cut off before the per-cell sum
                part = got.pop().astype(np.float64).sum(axis=0)
                cells = part if cells is None else cells + part
            parts.append(got)
        if not parts:
            c = self.meta.channels
            return np.zeros((0, c), np.float32), np.zeros((0, c), np.float32), np.zeros(0, np.float32), None
        v, u, s = (np.concatenate([p[i] for p in parts]) for i in range(3))
        return v, u, s, cells
