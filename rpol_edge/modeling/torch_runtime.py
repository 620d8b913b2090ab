"""PyTorch reference runtime: the Localizer module itself, on CPU or CUDA, FP32 or FP16.

On CUDA the forward runs as CUDA graphs by default (``cuda_graph``; `torch_cuda_graph`): same
kernels, one launch. Where capture is not possible the runtime says why in one log line and runs
eagerly.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from rpol_edge.core.artifact import ModelArtifact
from rpol_edge.modeling.cuda_graph import GraphCaptureError, GraphedForward
from rpol_edge.modeling.factory import build_localizer
from rpol_edge.modeling.fold_bn import FoldError, fold_batchnorm
from rpol_edge.runtimes.base import InferenceError, Output, Runtime

log = logging.getLogger("rpol_edge.runtimes")


def cuda_available() -> bool:
    """Whether torch reaches a CUDA device here (the registry's CUDA probe; allocates nothing)."""
    return bool(torch.cuda.is_available())


class TorchRuntime(Runtime):
    name = "torch"

    def __init__(
        self,
        model_path: Path,
        device: str = "cpu",
        precision: str = "fp32",
        weights: Path | None = None,
        threads: int | None = None,
        cuda_graph: bool | None = None,
        fold_bn: bool | None = None,
        cudnn_benchmark: bool | None = None,
    ) -> None:
        """``cuda_graph``: None (default) is on for CUDA, off for the CPU; True on the CPU is
        ignored with a log line, like a capture that fails. ``fold_bn`` (default on): BatchNorm
        folded into the convolutions at load time (:mod:`rpol_edge.modeling.fold_bn`; maps move by
        ~3e-6; on an H200 it took the FP32 CUDA graph from 2.32 to 1.42 ms). ``cudnn_benchmark``
        (default off): cuDNN times its algorithms per shape and keeps the fastest; on an H200 it gained
        nothing at batch 1 and ~8 % at batch 8, and together with folding one test photo's map
        differed from the CPU's by up to 1.0 (boxes identical): off until that is understood."""
        artifact = ModelArtifact.load(model_path)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise InferenceError("torch runtime: CUDA requested but torch.cuda.is_available() is False")
        if precision not in ("fp32", "fp16"):
            raise InferenceError(f"torch runtime: precision {precision!r}, choose fp32 or fp16")
        if precision == "fp16" and not device.startswith("cuda"):
            raise InferenceError("torch runtime: fp16 needs device=cuda (CPU half convolutions are slow)")
        super().__init__(artifact.meta.replace(precision=precision))
        self.artifact = artifact
        self.weights = weights
        self.device = torch.device(device)
        self.threads = threads
        self.module: torch.nn.Module | None = None
        on_cuda = self.device.type == "cuda"
        self.cuda_graph = on_cuda if cuda_graph is None else bool(cuda_graph)
        self.fold_bn = True if fold_bn is None else bool(fold_bn)
        self.cudnn_benchmark = bool(cudnn_benchmark)
        self.folded = 0
        """How many BatchNorms were folded (0 when off or when the check refused)."""
        self._graphed: GraphedForward | None = None

    @property
    def description(self) -> str:
        graph = " graph" if self.cuda_graph and self.device.type == "cuda" else ""
        return f"torch {self.device.type} {self.meta.precision}{graph}"

    def activate(self) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        if self.device.type == "cuda" and self.meta.precision == "fp32":
            # Ampere+ GPUs run "fp32" convolutions in TF32 by default; measured on an H200 that moved
            # the map by up to 7e-3 against the CPU. The reference must be real FP32.
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        if self.device.type == "cuda" and self.cudnn_benchmark:
            torch.backends.cudnn.benchmark = True  # process-wide: only when asked for
        module = build_localizer(self.artifact, self.weights).to(self.device)
        if self.fold_bn:
            self.folded = self._fold(module)
        if self.meta.precision == "fp16":
            module.half_backbone()
        self.module = module
        if self.cuda_graph:
            try:
                self._graphed = GraphedForward(module, self.device, precision=self.meta.precision)
            except GraphCaptureError as exc:
                self._no_graph(str(exc))

    def _fold(self, module: torch.nn.Module) -> int:
        """Fold BatchNorm into the convolutions, checked on one random frame on this device; on a
        refusal the module stays as it was (one log line)."""
        gen = torch.Generator().manual_seed(0)
        k = self.meta.input_size
        x = torch.randint(0, 256, (1, k, k, 3), dtype=torch.uint8, generator=gen).to(self.device)
        try:
            return fold_batchnorm(module, lambda: module(x)[0])
        except FoldError as exc:
            log.warning("torch runtime: BatchNorm not folded: %s", exc)
            return 0

    @property
    def graph_self_check(self) -> dict[int, float]:
        """Captured batch size -> max |score| difference of its first replay against eager
        (empty when no graph is in use)."""
        return dict(self._graphed.self_check) if self._graphed is not None else {}

    def _no_graph(self, why: str) -> None:
        log.warning("torch runtime: running without CUDA graphs: %s", why)
        if self._graphed is not None:
            try:  # a failed capture may leave an error on the stream; eager runs on the default one
                self._graphed.close()
                torch.cuda.synchronize(self.device)
            except RuntimeError as exc:
                log.warning("torch runtime: after the failed capture: %s", exc)
            self._graphed = None
        self.cuda_graph = False

    def deactivate(self) -> None:
        if self._graphed is not None:
            self._graphed.close()
            self._graphed = None
        self.module = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    @torch.inference_mode()
    def _infer(self, frames: np.ndarray) -> Output:
        assert self.module is not None
        if self._graphed is not None:
            try:
                score_np, mask_np, peak_np = self._graphed(frames)
                return Output(score=score_np, mask=mask_np, peak=peak_np)
            except GraphCaptureError as exc:
                self._no_graph(str(exc))
        x = torch.from_numpy(frames).to(self.device, non_blocking=True)
        score, mask, peak = self.module(x)
        return Output(score=score.float().cpu().numpy(), mask=mask.cpu().numpy(), peak=peak.cpu().numpy())
