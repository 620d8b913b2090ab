"""Label-free operating points, measured by k-fold cross-validation on the raccoon photos.

Backbone features of all 200 photos (and of their scale-shifted canvases, scale_shift.py) are
computed once; every protocol then fits w*/tau from summed features (no labels) and scores each
candidate rule on images the fit did not see, with the project's own Localizer (the exported code
path) and metrics. Protocols: k-fold CV over the 200 photos; "unsupervised" (fit and evaluate on all
200); the fixed split (fit train, evaluate test). Bootstrap 95 % CIs over images (2,000 resamples,
the same resamples for every candidate, so paired differences are exact pairings).

Usage: python -m benchmarks.research.operating_point --root ../shared/data/raccoon \
           --out benchmarks/results/operating_point.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from benchmarks.research.operating_point_stats import (
    CANDIDATES,
    ImageScores,
    T,
    bootstrap_weights,
    folds,
    new_scores,
    print_table,
    summarize_scores,
)
from benchmarks.research.scale_shift import build_canvases, largest_box_coverage
from rpol_edge.backbones.timm_backbone import BackboneSpec, build_backbone
from rpol_edge.core.geometry import resize_crop
from rpol_edge.core.wstar import FeatureSums, solve
from rpol_edge.data import Sample, read_dataset
from rpol_edge.data.images import load_rgb
from rpol_edge.evaluate.metrics import (
    best_ious_per_threshold,
    correct_matrix,
)
from rpol_edge.modeling.feature_sums import unit_features
from rpol_edge.modeling.localizer import Localizer
from rpol_edge.modeling.operating_point import (
    OperatingPoint,
    fixed_mask,
    minmax,
    norm_share_above,
    otsu_levels,
    threshold_cuts,
    to_u8_levels,
    upsample,
)
from rpol_edge.results.boxes import iou_inclusive, largest_box


@dataclass
class EvalSet:
    """Features and network-frame GT boxes of a set of images, plus per-image fit statistics."""

    names: list[str]
    feats: torch.Tensor  # (N, C, h, w) float32
    boxes: list[np.ndarray]
    v: np.ndarray  # (N, C) float64: spatial mean of f
    u: np.ndarray  # (N, C) float64: spatial mean of f / ||f||
    norms: torch.Tensor  # (N, h*w) feature norms


def frames_of(
    samples: list[Sample], canvases: bool, seed: int, k: int, s: int
) -> tuple[np.ndarray, list[np.ndarray], list[float]]:
    frames, boxes, cover = [], [], []
    if canvases:
        items = [(c.image, c.boxes) for c in build_canvases(samples, seed)]
    else:
        items = [(load_rgb(x.path), x.boxes) for x in samples]
    for image, b in items:
        frame, t = resize_crop(image, s, k)
        frames.append(frame)
        boxes.append(t.boxes_to_input(b))
        cover.append(largest_box_coverage(b, image.shape[1], image.shape[0]))
    return np.stack(frames), boxes, cover


def extract(loc: Localizer, frames: np.ndarray, batch: int = 8) -> torch.Tensor:
    out = []
    with torch.inference_mode():
        for i in range(0, len(frames), batch):
            out.append(loc.features(torch.from_numpy(frames[i : i + batch])).float())
    return torch.cat(out)


def make_set(names: list[str], feats: torch.Tensor, boxes: list[np.ndarray]) -> EvalSet:
    f64 = feats.to(torch.float64)
    return EvalSet(
        names,
        feats,
        boxes,
        f64.mean(dim=(2, 3)).numpy(),
        unit_features(f64).mean(dim=(2, 3)).numpy(),
        feats.norm(dim=1).flatten(1),
    )


def cached_features(cache: Path | None, key: str, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
    if cache is None:
        return compute()
    path = cache / f"feats_{hashlib.sha256(key.encode()).hexdigest()[:16]}.npy"
    if path.is_file():
        return torch.from_numpy(np.load(path))
    feats = compute()
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, feats.numpy())
    return feats


# ---- candidates ---------------------------------------------------------------------------------


@dataclass
class Fitted:
    w: np.ndarray
    tau: float
    q: float
    """Share of fit positions with ||f_i|| > tau."""
    fit_grid: torch.Tensor
    """Clamped, min-max feature-grid maps of the fit images (for per-model thresholds)."""


def fit_on(
    fit: EvalSet, idx: np.ndarray, mean: tuple[float, float, float], std: tuple[float, float, float]
) -> Fitted:
    sums = FeatureSums(
        fit.v[idx].sum(0, keepdims=True), fit.u[idx].sum(0, keepdims=True), np.array([len(idx)])
    )
    w, taus = solve(sums)
    loc = Localizer(nn.Identity(), torch.from_numpy(w), mean, std, 32, 0.5)
    with torch.inference_mode():
        grid = minmax(loc.response(fit.feats[idx]).clamp_min(0.0))
    return Fitted(w, float(taus[0]), norm_share_above(fit.norms[idx], float(taus[0])), grid)


def per_model_area_threshold(grid: torch.Tensor, q: float) -> float:
    """Fixed t whose mean mask area on the fit images' own maps is closest to q (no labels)."""
    u8 = to_u8_levels(grid)
    peak = u8.amax(dim=(2, 3), keepdim=True)
    areas = np.array([float((u8 > torch.floor(t * peak)).float().mean()) for t in T])
    return float(T[int(np.argmin(np.abs(areas - q)))])


def per_model_otsu_threshold(grid: torch.Tensor) -> float:
    """Fixed t = mean over the fit images of Otsu's level relative to each map's peak (no labels)."""
    u8 = to_u8_levels(grid)
    peak = u8.amax(dim=(2, 3), keepdim=True).clamp_min(1.0)
    rel = (otsu_levels(grid) / peak).flatten()
    return float(np.clip(np.round(float(rel.mean()), 2), 0.01, 0.99))


def score_images(
    fitted: Fitted, ev: EvalSet, idx: np.ndarray, k: int, mean: Any, std: Any, out: ImageScores
) -> None:
    w = torch.from_numpy(fitted.w)
    t_area = per_model_area_threshold(fitted.fit_grid, fitted.q)
    t_otsu = per_model_otsu_threshold(fitted.fit_grid)
    rules = {
        "fixed_0.5": OperatingPoint("fixed", 0.5),
        "sign": OperatingPoint("sign"),
        "otsu": OperatingPoint("otsu"),
        "fraction": OperatingPoint("fraction", fraction=fitted.q),
        "fit_area": OperatingPoint("fixed", t_area),
        "fit_otsu": OperatingPoint("fixed", t_otsu),
    }
    locs = {
        name: Localizer(nn.Identity(), w, mean, std, k, 0.5, operating_point=op) for name, op in rules.items()
    }
    cut05 = threshold_cuts(0.5)
    for start in range(0, len(idx), 8):
        chunk = idx[start : start + 8]
        f = ev.feats[chunk]
        with torch.inference_mode():
            outs = {name: loc.localize(f) for name, loc in locs.items()}
            raw = locs["sign"].response(f)
            score_nc = upsample(minmax(raw), k).clamp(0.0, 1.0)
            mask_nc = fixed_mask(score_nc, cut05)
        score = outs["sign"][0].numpy()
        for j, i in enumerate(chunk):
            gt = ev.boxes[i]
            for variant, smap in (("clamp", score[j, 0]), ("noclamp", score_nc[j, 0].numpy())):
                lg, mu = best_ious_per_threshold(smap, gt, T)
                out.largest[variant].append(correct_matrix(lg))
                out.multi[variant].append(correct_matrix(mu))
            for name in rules:
                box = largest_box(outs[name][1][j, 0].numpy())
                out.op[name].append(int(iou_inclusive(box, gt).max() >= 0.5))
                out.thresholds[name].append(
                    rules[name].threshold if rules[name].rule == "fixed" else float("nan")
                )
            box = largest_box(mask_nc[j, 0].numpy())
            out.op["noclamp_0.5"].append(int(iou_inclusive(box, gt).max() >= 0.5))
            out.thresholds["noclamp_0.5"].append(0.5)
            out.op["oracle"].append(-1)  # filled from the curves below
            out.thresholds["oracle"].append(float("nan"))


# ---- main --------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--backbone", default="lite0")
    ap.add_argument("--input-size", type=int, default=448)
    ap.add_argument("--resize-size", type=int, default=480)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bootstrap", type=int, default=2000)
    ap.add_argument(
        "--reference", default="sign", choices=CANDIDATES, help="candidate the differences are taken against"
    )
    ap.add_argument("--cache", type=Path, default=None, help="folder to keep the features in between runs")
    ap.add_argument("--overview", type=Path, default=None, help="write 3 scale-shifted canvases to this PNG")
    return ap


def eval_sets(
    args: argparse.Namespace, samples: list[Sample], bb: Any
) -> tuple[dict[str, EvalSet], dict[str, float]]:
    """The photos and their scale-shifted canvases, with features; median largest-box coverage of each."""
    kk, ss = args.input_size, args.resize_size
    names = [s.image_id for s in samples]
    extractor = Localizer(bb.module, torch.zeros(1, bb.channels), bb.mean, bb.std, kk, 0.5)
    sets: dict[str, EvalSet] = {}
    coverage: dict[str, float] = {}
    for label, shifted in (("photos", False), ("shifted", True)):
        frames, boxes, cover = frames_of(samples, shifted, args.seed, kk, ss)
        key = f"{label}|{args.backbone}|{bb.weights_sha256}|{kk}|{ss}|{args.seed}|{','.join(names)}"
        feats = cached_features(args.cache, key, partial(extract, extractor, frames))
        sets[label] = make_set(names, feats, boxes)
        coverage[label] = float(np.median(cover))
        quart = np.quantile(cover, [0.25, 0.75])
        print(
            f"{label}: {len(samples)} images, median largest-box coverage {coverage[label]:.1%} "
            f"(quartiles {quart[0]:.1%}-{quart[1]:.1%})",
            flush=True,
        )
    return sets, coverage


Plan = list[tuple[np.ndarray, np.ndarray]]
"""(fit indices, evaluated indices) per fit."""


def protocols(args: argparse.Namespace, n: int, n_train: int) -> dict[str, tuple[str, Plan]]:
    """protocol -> (the set fitted on, its plan)."""
    all_idx = np.arange(n)
    cv = [(np.setdiff1d(all_idx, f), f) for f in folds(n, args.k, args.seed)]
    return {
        f"cv{args.k}": ("photos", cv),
        "unsupervised": ("photos", [(all_idx, all_idx)]),
        "split": ("photos", [(np.arange(n_train), np.arange(n_train, n))]),
        f"cv{args.k}_fit_shifted": ("shifted", cv),
    }


def run_protocol(
    proto: str, fit_label: str, plan: Plan, sets: dict[str, EvalSet], bb: Any, boots: np.ndarray,
    args: argparse.Namespace,
) -> dict[str, Any]:  # fmt: skip
    """Every fit of one protocol, each candidate scored on the evaluated images; one row per set."""
    n = len(sets[fit_label].names)
    eval_labels = ("shifted",) if fit_label == "shifted" else ("photos", "shifted")
    scores = {lab: new_scores() for lab in eval_labels}
    order: list[int] = []
    qs, taus = [], []
    for fit_idx, ev_idx in plan:
        fitted = fit_on(sets[fit_label], fit_idx, bb.mean, bb.std)
        qs.append(fitted.q)
        taus.append(fitted.tau)
        for lab in eval_labels:
            score_images(fitted, sets[lab], ev_idx, args.input_size, bb.mean, bb.std, scores[lab])
        order.extend(int(i) for i in ev_idx)
    bw = boots[:, order] if len(order) == n else bootstrap_weights(len(order), args.bootstrap, args.seed)
    results: dict[str, Any] = {}
    for lab in eval_labels:
        key = f"{proto}/{lab}"
        results[key] = {
            "fit_on": fit_label,
            "evaluated_on": lab,
            "fits": len(plan),
            "fraction_q": [round(q, 4) for q in qs],
            "tau": [round(t, 4) for t in taus],
            **summarize_scores(scores[lab], bw, args.reference),
        }
        print_table(key, results[key], args.reference)
    return results


def main() -> None:
    args = parser().parse_args()
    if args.k < 2:
        raise SystemExit("--k must be at least 2")
    torch.manual_seed(0)
    t0 = time.time()
    train = read_dataset("voc", args.root, "train")
    test = read_dataset("voc", args.root, "test")
    samples = train + test
    n = len(samples)
    bb = build_backbone(BackboneSpec(args.backbone, "", 32), args.input_size)
    sets, coverage = eval_sets(args, samples, bb)
    if args.overview:
        canv = build_canvases(samples, args.seed)[:3]  # the evaluated canvases (donors from all)
        tiles = [cv2.resize(cv2.cvtColor(c.image, cv2.COLOR_RGB2BGR), (480, 360)) for c in canv]
        cv2.imwrite(str(args.overview), np.hstack(tiles))
    boots = bootstrap_weights(n, args.bootstrap, args.seed)
    results: dict[str, Any] = {}
    for proto, (fit_label, plan) in protocols(args, n, len(train)).items():
        results.update(run_protocol(proto, fit_label, plan, sets, bb, boots, args))
    record = {
        "command": "python " + " ".join(sys.argv),
        "backbone": args.backbone,
        "input_size": args.input_size,
        "resize_size": args.resize_size,
        "k": args.k,
        "seed": args.seed,
        "bootstrap": args.bootstrap,
        "reference": args.reference,
        "median_coverage": coverage,
        "seconds": round(time.time() - t0, 1),
        "protocols": results,
    }
    if args.out:
        from rpol_edge.core.files import write_text_atomic

        write_text_atomic(args.out, json.dumps(record, indent=1))
        print(f"wrote {args.out}")
    print(f"{record['seconds']} s")


if __name__ == "__main__":
    main()
