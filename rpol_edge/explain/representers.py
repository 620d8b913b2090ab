"""The representer split of one activation (Song et al., ICCV 2023, Eq. 13-15), with the fit's
exact scaling: the math as small pure functions, and the per-query records that keep only the K
most excitatory and K most inhibitory training images (heaps), so memory does not grow with N.

    a_q = w*·f̂_q = sum_{n,i} r_{n,i}(q),   r_{n,i}(q) = alpha_{n,i} (f̂_{n,i}·f̂_q),
    alpha_{n,i} = (||f_{n,i}|| - tau) / (h w Z),   Z = ||v - tau u||  (the stored sums).

rpol_edge/explain/explainer.py streams the training set through these.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rpol_edge.core.wstar import EPS, direction


def normalizer(v_sum: np.ndarray, u_sum: np.ndarray, t: float) -> float:
    """Z = ||v - tau u|| over the stored sums: w* = (v - tau u) / Z."""
    return float(np.linalg.norm(direction(v_sum, u_sum, t)))


def importance(norms: np.ndarray, t: float, z: float) -> np.ndarray:
    """alpha_{n,i} = (||f_{n,i}|| - tau) / (h w Z) for one training image's (h, w) norm map."""
    h, w = norms.shape[-2:]
    return (np.asarray(norms, np.float64) - t) / (h * w * z)


def unit_map(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(f̂ (C, h, w) float64, ||f|| (h, w) float64); a zero vector gets f̂ = 0, never NaN."""
    f = np.asarray(features, np.float64)
    norms = np.sqrt(np.einsum("chw,chw->hw", f, f))
    return f / np.maximum(norms, EPS), norms


def similarity(unit: np.ndarray, unit_q: np.ndarray) -> np.ndarray:
    """f̂_{n,i}·f̂_q for every position i of one image: (C, h, w), (C,) -> (h, w)."""
    return np.einsum("chw,c->hw", unit, unit_q)


def representer_values(alpha: np.ndarray, sim: np.ndarray) -> np.ndarray:
    """r_{n,i}(q) = alpha_{n,i} (f̂_{n,i}·f̂_q)."""
    return alpha * sim


@dataclass(order=True)
class Contribution:
    """One training image's part of a_q: ``total`` = sum_i r_{n,i}(q), with its maps (h, w)."""

    total: float
    image_id: str = field(compare=False)
    path: str = field(compare=False)
    positive: float = field(compare=False)
    negative: float = field(compare=False)
    alpha: np.ndarray = field(compare=False, repr=False)
    sim: np.ndarray = field(compare=False, repr=False)
    r: np.ndarray = field(compare=False, repr=False)

    def record(self) -> dict[str, Any]:
        return {
            "image_id": self.image_id,
            "path": self.path,
            "contribution": self.total,
            "positive_part": self.positive,
            "negative_part": self.negative,
            "alpha_min": float(self.alpha.min()),
            "alpha_max": float(self.alpha.max()),
            "similarity_min": float(self.sim.min()),
            "similarity_max": float(self.sim.max()),
            "r_min": float(self.r.min()),
            "r_max": float(self.r.max()),
        }


@dataclass
class Query:
    x: float
    y: float
    cell: tuple[int, int]
    source: str
    """``given``, ``peak`` or ``lowest``."""
    unit: np.ndarray  # (C,) float64
    a_q: float
    """w*·f̂_q before the clamp."""
    sum_r: float = 0.0
    excitatory: list[tuple[float, int, Contribution]] = field(default_factory=list)
    inhibitory: list[tuple[float, int, Contribution]] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        return {
            "point": [round(self.x, 2), round(self.y, 2)],
            "cell": list(self.cell),
            "source": self.source,
            "a_q": self.a_q,
            "a_q_clamped": max(self.a_q, 0.0),
            "sum_r": self.sum_r,
            "identity_abs_error": abs(self.sum_r - self.a_q),
            "excitatory": [c.record() for c in self.top_excitatory()],
            "inhibitory": [c.record() for c in self.top_inhibitory()],
        }

    def top_excitatory(self) -> list[Contribution]:
        return [c for _, _, c in sorted(self.excitatory, key=lambda e: (-e[0], e[1]))]

    def top_inhibitory(self) -> list[Contribution]:
        return [c for _, _, c in sorted(self.inhibitory, key=lambda e: (-e[0], e[1]))]


def _push(heap: list[tuple[float, int, Contribution]], key: float, n: int, c: Contribution, k: int) -> None:
    """Keep the k largest keys (a min-heap); ties keep the earlier image."""
    item = (key, -n, c)
    if len(heap) < k:
        heapq.heappush(heap, item)
    elif item[:2] > heap[0][:2]:
        heapq.heapreplace(heap, item)


def score_image(
    queries: list[Query], image_id: str, path: str, unit: np.ndarray, alpha: np.ndarray, n: int, top: int
) -> None:
    """Add training image number ``n`` (unit features ``unit``, importance ``alpha``) to every
    query: its total joins sum_r, and it enters the query's top-``top`` heaps on both sides."""
    for q in queries:
        sim = similarity(unit, q.unit)
        r = representer_values(alpha, sim)
        total = float(r.sum())
        q.sum_r += total
        contrib = Contribution(
            total,
            image_id,
            path,
            float(r[r > 0].sum()),
            float(r[r < 0].sum()),
            alpha.astype(np.float32),
            sim.astype(np.float32),
            r.astype(np.float32),
        )
        _push(q.excitatory, total, n, contrib, top)
        _push(q.inhibitory, -total, n, contrib, top)


__all__ = [
    "Contribution",
    "Query",
    "importance",
    "normalizer",
    "representer_values",
    "score_image",
    "similarity",
    "unit_map",
]
