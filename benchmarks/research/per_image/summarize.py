"""Score evaluate_rules' boxes: per rule and set the top-box GT-known Loc and the per-object AP50 /
recall / precision of each all-boxes output, with 95 % bootstrap intervals (2000 resamples over
images, the same resamples for every rule, so the paired differences against ``sign`` are exact
pairings); the oracles of each field; each family's constant picked by cross-validation. Writes
one JSON record and prints a summary table.
"""

from __future__ import annotations

import argparse
import json
import pickle
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.research.per_image.candidates import Candidate, candidates
from benchmarks.research.per_image.data import THRESHOLDS, fail, gts, input_size
from benchmarks.research.per_image.metrics import ci, det_metrics, det_parts, ties, top_hits
from rpol_edge.core.files import write_text_atomic

EVAL_SETS = ("photos", "multi", "lobby")


def oracle_row(hits: np.ndarray, boots: np.ndarray, fold: np.ndarray | None) -> dict[str, Any]:
    """Dataset oracle (one threshold for the set), per-image oracle and, where the set has folds,
    the labelled threshold chosen on the other folds (a supervised reference)."""
    acc = hits.mean(0)
    j = int(np.argmax(acc))
    row: dict[str, Any] = {
        "dataset_oracle": round(100 * float(acc[j]), 2),
        "dataset_oracle_t": float(THRESHOLDS[j]),
        "per_image_oracle": round(100 * float(hits.any(1).mean()), 2),
        "dataset_oracle_ci95": ci(np.array([100 * hits[b].mean(0).max() for b in boots])),
        "per_image_oracle_ci95": ci(np.array([100 * hits[b].any(1).mean() for b in boots])),
    }
    if fold is not None:
        top = np.zeros(len(hits))
        picks = []
        for f in range(5):
            jj = int(np.argmax(hits[fold != f].mean(0)))
            picks.append(float(THRESHOLDS[jj]))
            top[fold == f] = hits[fold == f, jj]
        row["labelled_t_cv"] = round(100 * top.mean(), 2)
        row["labelled_t_cv_picks"] = picks
    return row


def set_row(
    x: dict[str, Any], gt: list[np.ndarray], boots: np.ndarray, with_ci: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One rule on one set: its record row and its bootstrap draws (for the paired differences)."""
    hits = top_hits(x["top"], gt)
    tops = np.array([100 * hits[b].mean() for b in boots])
    m: dict[str, Any] = {"top": round(100 * hits.mean(), 2), "top_ci95": ci(tops)}
    draws: dict[str, Any] = {"top": tops, "hits": hits}
    for key in x["all"][0]:
        sc, tp, ngt = det_parts(x["all"], gt, key)
        dm = det_metrics(sc, tp, ngt, np.arange(len(ngt)))
        m[key] = {k: round(v, 2) for k, v in dm.items()}
        if with_ci:
            bs = [det_metrics(sc, tp, ngt, b) for b in boots]
            for k in dm:
                arr = np.array([b[k] for b in bs])
                m[key][k + "_ci95"] = ci(arr)
                draws[f"{key}_{k}"] = arr
        m[key]["boxes_per_image"] = round(sum(len(a[key][1]) for a in x["all"]) / len(x["all"]), 2)
        m[key]["images_with_tied_scores"] = ties(x["all"], key)
    for pre, ms in (("", x["ms"]), ("all_", x["ms_all"])):
        m[pre + "ms_p50"] = round(float(np.median(ms)), 3)
        m[pre + "ms_p95"] = round(float(np.percentile(ms, 95)), 3)
    return m, draws


def paired_differences(res: dict[str, Any], draws: dict[str, Any]) -> None:
    """Each rule minus ``sign``: top box, and its all boxes against the product's ``--boxes all``."""
    base = draws.get("sign")
    if not base:
        return
    sign = res["candidates"]["sign"]
    for name, dr in draws.items():
        for s in EVAL_SETS:
            if s not in dr:
                continue
            row = res["candidates"][name][s]
            d = dr[s]["top"] - base[s]["top"]
            row["top_minus_sign"] = [round(row["top"] - sign[s]["top"], 2), *ci(d)]
            for k in ("ap50", "recall50", "precision50"):
                if f"adaptive_{k}" in dr[s]:
                    d = dr[s][f"adaptive_{k}"] - base[s][f"today_{k}"]
                    pt = row["adaptive"][k] - sign[s]["today"][k]
                    row["adaptive"][k + "_minus_today_all"] = [round(pt, 2), *ci(d)]


def _cv_family(names: list[str], draws: dict[str, Any], g: dict[str, Any]) -> dict[str, Any]:
    """A w* family's constant picked on the 4 fitting folds by the mean top box of photos and
    canvases, scored on the held-out fold; and one pick on all data of the three sets."""
    out: dict[str, Any] = {}
    for s in ("photos", "multi"):
        fold = g[s]["fold"]
        top = np.zeros(len(fold))
        picks = []
        for f in range(5):
            crit = {
                n: 0.5
                * (
                    draws[n]["photos"]["hits"][g["photos"]["fold"] != f].mean()
                    + draws[n]["multi"]["hits"][g["multi"]["fold"] != f].mean()
                )
                for n in names
            }
            best = max(names, key=crit.__getitem__)
            picks.append(best)
            top[fold == f] = draws[best][s]["hits"][fold == f]
        out[s] = {"top": round(100 * top.mean(), 2), "picks": picks}
    joint = {
        n: (
            draws[n]["photos"]["hits"].mean()
            + draws[n]["multi"]["hits"].mean()
            + draws[n]["lobby_train"]["hits"].mean()
        )
        / 3
        for n in names
    }
    out["joint_all_data_pick"] = max(names, key=joint.__getitem__)
    out["joint_criterion"] = {n: round(100 * v, 1) for n, v in joint.items()}
    return out


def cv_picks(cands: dict[str, Candidate], draws: dict[str, Any], g: dict[str, Any]) -> dict[str, Any]:
    """Per family of two or more measured rules: the CV pick (w* families) and the lobby's pick
    on its train frames, scored on its test frames."""
    fams: dict[tuple[str, str], list[str]] = {}
    for name, (kind, fam, _fn) in cands.items():
        if name in draws:
            fams.setdefault((kind, fam), []).append(name)
    cv: dict[str, Any] = {}
    for (kind, fam), names in fams.items():
        if len(names) < 2:
            continue
        out: dict[str, Any] = {"members": names}
        if kind == "wstar":
            out.update(_cv_family(names, draws, g))
        lob = {n: draws[n]["lobby_train"]["hits"].mean() for n in names}
        best = max(names, key=lob.__getitem__)
        out["lobby"] = {
            "pick_on_train": best,
            "test_top": round(100 * draws[best]["lobby"]["hits"].mean(), 2),
            "train_top": {n: round(100 * v, 1) for n, v in lob.items()},
        }
        cv[f"{kind}/{fam}"] = out
    return cv


def summarize(store: Path, g: dict[str, Any], n_boot: int, tag: str) -> dict[str, Any]:
    """The whole record from the boxes in ``store`` and the GT boxes ``g``."""
    rng = np.random.default_rng(0)
    boots = {s: rng.integers(0, len(g[s]["boxes"]), size=(n_boot, len(g[s]["boxes"]))) for s in g}
    res: dict[str, Any] = {"candidates": {}, "oracles": {}}
    for p in sorted(store.glob("oracle_*.pkl")):
        o = pickle.loads(p.read_bytes())
        res["oracles"][p.stem[len("oracle_") :]] = {
            s: oracle_row(hits, boots[s], g[s]["fold"]) for s, hits in o.items()
        }
    cands = candidates()
    draws: dict[str, Any] = {}
    for name, (kind, fam, _fn) in cands.items():
        p = store / f"{name.replace(':', '__')}.pkl"
        if not p.is_file():
            continue
        row: dict[str, Any] = {"field": kind, "family": fam}
        draws[name] = {}
        for s, x in pickle.loads(p.read_bytes()).items():
            row[s], draws[name][s] = set_row(x, g[s]["boxes"], boots[s], s != "lobby_train")
        res["candidates"][name] = row
    paired_differences(res, draws)
    res["cv_picks"] = cv_picks(cands, draws, g)
    res["when"] = time.strftime("%Y-%m-%d %H:%M")
    res["input_size"] = input_size(tag)
    res["tag"] = tag
    return res


def _set_cells(x: dict[str, Any] | None) -> str:
    if x is None:
        return " " * 24
    a = x["adaptive"]
    return f"{x['top']:6.1f} {a['ap50']:5.1f} {a['recall50']:5.1f} {a['precision50']:5.1f}"


def print_table(res: dict[str, Any]) -> None:
    print(
        f"{'candidate':34s} | {'photos':>6s} | {'multi':>6s} {'AP':>5s} {'R':>5s} {'P':>5s} | "
        f"{'lobby':>6s} {'AP':>5s} {'R':>5s} {'P':>5s} | ms p95 top/all"
    )
    for name, r in res["candidates"].items():
        ph, lo = r.get("photos"), r.get("lobby")
        photos = f"{ph['top']:6.1f}" if ph else "   -  "
        anyset = lo or ph
        lline = _set_cells(lo) if lo else ""
        print(
            f"{name:34s} | {photos} | {_set_cells(r.get('multi'))} | {lline} | "
            f"{anyset['ms_p95']:.2f}/{anyset['all_ms_p95']:.2f}"
        )
    s = res["candidates"].get("sign")
    if s:
        for st in EVAL_SETS:
            print("sign today-all", st, s[st]["today"])
    for kind, o in res["oracles"].items():
        print(
            "oracle",
            kind,
            {
                s: (v["dataset_oracle"], v["dataset_oracle_t"], v["per_image_oracle"], v.get("labelled_t_cv"))
                for s, v in o.items()
            },
        )
    for fam, o in res["cv_picks"].items():
        print("cv", fam, {k: v for k, v in o.items() if k not in ("members", "joint_criterion")})


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--cache", type=Path, required=True, help="folder of cache_features' npz files (GT boxes)"
    )
    ap.add_argument("--store", type=Path, required=True, help="evaluate_rules' boxes folder")
    ap.add_argument("--tag", default="448", help="cache tag: 448, 640 or 448s16 (default 448)")
    ap.add_argument("--out", type=Path, required=True, help="the JSON record to write")
    ap.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default 2000)")
    args = ap.parse_args()
    if not args.store.is_dir():
        fail(f"no boxes folder {args.store} (run evaluate_rules first)")
    res = summarize(args.store, gts(args.cache, args.tag), args.bootstrap, args.tag)
    write_text_atomic(args.out, json.dumps(res, indent=1))
    print_table(res)


if __name__ == "__main__":
    main()
