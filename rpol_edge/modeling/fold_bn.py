"""Fold eval-mode BatchNorm into the convolution before it: one kernel fewer per conv.

On a GPU at batch 1 every kernel counts (a CUDA graph removes the launch cost from Python, not
the kernels themselves): Lite0 runs 49 conv + 49 BatchNorm kernels, and a folded BatchNorm is
w' = w * g / sqrt(v + eps), b' = (b - m) * g / sqrt(v + eps) + beta, the same affine map computed
once at load time. timm's BatchNormAct2d (BatchNorm + activation in one module) keeps its
activation.

Which BatchNorm follows which conv is found by running the module once with hooks (a BatchNorm
whose input IS a conv's output tensor, not modified in place since), not from module names. What
hooks cannot see (a conv output that a BatchNorm reads and a functional op reads too) would be
wrong to fold, so the folded module is checked against the original on the example input; pairs
that move it are put back one by one, the others stay folded.
"""

from __future__ import annotations

import collections
import logging
import math
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

log = logging.getLogger("rpol_edge.modeling.fold_bn")

FOLD_TOL = 1e-4
"""Max |difference| of the module's outputs (maps in [0, 1]) allowed after folding; the rounding
of the folded weights moves them by ~1e-6."""


class FoldError(RuntimeError):
    """Folding changed the module's output: the caller keeps the unfolded module."""


def conv_bn_pairs(module: nn.Module, run: Callable[[], object]) -> list[tuple[str, str]]:
    """(conv name, BatchNorm name) pairs where the BatchNorm's input is the conv's output tensor,
    unmodified, found by one call of ``run`` (a forward of ``module``) with hooks. A conv or
    BatchNorm module that runs more than once in the forward (shared weights) is left out: one
    fold cannot serve two call sites."""
    names = {m: n for n, m in module.named_modules()}
    # id -> (conv, weak reference, version): an id alone could be a freed conv output's, reused
    # for a later tensor no conv produced; the version counter catches an in-place op in between
    # (conv -> ReLU(inplace=True) -> BatchNorm is not a foldable pair).
    produced: dict[int, tuple[nn.Conv2d, weakref.ref[torch.Tensor], int]] = {}
    found: list[tuple[nn.Module, nn.Module]] = []
    calls: collections.Counter[nn.Module] = collections.Counter()
    handles = []

    def after_conv(conv: nn.Module, _inp: object, out: torch.Tensor) -> None:
        calls[conv] += 1
        produced[id(out)] = (conv, weakref.ref(out), out._version)  # type: ignore[assignment]

    def before_bn(bn: nn.Module, inp: tuple[torch.Tensor, ...]) -> None:
        calls[bn] += 1
        hit = produced.get(id(inp[0]))
        if hit is None or hit[1]() is not inp[0] or inp[0]._version != hit[2]:
            return
        conv = hit[0]
        if isinstance(bn, nn.BatchNorm2d) and conv.out_channels == bn.num_features:
            found.append((conv, bn))

    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(after_conv))
        elif isinstance(m, nn.BatchNorm2d):
            handles.append(m.register_forward_pre_hook(before_bn))
    try:
        with torch.no_grad():  # not inference_mode: inference tensors have no version counter
            run()
    finally:
        for h in handles:
            h.remove()
    return [(names[c], names[b]) for c, b in found if calls[c] == 1 and calls[b] == 1]


def _after_norm(bn: nn.BatchNorm2d) -> nn.Module:
    """What is left of a BatchNorm module once its affine map is in the conv: timm's
    BatchNormAct2d keeps its dropout and activation, a plain BatchNorm2d is the identity."""
    drop, act = getattr(bn, "drop", None), getattr(bn, "act", None)
    parts = [m for m in (drop, act) if isinstance(m, nn.Module) and not isinstance(m, nn.Identity)]
    return nn.Sequential(*parts) if parts else nn.Identity()


def fold_batchnorm(module: nn.Module, run: Callable[[], torch.Tensor | tuple[torch.Tensor, ...]]) -> int:
    """Fold every conv -> BatchNorm pair of ``module`` (in eval mode) in place; ``run`` is a
    forward of ``module`` on an example input. Returns how many were folded.

    The check runs in exact FP32 (the caller may cast to FP16 afterwards: the folded weights are
    then rounded once instead of the conv and BatchNorm outputs separately). When folding all
    pairs at once moves the output by more than FOLD_TOL (or makes it non-finite), the pairs are
    tried one at a time and only those that keep it are kept (one log line says how many were
    refused); FoldError, with the module as it was, when none can be."""
    if module.training:
        raise FoldError("BatchNorm folding needs eval mode (training BatchNorm uses batch statistics)")
    with exact_fp32():
        return _fold_checked(module, run)


@dataclass
class _Fold:
    """What one fold replaced, to put it back."""

    conv: nn.Conv2d
    weight: torch.Tensor
    bias: torch.Tensor | None
    bn_name: str
    bn: nn.Module


def _apply(module: nn.Module, conv_name: str, bn_name: str) -> _Fold | None:
    conv: nn.Conv2d = module.get_submodule(conv_name)  # type: ignore[assignment]
    bn: nn.BatchNorm2d = module.get_submodule(bn_name)  # type: ignore[assignment]
    if bn.training or not bn.track_running_stats or bn.running_mean is None or bn.running_var is None:
        return None  # batch statistics: nothing constant to fold
    done = _Fold(conv, conv.weight, conv.bias, bn_name, bn)
    w, b = fuse_conv_bn_weights(
        conv.weight.detach(), None if conv.bias is None else conv.bias.detach(),
        bn.running_mean, bn.running_var, bn.eps,
        bn.weight.detach() if bn.affine else None, bn.bias.detach() if bn.affine else None,
    )  # fmt: skip
    conv.weight, conv.bias = nn.Parameter(w, requires_grad=False), nn.Parameter(b, requires_grad=False)
    _set_submodule(module, bn_name, _after_norm(bn))
    return done


def _undo(module: nn.Module, folds: list[_Fold]) -> None:
    for f in reversed(folds):
        f.conv.weight, f.conv.bias = f.weight, f.bias  # type: ignore[assignment]
        _set_submodule(module, f.bn_name, f.bn)


def _moved(
    before: tuple[torch.Tensor, ...], run: Callable[[], torch.Tensor | tuple[torch.Tensor, ...]]
) -> float:
    """Max |output difference| against ``before``; inf when an output is not finite."""
    with torch.inference_mode():
        after = _outputs(run())
    worst = 0.0
    for a, b in zip(after, before, strict=True):
        d = float((a.float() - b.float()).abs().max()) if a.numel() else 0.0
        worst = max(worst, d) if math.isfinite(d) else math.inf
    return worst


def _fold_checked(module: nn.Module, run: Callable[[], torch.Tensor | tuple[torch.Tensor, ...]]) -> int:
    pairs = conv_bn_pairs(module, run)
    if not pairs:
        return 0
    with torch.inference_mode():
        before = _outputs(run())
    folds: list[_Fold] = []
    try:
        for conv_name, bn_name in pairs:
            if (f := _apply(module, conv_name, bn_name)) is not None:
                folds.append(f)
        moved = _moved(before, run)
    except BaseException:
        _undo(module, folds)
        raise
    if moved <= FOLD_TOL:
        return len(folds)
    # One pair can spoil them all (a conv output that something else reads too): keep those
    # that are exact one by one, each checked against the original output.
    _undo(module, folds)
    kept: list[_Fold] = []
    for conv_name, bn_name in pairs:
        f = _apply(module, conv_name, bn_name)
        if f is None:
            continue
        try:
            ok = _moved(before, run) <= FOLD_TOL
        except BaseException:
            _undo(module, [*kept, f])
            raise
        if ok:
            kept.append(f)
        else:
            _undo(module, [f])
    if not kept:
        raise FoldError(f"folding {len(folds)} BatchNorms moved the output by {moved:.2e} (> {FOLD_TOL:g})")
    log.warning(
        "BatchNorm folding: %d of %d pairs refused (they moved the output)",
        len(folds) - len(kept),
        len(folds),
    )
    return len(kept)


@contextmanager
def exact_fp32() -> Iterator[None]:
    """TF32 off while folding is checked: on an H200 TF32 convolutions moved the maps by ~4e-3,
    which would refuse every fold (the FP16 runtime leaves TF32 on for its FP32 head)."""
    cudnn, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = cudnn, matmul


def _outputs(y: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return (y,) if isinstance(y, torch.Tensor) else tuple(y)


def _set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)
