"""Instance rules (one box per object) and small-object settings, cross-validated on three sets.

Sets: the 200 raccoon photos; their scale-shifted canvases (scale_shift.py); multi-object canvases
with 2-4 raccoons each (multi_object.py; the canvases of fold i are made only of fold i's photos).
Backbone features are computed once per set and input size (cached with --cache). 5 folds (the
folds of operating_point.py): w*/tau fitted without labels on the photos of 4 folds, every
candidate scored on the held-out fold of all three sets. Metrics: top-box GT-known Loc (the first
box, IoU >= 0.5 with any ground-truth box), and per object over every ground-truth box AP50, recall
and precision at IoU 0.5 (rpol_edge.evaluate.detection_metrics). 95 % intervals: bootstrap over
images, the same resamples for every candidate (paired differences). "cv-selected" rows choose a
family's constants on the 4 fitting folds only (mean of the three sets' criteria), then score the
held-out fold.

Usage: python -m benchmarks.research.instances --root ../shared/data/raccoon --cache /work/cache/instances \
           --out benchmarks/results/instances.json [--sizes 448,512,640] [--stride16 plain|dilated]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.research.instance_data import SETS, Data, build_data, fit_w, load_sets, responses
from benchmarks.research.instance_detectors import Detector, candidates
from rpol_edge.bench.runner import cpu_record
from rpol_edge.evaluate.detection_metrics import average_precision, match_image
from rpol_edge.results.boxes import iou_inclusive

# ---- scoring -----------------------------------------------------------------------------------


@dataclass
class PerImage:
    top: np.ndarray  # (N,) 0/1 top-box GT-known
    scores: list[np.ndarray]
    tp: list[np.ndarray]
    n_gt: np.ndarray  # (N,)
    gt_hit: list[np.ndarray]  # per GT box: matched
    ms: np.ndarray  # (N,) host ms per image


def score_set(det: Detector, raws: np.ndarray, feats: np.ndarray, gts: list[np.ndarray], k: int) -> PerImage:
    top, scores, tps, n_gt, hits, ms = [], [], [], [], [], []
    for i in range(len(raws)):
        t0 = time.perf_counter()
        boxes, sc = det(raws[i], feats[i], k)
        ms.append(1000 * (time.perf_counter() - t0))
        gt = gts[i]
        top.append(int(len(boxes) > 0 and iou_inclusive(boxes[0], gt).max() >= 0.5))
        tp = match_image(boxes, sc, gt)
        scores.append(np.asarray(sc, np.float64))
        tps.append(tp)
        n_gt.append(len(gt))
        hit = np.zeros(len(gt), bool)
        if len(boxes):
            iou = iou_inclusive(boxes, gt)
            free = np.ones(len(gt), bool)
            for j in np.argsort(-np.asarray(sc), kind="stable"):
                cand = np.where(free, iou[j], -1.0)
                g = int(np.argmax(cand))
                if cand[g] >= 0.5:
                    free[g] = False
                    hit[g] = True
        hits.append(hit)
    return PerImage(np.array(top), scores, tps, np.array(n_gt), hits, np.array(ms))


def metrics(p: PerImage, idx: np.ndarray) -> dict[str, float]:
    s = np.concatenate([p.scores[i] for i in idx]) if len(idx) else np.zeros(0)
    t = np.concatenate([p.tp[i] for i in idx]) if len(idx) else np.zeros(0, bool)
    n_gt = int(p.n_gt[idx].sum())
    return {
        "top_gt_known": 100.0 * float(p.top[idx].mean()),
        "ap50": 100.0 * average_precision(s, t, n_gt),
        "recall50": 100.0 * float(t.sum()) / max(n_gt, 1),
        "precision50": 100.0 * float(t.sum()) / max(len(s), 1),
        "boxes_per_image": len(s) / max(len(idx), 1),
    }


def criterion(m: dict[str, dict[str, float]]) -> float:
    """What cv-selection maximizes: multi-object AP50 and the two sets' top-box GT-known, equally."""
    return (m["multi"]["ap50"] + m["photos"]["top_gt_known"] + m["shifted"]["top_gt_known"]) / 3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--sizes", default="448", help="comma-separated input sizes (w* fitted at each)")
    ap.add_argument(
        "--stride16",
        choices=("", "plain", "dilated"),
        default="",
        help="also Lite0 at output stride 16 (stage 5's stride-2 conv at 1), later convs plain/dilated",
    )
    ap.add_argument("--only", default="", help="comma-separated candidate names (default: all)")
    ap.add_argument("--fit-size", type=int, default=0, help="fit w* at this input size, run at --sizes")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--per-fold", type=int, default=42)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bootstrap", type=int, default=1000)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    t_start = time.time()
    raw_sets = load_sets(args.root, 448, args.seed, args.k, args.per_fold)
    cands = candidates()
    if args.only:
        cands = {n: cands[n] for n in args.only.split(",")}
    configs = [(int(s), "") for s in args.sizes.split(",") if s] + (
        [(448, args.stride16)] if args.stride16 else []
    )
    record: dict[str, Any] = {
        "command": "python " + " ".join(sys.argv),
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "folds": args.k,
        "seed": args.seed,
        "bootstrap": args.bootstrap,
        "configs": {},
    }
    for k, s16 in configs:
        label = f"lite0@{k}" + (f"_stride16_{s16}" if s16 else "")
        data = build_data(raw_sets, k, s16, args.cache, args.seed)
        fit_data = None
        if args.fit_size and args.fit_size != k:
            label += f"_fit{args.fit_size}"
            fit_data = build_data(raw_sets, args.fit_size, s16, args.cache, args.seed)
        record["configs"][label] = run_config(data, cands, k, args, fit_data)
        record["configs"][label]["grid"] = list(data["photos"].feats.shape[2:])
        print_config(label, record["configs"][label])
    record["seconds"] = round(time.time() - t_start, 1)
    if args.out:
        from rpol_edge.core.files import write_text_atomic

        write_text_atomic(args.out, json.dumps(record, indent=1))
        print(f"wrote {args.out}")


def run_config(
    data: dict[str, Data],
    cands: dict[str, Any],
    k: int,
    args: argparse.Namespace,
    fit_data: dict[str, Data] | None = None,
) -> dict[str, Any]:
    """``fit_data``: the sets at another input size, whose photos w* is fitted on (fit at one size,
    run at another); default ``data`` itself."""
    n_folds = args.k
    fit_photos = (fit_data or data)["photos"]
    # Per fold: w* from the other folds' photos; responses of every set's held-out images.
    raws = {name: np.zeros((len(d.feats), *d.feats.shape[2:])) for name, d in data.items()}
    for f in range(n_folds):
        w = fit_w(fit_photos.feats[fit_photos.fold != f])
        for name, d in data.items():
            sel = d.fold == f
            raws[name][sel] = responses(d.feats[sel], w)
    per: dict[str, dict[str, PerImage]] = {}
    for cname, (_fam, det, _c) in cands.items():
        per[cname] = {
            name: score_set(det, raws[name], data[name].feats, data[name].boxes, k) for name in SETS
        }
    rng = np.random.default_rng(args.seed)
    boots = {
        name: rng.integers(0, len(d.feats), size=(args.bootstrap, len(d.feats))) for name, d in data.items()
    }
    rows: dict[str, Any] = {}
    draws: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for cname, (fam, _det, consts) in cands.items():
        row: dict[str, Any] = {"family": fam, "constants": consts}
        draws[cname] = {}
        for name, d in data.items():
            p = per[cname][name]
            m = metrics(p, np.arange(len(d.feats)))
            bs = [metrics(p, b) for b in boots[name]]
            draws[cname][name] = {key: np.array([x[key] for x in bs]) for key in m}
            row[name] = {key: round(v, 2) for key, v in m.items()}
            row[name].update(
                {
                    f"{key}_ci95": [
                        round(float(x), 1) for x in np.percentile(draws[cname][name][key], [2.5, 97.5])
                    ]
                    for key in ("top_gt_known", "ap50", "recall50", "precision50")
                }  # fmt: skip
            )
            row[name]["host_ms_median"] = round(float(np.median(p.ms)), 3)
            row[name]["host_ms_p95"] = round(float(np.percentile(p.ms, 95)), 3)
            if name == "multi":
                areas = np.concatenate(d.area)
                hit = np.concatenate(p.gt_hit)
                row[name]["recall_by_area"] = {
                    lab: round(100.0 * float(hit[(areas >= lo) & (areas < hi)].mean()), 1)
                    for lab, lo, hi in (("<5%", 0, 0.05), ("5-10%", 0.05, 0.10), (">=10%", 0.10, 2))
                    if ((areas >= lo) & (areas < hi)).any()
                }
        rows[cname] = row
    if "largest" in draws:
        for cname in rows:
            for name in SETS:
                for key in ("top_gt_known", "ap50", "recall50", "precision50"):
                    dlt = draws[cname][name][key] - draws["largest"][name][key]
                    point = rows[cname][name][key] - rows["largest"][name][key]
                    rows[cname][name][f"{key}_minus_largest"] = [
                        round(point, 2),
                        *[round(float(x), 1) for x in np.percentile(dlt, [2.5, 97.5])],
                    ]
    selected = cv_select(per, cands, data, n_folds)
    return {"candidates": rows, "cv_selected": selected}


def cv_select(
    per: dict[str, dict[str, PerImage]], cands: dict[str, Any], data: dict[str, Data], n_folds: int
) -> dict[str, Any]:
    """Per family: on each fold, the constants with the best criterion on the other folds; the
    chosen candidates' held-out results pooled over folds."""
    out: dict[str, Any] = {}
    families = sorted({fam for fam, _d, _c in cands.values()})
    for fam in families:
        names = [n for n, (f, _d, _c) in cands.items() if f == fam]
        picks = []
        pooled: dict[str, PerImage] = {}
        chosen_idx: dict[str, list[tuple[str, np.ndarray]]] = {s: [] for s in SETS}
        for f in range(n_folds):
            best = max(
                names,
                key=lambda n: criterion(
                    {s: metrics(per[n][s], np.nonzero(data[s].fold != f)[0]) for s in SETS}
                ),
            )
            picks.append(best)
            for s in SETS:
                chosen_idx[s].append((best, np.nonzero(data[s].fold == f)[0]))
        res = {}
        for s in SETS:
            parts = chosen_idx[s]
            p = PerImage(
                np.concatenate([per[n][s].top[i] for n, i in parts]),
                [per[n][s].scores[j] for n, i in parts for j in i],
                [per[n][s].tp[j] for n, i in parts for j in i],
                np.concatenate([per[n][s].n_gt[i] for n, i in parts]),
                [],
                np.zeros(0),
            )
            pooled[s] = p
            res[s] = {key: round(v, 2) for key, v in metrics(p, np.arange(len(p.top))).items()}
        out[fam] = {"picked_per_fold": picks, **res}
    return out


def machine() -> str:
    return f"{cpu_record()['cpu'] or 'unknown'}, {torch.get_num_threads()} threads"


def print_config(label: str, res: dict[str, Any]) -> None:
    print(f"\n== {label} (grid {res.get('grid')})")
    print(
        f"{'candidate':42s} | {'photos top':>10s} | {'shifted top':>11s} | {'multi top':>9s} "
        f"{'AP50':>6s} {'R':>6s} {'P':>6s} {'n/img':>5s} | ms p95"
    )
    for cname, r in res["candidates"].items():
        ph, sh, mu = r["photos"], r["shifted"], r["multi"]
        print(
            f"{cname:42s} | {ph['top_gt_known']:10.1f} | {sh['top_gt_known']:11.1f} | "
            f"{mu['top_gt_known']:9.1f} {mu['ap50']:6.1f} {mu['recall50']:6.1f} {mu['precision50']:6.1f} "
            f"{mu['boxes_per_image']:5.2f} | {max(ph['host_ms_p95'], mu['host_ms_p95']):.2f}  "
            f"photosAP {ph['ap50']:.1f} R {ph['recall50']:.1f} P {ph['precision50']:.1f}"
        )
    print("cv-selected:")
    for fam, r in res["cv_selected"].items():
        ph, sh, mu = r["photos"], r["shifted"], r["multi"]
        print(
            f"  {fam:12s} photos {ph['top_gt_known']:.1f} shifted {sh['top_gt_known']:.1f} "
            f"multi AP {mu['ap50']:.1f} "
            f"R {mu['recall50']:.1f} P {mu['precision50']:.1f}; picks {sorted(set(r['picked_per_fold']))}"
        )


if __name__ == "__main__":
    main()
