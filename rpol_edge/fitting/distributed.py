"""Running fit and eval across processes and machines with torch.distributed (launched by torchrun).

Both jobs are sums: each rank streams its own contiguous shard of the sample list and the float64
feature sums (or eval's integer counters) are added with one ``all_reduce`` at the end. Nothing
here knows the math: reductions iterate the accumulators' dataclass fields, so a new running sum
is reduced without an edit here.

Outside torchrun (no ``WORLD_SIZE``/``RANK`` in the environment) everything degrades to one
process: :data:`SINGLE`, the identity shard and no-op reductions.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:
    import torch

T = TypeVar("T")
A = TypeVar("A")


def _torch() -> Any:
    """torch, imported only inside a torchrun job: a single-process eval of an ONNX file or an
    engine must not import it (it may not even be installed there)."""
    import torch
    import torch.distributed

    return torch


TIMEOUT = timedelta(hours=2)
"""How long a rank waits for the others at a collective: the slowest shard's streaming time must
fit (ranks reach the final all_reduce as they finish their shards)."""


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the job. ``backend == ""`` means not distributed."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def enabled(self) -> bool:
        return self.backend != ""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def label(self) -> str:
        return f"rank {self.rank}/{self.world_size}"


SINGLE = DistContext()


def launched_by_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def shard_bounds(n: int, rank: int, world_size: int, unit: int = 1) -> tuple[int, int]:
    """``[start, end)`` of ``rank``'s contiguous shard of ``n`` items, cut in whole ``unit``s.

    The ``ceil(n / unit)`` units are dealt out contiguously, counts differing by at most one unit;
    every item falls in exactly one shard, so an uneven count needs no padding (padded duplicates
    would be summed twice and bias w*). With ``unit`` = the batch size every batch of a rank is
    a batch of the one-process run, image for image: CPU kernels may round a batch of 14
    differently from a batch of 16, and whole batches keep the features bit-identical.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside a world of {world_size}")
    if unit < 1:
        raise ValueError(f"shard unit {unit} must be >= 1")
    units = -(-n // unit)
    first, last = rank * units // world_size, (rank + 1) * units // world_size
    return min(first * unit, n), min(last * unit, n)


def shard(items: Sequence[T], ctx: DistContext, unit: int = 1) -> Sequence[T]:
    """This rank's part of ``items`` (:func:`shard_bounds`); all of them outside a job."""
    start, end = shard_bounds(len(items), ctx.rank, ctx.world_size, unit)
    return items[start:end]


def rank_device(device: str, ctx: DistContext) -> str:
    """One GPU per rank: a plain ``cuda`` becomes ``cuda:LOCAL_RANK`` in a distributed job. An
    explicit ``cuda:N`` in a job of several ranks is refused: NCCL binds each rank to its
    LOCAL_RANK GPU, and every model on GPU N would not match that."""
    if ctx.enabled and ctx.world_size > 1 and device.startswith("cuda:"):
        raise ValueError(
            f"--device {device} under torchrun: give --device cuda (each rank takes cuda:LOCAL_RANK)"
        )
    return f"cuda:{ctx.local_rank}" if ctx.enabled and device == "cuda" else device


def _context_from_env(backend: str) -> DistContext:
    env = os.environ
    return DistContext(
        rank=int(env["RANK"]),
        world_size=int(env["WORLD_SIZE"]),
        local_rank=int(env.get("LOCAL_RANK", "0")),
        backend=backend,
    )


@contextmanager
def process_group(device: str = "cpu", backend: str = "auto") -> Iterator[DistContext]:
    """Join the torchrun job (env:// rendezvous) for the block's duration; :data:`SINGLE` outside one.

    ``backend="auto"``: NCCL when this rank computes on CUDA, else gloo. ``device`` is the resolved
    device (``cpu``, ``cuda``, ``cuda:N``).
    """
    if not launched_by_torchrun():
        yield SINGLE
        return
    torch = _torch()
    dist = torch.distributed
    if backend == "auto":
        backend = "nccl" if device.startswith("cuda") and dist.is_nccl_available() else "gloo"
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"distributed backend {backend!r}: choose gloo or nccl")
    ctx = _context_from_env(backend)
    if backend == "nccl":
        torch.cuda.set_device(ctx.local_rank)
    if dist.is_initialized():  # an embedding program already joined the group
        yield ctx
        return
    dist.init_process_group(backend, timeout=TIMEOUT)
    try:
        yield ctx
    finally:
        dist.destroy_process_group()


def _collective_device(ctx: DistContext) -> torch.device:
    torch = _torch()
    return torch.device("cuda", ctx.local_rank) if ctx.backend == "nccl" else torch.device("cpu")


def all_reduce_array(a: np.ndarray, ctx: DistContext) -> np.ndarray:
    """Element-wise sum of ``a`` over all ranks (same shape and dtype everywhere); a copy."""
    if not ctx.enabled:
        return np.array(a, copy=True)
    torch = _torch()
    dist = torch.distributed
    t = torch.from_numpy(np.ascontiguousarray(a).copy()).to(_collective_device(ctx))
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().numpy()


def all_reduce_fields(acc: A, ctx: DistContext) -> A:
    """A copy of a dataclass accumulator with every numpy-array and int field summed over ranks.

    Iterates the dataclass fields, so a running sum added later is reduced too. Fields of other
    types (configuration, thresholds) must already agree across ranks and are kept as they are.
    """
    if not dataclasses.is_dataclass(acc) or isinstance(acc, type):
        raise TypeError(f"{type(acc).__name__} is not a dataclass instance")
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(acc):
        value = getattr(acc, f.name)
        if isinstance(value, np.ndarray):
            changes[f.name] = all_reduce_array(value, ctx)
        elif isinstance(value, int) and not isinstance(value, bool):
            changes[f.name] = int(all_reduce_array(np.asarray([value], np.int64), ctx)[0])
    return dataclasses.replace(acc, **changes)


def all_reduce_ints(values: Sequence[int], ctx: DistContext) -> list[int]:
    return [int(x) for x in all_reduce_array(np.asarray(values, np.int64), ctx)]


def gather_examples(items: list[T], ctx: DistContext, limit: int = 10) -> list[T]:
    """The first ``limit`` items of every rank, rank order (for messages: never the whole list)."""
    if not ctx.enabled:
        return list(items)
    gathered: list[list[T] | None] = [None] * ctx.world_size
    _torch().distributed.all_gather_object(gathered, items[:limit])
    return [x for part in gathered for x in (part or [])]


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        _torch().distributed.barrier()
