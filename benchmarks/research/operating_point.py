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
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from benchmarks.research.scale_shift import build_canvases, largest_box_coverage  # noqa: E402
from rpol_edge.backbones.timm_backbone import BackboneSpec, build_backbone  # noqa: E402
from rpol_edge.core.geometry import resize_crop  # noqa: E402
from rpol_edge.core.wstar import FeatureSums, solve  # noqa: E402
from rpol_edge.data import Sample, read_dataset  # noqa: E402
from rpol_edge.data.images import load_rgb  # noqa: E402
from rpol_edge.evaluate.metrics import (  # noqa: E402
    DEFAULT_THRESHOLDS,
    best_ious_per_threshold,
    correct_matrix,
    summarize,
)
from rpol_edge.modeling.feature_sums import unit_features  # noqa: E402
from rpol_edge.modeling.localizer import Localizer  # noqa: E402
from rpol_edge.modeling.operating_point import (  # noqa: E402
    OperatingPoint,
    fixed_mask,
    minmax,
    norm_share_above,
    otsu_levels,
    threshold_cuts,
    to_u8_levels,
    upsample,
)
from rpol_edge.results.boxes import iou_inclusive, largest_box  # noqa: E402

T = DEFAULT_THRESHOLDS


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


CANDIDATES = ("fixed_0.5", "sign", "otsu", "fraction", "fit_area", "fit_otsu", "noclamp_0.5", "oracle")
NOTES = {
    "fixed_0.5": "paper's rule at today's default t=0.5",
    "sign": "mask = upsampled w*^T f > 0 (method's sign)",
    "otsu": "Otsu per image on the feature-grid map",
    "fraction": "top q of each map, q = fit share of ||f||>tau",
    "fit_area": "fixed t whose mean fit-image mask area = q",
    "fit_otsu": "fixed t = mean Otsu level of the fit images",
    "noclamp_0.5": "map without the clamp at 0, fixed t=0.5",
    "oracle": "best threshold on the evaluated images (labels; reference only)",
}


@dataclass
class ImageScores:
    """Per image, per candidate: 0/1 GT-known at the operating point; per map variant the (3, T)
    largest- and multi-contour correct matrices."""

    op: dict[str, list[int]]
    largest: dict[str, list[np.ndarray]]
    multi: dict[str, list[np.ndarray]]
    thresholds: dict[str, list[float]]


def new_scores() -> ImageScores:
    variants: dict[str, list[np.ndarray]] = {"clamp": [], "noclamp": []}
    return ImageScores(
        {c: [] for c in CANDIDATES}, variants, {k: [] for k in variants}, {c: [] for c in CANDIDATES}
    )


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


# ---- statistics --------------------------------------------------------------------------------


def metrics_from_counts(
    largest: np.ndarray, multi: np.ndarray, op: np.ndarray, n: float
) -> dict[str, np.ndarray]:
    """Vectorized over a leading bootstrap axis: counts (B, 3, T), op (B,); the same formulas as
    rpol_edge.metrics.summarize (checked against it on the unresampled data)."""
    return {
        "gt_known_op": 100.0 * op / n,
        "maxboxacc": 100.0 * largest[:, 1, :].max(axis=1) / n,
        "maxboxacc_v2": 100.0 * multi.max(axis=2).mean(axis=1) / n,
        "maxboxacc_v2_rpol": 100.0 * largest.mean(axis=1).max(axis=1) / n,
    }


def summarize_scores(sc: ImageScores, boots: np.ndarray, reference: str) -> dict[str, Any]:
    n = len(sc.op["sign"])
    rows: dict[str, Any] = {}
    weights = np.vstack([np.ones(n), boots])  # row 0: the data itself
    draws: dict[str, dict[str, np.ndarray]] = {}
    for cand in CANDIDATES:
        variant = "noclamp" if cand.startswith("noclamp") else "clamp"
        lg = np.stack(sc.largest[variant])  # (N, 3, T)
        mu = np.stack(sc.multi[variant])
        if cand == "oracle":  # GT-known at the best delta-0.5 threshold of these very images
            op = weights @ lg[:, 1, :]
            op_counts = op.max(axis=1)
        else:
            op_counts = weights @ np.asarray(sc.op[cand], np.float64)
        lgc = np.einsum("bn,ndt->bdt", weights, lg)
        muc = np.einsum("bn,ndt->bdt", weights, mu)
        m = metrics_from_counts(lgc, muc, op_counts, n)
        ref = summarize(T, lgc[0].astype(np.int64), muc[0].astype(np.int64), 0, n, 0.5)
        assert abs(ref["maxboxacc_v2_rpol"] - m["maxboxacc_v2_rpol"][0]) < 1e-9
        assert abs(ref["maxboxacc_v2"] - m["maxboxacc_v2"][0]) < 1e-9
        assert abs(ref["maxboxacc"] - m["maxboxacc"][0]) < 1e-9
        draws[cand] = m
        thr = np.asarray(sc.thresholds[cand], np.float64)
        rows[cand] = {
            **{key: round(float(v[0]), 2) for key, v in m.items()},
            **{
                f"{key}_ci95": [round(float(x), 2) for x in np.percentile(v[1:], [2.5, 97.5])]
                for key, v in m.items()
            },
            "best_threshold_rpol": ref["best_threshold"],
            "fixed_threshold_mean": None if np.all(np.isnan(thr)) else round(float(np.nanmean(thr)), 3),
            "note": NOTES[cand],
        }
    for cand in CANDIDATES:
        for other in dict.fromkeys((reference, "fixed_0.5")):
            d = draws[cand]["gt_known_op"] - draws[other]["gt_known_op"]
            rows[cand][f"gt_known_op_minus_{other}"] = round(float(d[0]), 2)
            rows[cand][f"gt_known_op_minus_{other}_ci95"] = [
                round(float(x), 2) for x in np.percentile(d[1:], [2.5, 97.5])
            ]
        d = draws[cand]["gt_known_op"] - draws["oracle"]["gt_known_op"]
        rows[cand]["gt_known_op_minus_oracle"] = round(float(d[0]), 2)
        rows[cand]["gt_known_op_minus_oracle_ci95"] = [
            round(float(x), 2) for x in np.percentile(d[1:], [2.5, 97.5])
        ]
    return {"n_images": n, "candidates": rows}


def bootstrap_weights(n: int, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(count, n))
    return np.stack([np.bincount(r, minlength=n) for r in idx]).astype(np.float64)


def folds(n: int, k: int, seed: int) -> list[np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    return [np.sort(p) for p in np.array_split(perm, k)]


# ---- main --------------------------------------------------------------------------------------


def main() -> None:
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
    args = ap.parse_args()
    if args.k < 2:
        raise SystemExit("--k must be at least 2")
    torch.manual_seed(0)
    t0 = time.time()
    kk, ss = args.input_size, args.resize_size
    train = read_dataset("voc", args.root, "train")
    test = read_dataset("voc", args.root, "test")
    samples = train + test
    n = len(samples)
    names = [s.image_id for s in samples]
    bb = build_backbone(BackboneSpec(args.backbone, "", 32), kk)
    extractor = Localizer(bb.module, torch.zeros(1, bb.channels), bb.mean, bb.std, kk, 0.5)
    sets: dict[str, EvalSet] = {}
    coverage: dict[str, float] = {}
    for label, shifted in (("photos", False), ("shifted", True)):
        frames, boxes, cover = frames_of(samples, shifted, args.seed, kk, ss)
        key = f"{label}|{args.backbone}|{bb.weights_sha256}|{kk}|{ss}|{args.seed}|{','.join(names)}"
        feats = cached_features(args.cache, key, lambda fr=frames: extract(extractor, fr))
        sets[label] = make_set(names, feats, boxes)
        coverage[label] = float(np.median(cover))
        quart = np.quantile(cover, [0.25, 0.75])
        print(
            f"{label}: {n} images, median largest-box coverage {coverage[label]:.1%} "
            f"(quartiles {quart[0]:.1%}-{quart[1]:.1%})",
            flush=True,
        )
    if args.overview:
        canv = build_canvases(samples, args.seed)[:3]  # the evaluated canvases (donors from all)
        tiles = [cv2.resize(cv2.cvtColor(c.image, cv2.COLOR_RGB2BGR), (480, 360)) for c in canv]
        cv2.imwrite(str(args.overview), np.hstack(tiles))
    mean, std = bb.mean, bb.std
    boots = bootstrap_weights(n, args.bootstrap, args.seed)
    all_idx = np.arange(n)
    train_idx, test_idx = np.arange(len(train)), np.arange(len(train), n)
    # protocol -> list of (fit set, fit indices, eval indices)
    protocols: dict[str, tuple[str, list[tuple[np.ndarray, np.ndarray]]]] = {
        f"cv{args.k}": ("photos", [(np.setdiff1d(all_idx, f), f) for f in folds(n, args.k, args.seed)]),
        "unsupervised": ("photos", [(all_idx, all_idx)]),
        "split": ("photos", [(train_idx, test_idx)]),
        f"cv{args.k}_fit_shifted": (
            "shifted",
            [(np.setdiff1d(all_idx, f), f) for f in folds(n, args.k, args.seed)],
        ),
    }
    results: dict[str, Any] = {}
    for proto, (fit_label, plan) in protocols.items():
        eval_labels = ("shifted",) if fit_label == "shifted" else ("photos", "shifted")
        scores = {lab: new_scores() for lab in eval_labels}
        order: list[int] = []
        qs, taus = [], []
        for fit_idx, ev_idx in plan:
            fitted = fit_on(sets[fit_label], fit_idx, mean, std)
            qs.append(fitted.q)
            taus.append(fitted.tau)
            for lab in eval_labels:
                score_images(fitted, sets[lab], ev_idx, kk, mean, std, scores[lab])
            order.extend(int(i) for i in ev_idx)
        bw = boots[:, order] if len(order) == n else bootstrap_weights(len(order), args.bootstrap, args.seed)
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
    record = {
        "command": "python " + " ".join(sys.argv),
        "backbone": args.backbone,
        "input_size": kk,
        "resize_size": ss,
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


def print_table(key: str, res: dict[str, Any], reference: str) -> None:
    print(f"\n{key}: fit on {res['fit_on']}, {res['n_images']} images evaluated, q={res['fraction_q']}")
    print(
        f"{'candidate':12s} {'GT-known@op [95% CI]':22s} {'d vs ' + reference + ' [95% CI]':24s} "
        f"{'MaxBoxAcc':9s} {'V2 off':7s} {'V2 rpol':7s} t"
    )
    for cand, r in res["candidates"].items():
        ci = r["gt_known_op_ci95"]
        d, dci = r[f"gt_known_op_minus_{reference}"], r[f"gt_known_op_minus_{reference}_ci95"]
        t = r["fixed_threshold_mean"]
        print(
            f"{cand:12s} {r['gt_known_op']:6.2f} [{ci[0]:5.1f},{ci[1]:5.1f}]   "
            f"{d:+6.2f} [{dci[0]:+5.1f},{dci[1]:+5.1f}]     "
            f"{r['maxboxacc']:9.2f} {r['maxboxacc_v2']:7.2f} {r['maxboxacc_v2_rpol']:7.2f} "
            f"{'' if t is None else t}"
        )


if __name__ == "__main__":
    main()
