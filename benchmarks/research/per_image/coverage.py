"""Score the coverage fallback (`coverage_rule`) against ``sign`` on every set: the raccoon photos
(5-fold CV), the canvases, the lobby test frames and the proxy fixed camera (`fixed_camera`: w*
fitted label-free on its fit frames, scored on its held-out frames; ``camera_fit``: the fit frames
themselves, as a user scores the folder he fitted on). The constants (q, fallback) are picked on
the photos + canvases only: per held-out fold on the other 4 folds (the photos' and canvases' CV
rows), and once on all their images for the lobby and the camera. Top box: GT-known Loc at IoU 0.5
with any GT box; 95 % bootstrap intervals over images (2000 resamples, the same for every rule, so
the differences against ``sign`` are paired). Also the sign mask's coverage per set (and per view).

    python -m benchmarks.research.per_image.coverage --cache CACHE --out RESULTS/coverage_448.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from benchmarks.research.instance_data import fit_w, responses
from benchmarks.research.per_image.coverage_rule import fallback_rule, sign_coverage
from benchmarks.research.per_image.data import THRESHOLDS, field, input_size, load, prepare
from benchmarks.research.per_image.levels import sign_largest
from benchmarks.research.per_image.metrics import ci, oracle_hits, top_hits
from rpol_edge.core.files import write_text_atomic

FALLBACKS = tuple(f"peak_rel{r}" for r in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)) + ("otsu", "mser", "halfmax")
QS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
"""The grid. Ties in the CV criterion go to the larger q (fewer fallbacks), then FALLBACKS' order."""
APRIORI = (0.5, "halfmax")
"""Fixed before any number: a mask over half the frame is background; the fallback has no constant."""
SETS = ("photos", "multi", "lobby", "camera", "camera_fit")


def camera_sets(cache: Path, tag: str) -> dict[str, dict[str, Any]]:
    """The proxy camera's held-out frames and its fit frames, with the fit frames' w* responses."""
    tr, te = load(cache, "camera_train", tag), load(cache, "camera_test", tag)
    w = fit_w(tr["feats"])
    for d, name in ((te, "camera_test"), (tr, "camera_train")):
        d["raw"] = responses(d["feats"], w)
        d["view"] = np.load(cache / f"{name}_{tag}.npz")["view"]
    return {"camera": te, "camera_fit": tr}


def per_image(d: dict[str, Any], size: int) -> dict[str, Any]:
    """Per image: the sign mask's coverage and the hits of sign and of every fallback."""
    cov: list[float] = []
    boxes: dict[str, list[np.ndarray | None]] = {n: [] for n in ("sign", *FALLBACKS)}
    rules = {n: fallback_rule(n) for n in FALLBACKS}
    for i in range(len(d["raw"])):
        a, g = d["raw"][i], field(d, i, "wstar")
        cov.append(sign_coverage(a, size))
        boxes["sign"].append(sign_largest(a, size))
        for n, fn in rules.items():
            boxes[n].append(fn(g, size))
    return {"cov": np.array(cov), "hits": {n: top_hits(b, d["boxes"]) for n, b in boxes.items()}}


def rule_hits(t: dict[str, Any], q: float, fb: str) -> np.ndarray:
    return np.where(t["cov"] > q, t["hits"][fb], t["hits"]["sign"])


def _pick(tabs: dict[str, Any], masks: dict[str, np.ndarray]) -> tuple[float, str]:
    """The (q, fallback) with the best mean top box of photos and canvases on the masked images."""
    best, arg = -1.0, APRIORI
    for q in sorted(QS, reverse=True):
        for fb in FALLBACKS:
            v = np.mean([rule_hits(tabs[s], q, fb)[masks[s]].mean() for s in ("photos", "multi")])
            if v > best + 1e-12:
                best, arg = v, (q, fb)
    return arg


def chosen_hits(
    tabs: dict[str, Any], folds: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The CV rule's hits per set: photos and canvases fold by fold, the rest with the all-data pick."""
    out: dict[str, np.ndarray] = {}
    picks: dict[str, Any] = {}
    for s in ("photos", "multi"):
        h = np.zeros(len(folds[s]), np.int64)
        picks[s] = []
        for f in range(5):
            q, fb = _pick(tabs, {k: folds[k] != f for k in ("photos", "multi")})
            picks[s].append([q, fb])
            h[folds[s] == f] = rule_hits(tabs[s], q, fb)[folds[s] == f]
        out[s] = h
    q, fb = _pick(tabs, {k: np.ones(len(folds[k]), bool) for k in ("photos", "multi")})
    picks["all_photos_and_canvases"] = [q, fb]
    for s in SETS[2:]:
        out[s] = rule_hits(tabs[s], q, fb)
    return out, picks


def coverage_stats(cov: np.ndarray) -> dict[str, float]:
    p10, p50, p90 = np.percentile(cov, [10, 50, 90])
    return {"p10": round(float(p10), 3), "median": round(float(p50), 3), "p90": round(float(p90), 3),
            "share_over_0.5": round(float((cov > 0.5).mean()), 3)}  # fmt: skip


def score_rows(rows: dict[str, dict[str, np.ndarray]], n_boot: int) -> dict[str, Any]:
    """Per rule and set: the top box with its interval, and the paired difference against sign."""
    out: dict[str, Any] = {}
    for s in SETS:
        n = len(rows["sign"][s])
        boots = np.random.default_rng(0).integers(0, n, size=(n_boot, n))
        base = np.array([100 * rows["sign"][s][b].mean() for b in boots])
        for name, r in rows.items():
            draws = np.array([100 * r[s][b].mean() for b in boots])
            row = {"top": round(100 * float(r[s].mean()), 2), "top_ci95": ci(draws)}
            if name != "sign":
                row["top_minus_sign"] = [round(100 * float(r[s].mean() - rows["sign"][s].mean()), 2),
                                         *ci(draws - base)]  # fmt: skip
            out.setdefault(name, {})[s] = row
    return out


def oracle(d: dict[str, Any], size: int) -> dict[str, Any]:
    """The labelled references of the w* map: the best single relative threshold, per-image oracle."""
    hits = oracle_hits(d, "wstar", size)
    j = int(np.argmax(hits.mean(0)))
    return {"dataset_oracle": round(100 * float(hits[:, j].mean()), 2), "t": float(THRESHOLDS[j]),
            "per_image_oracle": round(100 * float(hits.any(1).mean()), 2)}  # fmt: skip


def evaluate(cache: Path, tag: str, n_boot: int) -> dict[str, Any]:
    size = input_size(tag)
    sets = {k: v for k, v in prepare(cache, tag).items() if k != "lobby_train"}
    sets.update(camera_sets(cache, tag))
    tabs = {s: per_image(d, size) for s, d in sets.items()}
    folds = {s: sets[s]["fold"] for s in ("photos", "multi")}
    cv_hits, picks = chosen_hits(tabs, folds)
    rows: dict[str, dict[str, np.ndarray]] = {"sign": {s: tabs[s]["hits"]["sign"] for s in SETS}}
    rows["coverage_cv"] = cv_hits
    rows[f"cov_q{APRIORI[0]}_{APRIORI[1]}"] = {s: rule_hits(tabs[s], *APRIORI) for s in SETS}
    q, fb = picks["all_photos_and_canvases"]
    rows[f"cov_q{q}_{fb}"] = {s: rule_hits(tabs[s], q, fb) for s in SETS}
    for fbn in FALLBACKS:  # each fallback alone, on every image (a fixed constant everywhere)
        rows[fbn] = {s: tabs[s]["hits"][fbn] for s in SETS}
    res: dict[str, Any] = {"rules": score_rows(rows, n_boot), "cv_picks": picks, "apriori": list(APRIORI)}
    res["coverage"] = {s: coverage_stats(tabs[s]["cov"]) for s in SETS}
    for s in ("camera", "camera_fit"):
        v = sets[s]["view"]
        cov = tabs[s]["cov"]
        res["coverage"][s]["per_view"] = {int(k): coverage_stats(cov[v == k]) for k in np.unique(v)}
        res["coverage"][s]["sign_top_per_view"] = {
            int(k): round(100 * float(tabs[s]["hits"]["sign"][v == k].mean()), 1) for k in np.unique(v)
        }
    res["grid_top"] = {
        f"q{q}_{fb}": {s: round(100 * float(rule_hits(tabs[s], q, fb).mean()), 1) for s in SETS}
        for q in QS
        for fb in FALLBACKS
    }
    res["fallback_share"] = {
        f"q{q}": {s: round(float((tabs[s]["cov"] > q).mean()), 3) for s in SETS} for q in QS
    }
    res["oracles"] = {s: oracle(sets[s], size) for s in SETS}
    res["tag"] = tag
    return res


def markdown(res: dict[str, Any]) -> str:
    """The table (top box, interval, paired difference vs sign) and the coverage statistics."""
    lines = ["| rule | " + " | ".join(SETS) + " |", "|---" * (len(SETS) + 1) + "|"]
    for name, row in res["rules"].items():
        cells = []
        for s in SETS:
            x = row[s]
            d = x.get("top_minus_sign")
            cells.append(f"{x['top']:.1f} {x['top_ci95']}" + (f"; {d[0]:+.1f} [{d[1]}, {d[2]}]" if d else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "| sign mask coverage | p10 | median | p90 | share > 0.5 |", "|---|---|---|---|---|"]
    for s in SETS:
        c = res["coverage"][s]
        for label, x in [(s, c), *((f"{s} view {v}", cv) for v, cv in c.get("per_view", {}).items())]:
            lines.append(f"| {label} | {x['p10']} | {x['median']} | {x['p90']} | {x['share_over_0.5']} |")
    lines += ["", f"CV picks: {json.dumps(res['cv_picks'])}"]
    lines += [f"Oracles (labels): {json.dumps(res['oracles'])}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, required=True, help="folder of the npz features (+ camera_*)")
    ap.add_argument("--tag", default="448")
    ap.add_argument("--out", type=Path, required=True, help="the JSON record to write")
    ap.add_argument("--bootstrap", type=int, default=2000)
    ap.add_argument("--md", type=Path, default=None, help="also write the table as markdown here")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    res = evaluate(args.cache, args.tag, args.bootstrap)
    write_text_atomic(args.out, json.dumps(res, indent=1))
    if args.md is not None:
        write_text_atomic(args.md, markdown(res))
    print(json.dumps({k: res[k] for k in ("coverage", "cv_picks", "oracles")}, indent=None))


if __name__ == "__main__":
    main()
