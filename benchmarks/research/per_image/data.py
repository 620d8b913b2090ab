"""The cached sets and the fields a rule reads: w* fitted label-free per fold (raccoon photos and
canvases) or on the lobby's train frames, and the lobby's scene-evidence fields."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.research.instance_data import fit_w, responses
from benchmarks.research.per_image.errors import fail
from benchmarks.research.per_image.maps import minmax_clamped
from benchmarks.research.per_image.scene import scene_background, scene_evidence, scene_spread, scene_sums

THRESHOLDS = np.round(np.arange(0.01, 1.0, 0.01), 2)
"""Relative thresholds of the uint8 score map the oracles try (MaxBoxAcc's grid)."""

SETS = ("photos", "multi", "lobby", "lobby_train")
CACHE_NAMES = {"photos": "photos", "multi": "multi", "lobby": "lobby_test", "lobby_train": "lobby_train"}
FIELDS = ("wstar", "scene", "scene_norm", "scene_x_wstar", "scene_plus_wstar")


def input_size(tag: str) -> int:
    """The input size of a cache tag (448, 640, 448s16: Lite0 at output stride 16)."""
    return int(tag[:3])


def _split_boxes(z: Any) -> list[np.ndarray]:
    nb = z["n_boxes"]
    ends = np.cumsum(nb)
    flat = z["boxes"]
    return [flat[e - n : e] for e, n in zip(ends, nb, strict=True)]


def load(cache: Path, name: str, tag: str, feats: bool = True) -> dict[str, Any]:
    """One cached set: GT boxes, folds where the set has them, and the features unless not asked."""
    path = cache / f"{name}_{tag}.npz"
    if not path.is_file():
        fail(f"no cached features {path} (run cache_features first)")
    z = np.load(path)
    d: dict[str, Any] = {"boxes": _split_boxes(z), "fold": z["fold"] if "fold" in z else None}
    if feats:
        d["feats"] = z["feats"]
    return d


def gts(cache: Path, tag: str) -> dict[str, dict[str, Any]]:
    """GT boxes and folds of every set, without the features."""
    return {s: load(cache, CACHE_NAMES[s], tag, feats=False) for s in SETS}


def prepare(cache: Path, tag: str) -> dict[str, dict[str, Any]]:
    """Every set with its raw w* responses and, for the lobby, its scene fields. The photos and
    canvases get fold f's w* (fitted on the other folds' photos); the lobby the train frames'."""
    photos, multi = load(cache, "photos", tag), load(cache, "multi", tag)
    ltr, lte = load(cache, "lobby_train", tag), load(cache, "lobby_test", tag)
    for d in (photos, multi):
        d["raw"] = np.zeros((len(d["feats"]), *d["feats"].shape[2:]))
    for f in range(5):
        w = fit_w(photos["feats"][photos["fold"] != f])
        for d in (photos, multi):
            sel = d["fold"] == f
            d["raw"][sel] = responses(d["feats"][sel], w)
    w = fit_w(ltr["feats"])
    sums, n = scene_sums(ltr["feats"])
    b = scene_background(sums, n)
    for d in (lte, ltr):
        d["raw"] = responses(d["feats"], w)
        d["scene"] = np.stack([scene_evidence(f, b) for f in d["feats"]])
        d["scene_spread"] = scene_spread(sums, n)
    # A leave-one-fold-out scene model for the photos or canvases would average unrelated photos,
    # not one camera's scene: the scene fields exist on the lobby only.
    return {"photos": photos, "multi": multi, "lobby": lte, "lobby_train": ltr}


def field(d: dict[str, Any], i: int, kind: str) -> np.ndarray:
    """Image i's grid in [0, 1] of one field kind (the graph's clamp and min-max)."""
    a = d["raw"][i]
    if kind == "wstar":
        return minmax_clamped(a)
    e = d["scene"][i]
    if kind == "scene":
        return minmax_clamped(e)
    if kind == "scene_norm":  # evidence in units of the cell's own train-frame spread
        return minmax_clamped(e / d["scene_spread"])
    if kind == "scene_x_wstar":  # evidence times the clamped w* response
        return minmax_clamped(e * np.maximum(a, 0.0))
    if kind == "scene_plus_wstar":
        return minmax_clamped(minmax_clamped(e) + minmax_clamped(a))
    raise KeyError(kind)
