"""Fold eval-mode BatchNorm into the convolution before it: one kernel fewer per conv.

On a GPU at batch 1 every kernel counts (a CUDA graph removes the launch cost from Python, not
the kernels themselves): Lite0 runs 49 conv + 49 BatchNorm kernels, and a folded BatchNorm is
w' = w * g / sqrt(v + eps), b' = (b - m) * g / sqrt(v + eps) + beta, the same affine map computed
once at load time. timm's BatchNormAct2d (BatchNorm + activation in one module) keeps its
activation.

Which BatchNorm follows which conv is found by running the module once with hooks (a BatchNorm
whose input IS a conv's output tensor), not from module names, so it works for any backbone; a
conv output that a BatchNorm reads but something else reads too would be wrong to fold, so the
folded module is checked against the original on the example input and refused if it moved.
"""

from __future__ import annotations

import collections
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

FOLD_TOL = 1e-4
"""Max |difference| of the module's outputs (maps in [0, 1]) allowed after folding; the rounding
of the folded weights moves them by ~1e-6."""


class FoldError(RuntimeError):
    """Folding changed the module's output: the caller keeps the unfolded module."""


def conv_bn_pairs(module: nn.Module, run: Callable[[], object]) -> list[tuple[str, str]]:
    """(conv name, BatchNorm name) pairs where the BatchNorm's input is the conv's output tensor,
    found by one call of ``run`` (a forward of ``module``) with hooks. A conv or BatchNorm module
    that runs more than once in the forward (shared weights) is left out: one fold cannot serve
    two call sites."""
    names = {m: n for n, m in module.named_modules()}
    # id -> (conv, weak reference): an id alone could be a freed conv output's, reused by Python
    # for a later tensor that no conv produced.
    produced: dict[int, tuple[nn.Conv2d, weakref.ref[torch.Tensor]]] = {}
    found: list[tuple[nn.Module, nn.Module]] = []
    calls: collections.Counter[nn.Module] = collections.Counter()
    handles = []

    def after_conv(conv: nn.Module, _inp: object, out: torch.Tensor) -> None:
        calls[conv] += 1
        produced[id(out)] = (conv, weakref.ref(out))  # type: ignore[assignment]

    def before_bn(bn: nn.Module, inp: tuple[torch.Tensor, ...]) -> None:
        calls[bn] += 1
        conv, ref = produced.get(id(inp[0]), (None, None))
        if conv is None or ref is None or ref() is not inp[0]:
            return
        if isinstance(bn, nn.BatchNorm2d) and conv.out_channels == bn.num_features:
            found.append((conv, bn))

    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(after_conv))
        elif isinstance(m, nn.BatchNorm2d):
            handles.append(m.register_forward_pre_hook(before_bn))
    try:
        with torch.inference_mode():
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
    forward of ``module`` on an example input. Returns how many were folded. Raises FoldError
    (with the module restored) when the outputs move by more than FOLD_TOL."""
    if module.training:
        raise FoldError("BatchNorm folding needs eval mode (training BatchNorm uses batch statistics)")
    with exact_fp32():
        return _fold_checked(module, run)


def _fold_checked(module: nn.Module, run: Callable[[], torch.Tensor | tuple[torch.Tensor, ...]]) -> int:
    pairs = conv_bn_pairs(module, run)
    if not pairs:
        return 0
    with torch.inference_mode():
        before = _outputs(run())
    saved: list[tuple[nn.Conv2d, torch.Tensor, torch.Tensor | None, str, nn.Module]] = []
    for conv_name, bn_name in pairs:
        conv: nn.Conv2d = module.get_submodule(conv_name)  # type: ignore[assignment]
        bn: nn.BatchNorm2d = module.get_submodule(bn_name)  # type: ignore[assignment]
        if not bn.track_running_stats or bn.running_mean is None or bn.running_var is None:
            continue
        saved.append((conv, conv.weight, conv.bias, bn_name, bn))
        w, b = fuse_conv_bn_weights(
            conv.weight.detach(), None if conv.bias is None else conv.bias.detach(),
            bn.running_mean, bn.running_var, bn.eps,
            bn.weight.detach() if bn.affine else None, bn.bias.detach() if bn.affine else None,
        )  # fmt: skip
        conv.weight, conv.bias = nn.Parameter(w, requires_grad=False), nn.Parameter(b, requires_grad=False)
        _set_submodule(module, bn_name, _after_norm(bn))
    with torch.inference_mode():
        after = _outputs(run())
    moved = max(
        (float((a.float() - b.float()).abs().max()) for a, b in zip(after, before, strict=True)), default=0.0
    )
    if moved > FOLD_TOL:
        for conv, weight, bias, bn_name, original in saved:
            conv.weight, conv.bias = weight, bias  # type: ignore[assignment]
            _set_submodule(module, bn_name, original)
        raise FoldError(f"folding {len(saved)} BatchNorms moved the output by {moved:.2e} (> {FOLD_TOL:g})")
    return len(saved)


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
