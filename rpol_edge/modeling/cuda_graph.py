"""The torch runtime's forward as CUDA graphs: one launch per batch instead of hundreds.

A batch-1 Lite0 at 448 on an H200 spends its 3.8 ms mostly launching ~300 small kernels from
Python, so FP16 did not help there. Captured once into a ``torch.cuda.CUDAGraph`` the whole forward
is replayed with one launch. What the PyTorch docs require, and how it is met here:

* static input and output tensors: the captured kernels read and write fixed addresses, so each
  call copies its frames into ``static_in`` and reads the maps out of the static outputs;
* warm-up on a side stream before capture (lazy initialisation, cuDNN heuristics and allocator
  growth must not happen inside the capture), then capture on that same stream;
* nothing that synchronizes with the host inside the forward (the Localizer has no
  data-dependent Python branch and no ``.item()``: the threshold is a Gather, not a lookup in Python);
* pinned host memory allocated before capture, never during it.

Host <-> device copies are async, from and to pinned staging buffers, on the same side stream as
the replay, so one stream orders copy-in, forward and copy-out and the host waits once per call.

Batches are padded up to a power of two (1, 2, 4, ..., ``MAX_GRAPH_BATCH``) and sliced: every op
of the Localizer is per image (eval BatchNorm, per-image min-max), so the rows beyond ``n`` (stale
frames from an earlier call) cannot change rows below it. Larger batches run as several chunks.
Each bucket is captured the first time it is used, with its own memory pool (graphs replayed in
any order must not share one).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

log = logging.getLogger("rpol_edge.runtimes")

MAX_GRAPH_BATCH = 32
"""Largest captured batch; bigger batches are split into chunks of this size."""

WARMUP_ITERS = 3
"""Eager forwards on the side stream before capture (the PyTorch docs' example uses 3)."""

SELF_CHECK_TOL = {"fp32": 1e-5, "fp16": 1e-3}
"""Per precision, max |score| difference allowed between the first replay and an eager forward
of the same batch: the same kernels run, so they agree to rounding (recorded in
``GraphedForward.self_check``). What a wrong capture does (a value from capture time baked in, a
buffer read before it is written) changes whole maps, since each is min-max normalized; FP16's
wider margin keeps its rounding from forcing a fallback (measured on an H200: 0.0 for both). Mask
pixels may then differ only where a score sits on the threshold (at most ``SELF_CHECK_MASK``)."""

SELF_CHECK_MASK = 1e-3


class GraphCaptureError(RuntimeError):
    """The forward could not be captured (or its replay disagreed with eager): run eagerly instead."""


def bucket(n: int, cap: int = MAX_GRAPH_BATCH) -> int:
    """The captured batch size that holds ``n`` frames: the next power of two, at most ``cap``."""
    if n < 1:
        raise ValueError(f"batch of {n} frames")
    return min(1 << (n - 1).bit_length(), cap)


def chunks(n: int, cap: int = MAX_GRAPH_BATCH) -> list[tuple[int, int]]:
    """[start, stop) ranges of at most ``cap`` frames covering ``n`` frames."""
    return [(s, min(s + cap, n)) for s in range(0, n, cap)]


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    static_in: torch.Tensor
    """(B, K, K, 3) uint8 on the device: the captured forward's input."""
    static_score: torch.Tensor
    static_mask: torch.Tensor
    static_peak: torch.Tensor
    host_in: torch.Tensor
    """Pinned staging buffers, same shapes as the static tensors."""
    host_score: torch.Tensor
    host_mask: torch.Tensor
    host_peak: torch.Tensor


class GraphedForward:
    """``module``'s forward on ``device`` as CUDA graphs: numpy frames in, numpy maps out.

    Not thread-safe (one stream, one set of buffers): a runtime is used by one thread at a time.
    """

    def __init__(
        self,
        module: nn.Module,
        device: torch.device,
        max_batch: int = MAX_GRAPH_BATCH,
        precision: str = "fp32",
    ) -> None:
        if device.type != "cuda":
            raise GraphCaptureError(f"CUDA graphs need a CUDA device, not {device}")
        self.module = module
        self.device = device
        self.max_batch = max_batch
        self.tol = SELF_CHECK_TOL[precision]
        self.stream = torch.cuda.Stream(device)
        self.graphs: dict[int, _Graph] = {}
        self.self_check: dict[int, float] = {}
        """Captured batch size -> max |score difference| of its first replay against eager."""

    @torch.inference_mode()
    def __call__(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """frames (N, K, K, 3) uint8 -> score (N, M, K, K) float32, mask (N, M, K, K) uint8,
        peak (N, M) float32."""
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        with torch.cuda.device(self.device):  # capture and replay on the runtime's GPU, not the current one
            for start, stop in chunks(len(frames), self.max_batch):
                parts.append(self._run(frames[start:stop]))
        if len(parts) == 1:
            return parts[0]
        score, mask, peak = (np.concatenate(x) for x in zip(*parts, strict=True))
        return score, mask, peak

    def _run(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = len(frames)
        b = bucket(n, self.max_batch)
        g = self.graphs.get(b)
        if g is None:
            g = self._capture(b, frames.shape[1:])
        # The previous call waited for its copy-out, so the staging buffers are free to overwrite.
        np.copyto(g.host_in[:n].numpy(), frames)
        with torch.cuda.stream(self.stream):
            g.static_in[:n].copy_(g.host_in[:n], non_blocking=True)
            g.graph.replay()
            g.host_score[:n].copy_(g.static_score[:n], non_blocking=True)
            g.host_mask[:n].copy_(g.static_mask[:n], non_blocking=True)
            g.host_peak[:n].copy_(g.static_peak[:n], non_blocking=True)
        self.stream.synchronize()
        # Copies, not views: the caller may keep the maps while the next call reuses the buffers.
        return g.host_score[:n].numpy().copy(), g.host_mask[:n].numpy().copy(), g.host_peak[:n].numpy().copy()

    def _capture(self, b: int, frame_shape: tuple[int, ...]) -> _Graph:
        try:
            g = self._capture_unchecked(b, frame_shape)
        except GraphCaptureError:
            raise
        except Exception as exc:  # torch raises RuntimeError (and subclasses) for capture failures
            raise GraphCaptureError(f"capture of batch {b} failed: {_first_line(exc)}") from exc
        self.graphs[b] = g
        return g

    def _capture_unchecked(self, b: int, frame_shape: tuple[int, ...]) -> _Graph:
        # Fixed random frames (not zeros: a constant frame gives a constant map, min-max 0/0) for the
        # warm-up and the self-check.
        gen = torch.Generator().manual_seed(b)
        sample = torch.randint(0, 256, (b, *frame_shape), dtype=torch.uint8, generator=gen)
        host_in = torch.empty_like(sample).pin_memory()
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.stream):
            static_in = sample.to(self.device, non_blocking=False)
            for _ in range(WARMUP_ITERS):
                ref_score, ref_mask, ref_peak = self.module(static_in)
        torch.cuda.current_stream(self.device).wait_stream(self.stream)
        self.stream.synchronize()

        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self.stream):
            static_score, static_mask, static_peak = self.module(static_in)
        host_score = torch.empty(static_score.shape, dtype=static_score.dtype).pin_memory()
        host_mask = torch.empty(static_mask.shape, dtype=static_mask.dtype).pin_memory()
        host_peak = torch.empty(static_peak.shape, dtype=static_peak.dtype).pin_memory()

        with torch.cuda.stream(self.stream):
            graph.replay()
        self.stream.synchronize()
        diff = float((static_score.float() - ref_score.float()).abs().max())
        diff = max(diff, float((static_peak.float() - ref_peak.float()).abs().max()))
        masks_differ = int((static_mask != ref_mask).sum())
        self.self_check[b] = diff
        if diff > self.tol or masks_differ > SELF_CHECK_MASK * static_mask.numel():
            raise GraphCaptureError(
                f"replay of batch {b} disagrees with eager (max |d score| {diff:.2e}, "
                f"{masks_differ} mask pixels)"
            )
        return _Graph(
            graph,
            static_in,
            static_score,
            static_mask,
            static_peak,
            host_in,
            host_score,
            host_mask,
            host_peak,
        )

    def close(self) -> None:
        """Wait for the stream, then drop graphs and buffers (their memory goes back to the pools)."""
        if self.graphs:
            self.stream.synchronize()
        for g in self.graphs.values():
            g.graph.reset()
        self.graphs.clear()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
