"""The operating-point study's scores and statistics: the candidates by name, per-image scores,
bootstrap intervals and the printed table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rpol_edge.evaluate.metrics import (
    DEFAULT_THRESHOLDS,
    summarize,
)

T = DEFAULT_THRESHOLDS

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
