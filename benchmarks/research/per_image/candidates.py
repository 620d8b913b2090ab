"""The candidate rules by name: name -> (field kind, family, top-box function or None).

A top-box function takes (g, a, feats, size): g the field's clamped min-max grid, a the raw w*
response grid, feats the image's feature grid (only the feature-graph leads read it). ``None``
marks the rules `evaluate_rules` runs whole (the watershed instances, ``ws_map``, ``localhalf``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from benchmarks.research.per_image import levels as L
from benchmarks.research.per_image.coverage_rule import coverage_box
from benchmarks.research.per_image.feature_graph import lost_seed, tokencut

TopBox = Callable[[np.ndarray, np.ndarray, np.ndarray | None, int], np.ndarray | None]
Candidate = tuple[str, str, TopBox | None]

PEAK_RELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
SCENE_PEAK_RELS = (0.85, 0.9, 0.95)
WS_PROMINENCES = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
WS_RANKINGS = ("mean", "peak", "meanxpeak", "mass")


def _on_grid(rule: Callable[..., np.ndarray | None], *args: object) -> TopBox:
    """A rule of the clamped grid g alone: rule(g, size, *args)."""
    return lambda g, a, f, size: rule(g, size, *args)


def _box_criterion(
    crit: str, which: str, g: np.ndarray, a: np.ndarray, f: object, size: int
) -> np.ndarray | None:
    # The recorded box-criterion rows were measured without the sign mask's region among the
    # candidates (sign=False) for every field, w* included: kept so that they reproduce.
    return L.box_criterion(g, size, crit, which, False)


def _sign(g: np.ndarray, a: np.ndarray, f: object, size: int) -> np.ndarray | None:
    return L.sign_largest(a, size)


def _edge_signed(which: str, g: np.ndarray, a: np.ndarray, f: object, size: int) -> np.ndarray | None:
    return L.edge_region(g, size, which, a)


def _maxsub(g: np.ndarray, a: np.ndarray, f: object, size: int) -> np.ndarray | None:
    return L.max_subarray_box(g - g.mean(), size)


def _lost(seed: str, g: np.ndarray, a: np.ndarray, f: np.ndarray | None, size: int) -> np.ndarray | None:
    assert f is not None
    return lost_seed(a, f, size, seed)


def _tokencut(g: np.ndarray, a: np.ndarray, f: np.ndarray | None, size: int) -> np.ndarray | None:
    assert f is not None
    return tokencut(a, f, size, 0.0)


def _coverage(
    q: float, fallback: str, g: np.ndarray, a: np.ndarray, f: object, size: int
) -> np.ndarray | None:
    return coverage_box(g, a, size, q, fallback)


COVERAGE_RULES = ((0.4, "peak_rel0.2"), (0.5, "halfmax"))
"""coverage.py's CV pick on photos + canvases and its a-priori rule (coverage_448.md)."""


def _field_rules(kind: str) -> dict[str, Candidate]:
    p = "" if kind == "wstar" else kind + ":"
    c: dict[str, Candidate] = {}
    if kind == "wstar":
        c["sign"] = (kind, "sign", _sign)
    else:
        c[p + "sign_rel0"] = (kind, "sign", _on_grid(L.rel_region, 1e-6, "largest"))
    for crit in ("bcv", "fisher"):
        for which in ("largest", "peak"):
            c[f"{p}box_{crit}_{which}"] = (kind, f"box_{crit}_{which}", partial(_box_criterion, crit, which))
    c[p + "otsu"] = (kind, "otsu", _on_grid(L.otsu_largest))
    c[p + "mser_peak"] = (kind, "mser", _on_grid(L.most_stable, "peak"))
    for rel in PEAK_RELS + (SCENE_PEAK_RELS if kind != "wstar" else ()):
        c[f"{p}peak_rel{rel}"] = (kind, "peak_rel", _on_grid(L.rel_region, rel, "peak"))
    for wh in ("peak", "largest"):
        c[f"{p}edge_{wh}"] = (kind, f"edge_{wh}", _on_grid(L.edge_region, wh))
    c[p + "halfmax_median"] = (kind, "halfmax", _on_grid(L.halfmax_region, "median"))
    c[p + "maxsub_centred"] = (kind, "maxsub", _maxsub)
    return c


def candidates() -> dict[str, Candidate]:
    """Every candidate, in the order the records list them."""
    c: dict[str, Candidate] = {}
    for kind in ("wstar", "scene", "scene_norm", "scene_x_wstar", "scene_plus_wstar"):
        c.update(_field_rules(kind))
    # The combined scene x w* fields: their oracles are far below the scene field's alone, so
    # only the fixed-level family and one criterion are run on them.
    for name in [n for n in c if n.startswith(("scene_x_wstar:", "scene_plus_wstar:"))]:
        if not any(t in name for t in ("peak_rel", "box_bcv_largest", "sign_rel0")):
            del c[name]
    for wh in ("peak", "largest"):
        c[f"edge_signed_{wh}"] = ("wstar", f"edge_signed_{wh}", partial(_edge_signed, wh))
    for prom in WS_PROMINENCES:
        for rank in WS_RANKINGS:
            c[f"ws_p{prom}_{rank}"] = ("wstar", f"ws_{rank}", None)
    c["scene:localhalf"] = ("scene", "localhalf", None)
    c["ws_map_p0.5"] = ("wstar", "ws_map", None)
    c["lost_peak"] = ("wstar", "lost", partial(_lost, "peak"))
    c["lost_degree"] = ("wstar", "lost", partial(_lost, "degree"))
    c["tokencut"] = ("wstar", "tokencut", _tokencut)
    for q, fb in COVERAGE_RULES:
        c[f"cov_q{q}_{fb}"] = ("wstar", "coverage", partial(_coverage, q, fb))
    return c
