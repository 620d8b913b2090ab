"""The coverage fallback: ``sign``, but where the sign mask keeps more than q of the frame (the
shared background is on w*'s positive side, as on a fixed camera whose own frames fitted w*), a
fallback of the map itself: the region holding the peak above r x max (``peak_rel<r>``), or a
level the map picks (``otsu``, ``mser``, ``halfmax``). Label-free and per image."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from benchmarks.research.per_image import levels as L
from benchmarks.research.per_image.maps import F, upsample

Fallback = Callable[[F, int], np.ndarray | None]


def fallback_rule(name: str) -> Fallback:
    """A fallback of the clamped grid g by name: ``peak_rel<r>``, ``otsu``, ``mser``, ``halfmax``."""
    if name.startswith("peak_rel"):
        rel = float(name[len("peak_rel") :])
        return lambda g, size: L.rel_region(g, size, rel, "peak")
    rules: dict[str, Fallback] = {
        "otsu": L.otsu_largest,
        "mser": lambda g, size: L.most_stable(g, size, "peak"),
        "halfmax": lambda g, size: L.halfmax_region(g, size, "median"),
    }
    return rules[name]


def sign_coverage(a: F, size: int) -> float:
    """The share of the frame the sign mask keeps (the upsampled raw response > 0)."""
    return float((upsample(a, size) > 0).mean())


def coverage_box(g: F, a: F, size: int, q: float, fallback: str) -> np.ndarray | None:
    """The rule: ``sign``'s box where the sign mask covers at most q of the frame, else the fallback's."""
    if sign_coverage(a, size) <= q:
        return L.sign_largest(a, size)
    return fallback_rule(fallback)(g, size)
