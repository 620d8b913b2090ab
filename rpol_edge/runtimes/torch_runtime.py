"""PyTorch reference runtime: the Localizer module itself, on CPU or CUDA, FP32 or FP16."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rpol_edge.artifact import ModelArtifact
from rpol_edge.build import build_localizer
from rpol_edge.runtimes.base import InferenceError, Output, Runtime


class TorchRuntime(Runtime):
    name = "torch"

    def __init__(
        self,
        model_path: Path,
        device: str = "cpu",
        precision: str = "fp32",
        weights: Path | None = None,
        threads: int | None = None,
    ) -> None:
        artifact = ModelArtifact.load(model_path)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise InferenceError("torch runtime: CUDA requested but torch.cuda.is_available() is False")
        if precision not in ("fp32", "fp16"):
            raise InferenceError(f"torch runtime: precision {precision!r}, choose fp32 or fp16")
        if precision == "fp16" and not device.startswith("cuda"):
            raise InferenceError("torch runtime: fp16 needs --device cuda (CPU half convolutions are slow)")
        super().__init__(artifact.meta.replace(precision=precision))
        self.artifact = artifact
        self.weights = weights
        self.device = torch.device(device)
        self.threads = threads
        self.module: torch.nn.Module | None = None

    @property
    def description(self) -> str:
        return f"torch {self.device.type} {self.meta.precision}"

    def activate(self) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        if self.device.type == "cuda" and self.meta.precision == "fp32":
            # Ampere+ GPUs run "fp32" convolutions in TF32 by default; measured on an H200 that moved
            # the map by up to 7e-3 against the CPU. The reference must be real FP32.
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        module = build_localizer(self.artifact, self.weights).to(self.device)
        if self.meta.precision == "fp16":
            module.half_backbone()
        self.module = module

    def deactivate(self) -> None:
        self.module = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    @torch.inference_mode()
    def _infer(self, frames: np.ndarray) -> Output:
        assert self.module is not None
        x = torch.from_numpy(frames).to(self.device, non_blocking=True)
        score, mask = self.module(x)
        return Output(score=score.float().cpu().numpy(), mask=mask.cpu().numpy())
