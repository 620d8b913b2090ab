"""Run every label-free per-image box rule on the cached features; write each rule's boxes.

Sets: raccoon photos (200, 5-fold CV: w* fitted label-free on the other 4 folds' photos), the
multi-object canvases (210, fold i's canvases scored with fold i's w*), caviar-lobby test (147, w*
and the scene model fitted label-free on the 440 train frames; lobby_train = the same w* on the
train frames themselves, only to pick constants for the lobby). Per rule and set: the top box, the
all-boxes outputs and the host ms per image, pickled to STORE/<name>.pkl; the oracles of each field
(the hit of the largest contour at every threshold) to STORE/oracle_<kind>.pkl. `summarize` scores
them. One core: the host budget is per core.
"""

from __future__ import annotations

import argparse
import pickle
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from benchmarks.research.instance_detectors import graph_outputs, product_all_peak
from benchmarks.research.per_image.candidates import Candidate, candidates
from benchmarks.research.per_image.data import field, input_size, prepare
from benchmarks.research.per_image.errors import fail
from benchmarks.research.per_image.instance_sets import (
    all_boxes_adaptive,
    level_all,
    peaks_boxes,
    watershed,
)
from benchmarks.research.per_image.levels import halfmax_level
from benchmarks.research.per_image.metrics import oracle_hits
from benchmarks.research.per_image.scene import local_halfmax_boxes
from rpol_edge.core.files import write_bytes_atomic

Boxes = tuple[np.ndarray, np.ndarray]
PerImage = tuple[np.ndarray | None, dict[str, Boxes], float, float]


def _first(b: Boxes) -> np.ndarray | None:
    return b[0][0] if len(b[0]) else None


def _whole(name: str, d: dict[str, Any], i: int, size: int) -> PerImage:
    """The rules whose top box is the first of their own all-boxes output."""
    a = d["raw"][i]
    g = field(d, i, "scene" if name.startswith("scene:") else "wstar")
    t0 = time.perf_counter()
    if name == "scene:localhalf":
        e = d["scene"][i]
        found = local_halfmax_boxes(g, size, float(e.max() - max(e.min(), 0)), 0.5, 0.5)
    elif name == "ws_map_p0.5":  # the product path on the graph's outputs
        score, mask = graph_outputs(a, size)
        found = peaks_boxes(score, mask, float(a.max()), a.shape[0], 0.5)
    else:  # ws_p<prominence>_<ranking>
        prom, rank = float(name.split("_")[1][1:]), name.split("_")[2]
        found = watershed(a, size, prom, rank)
    ms = 1000 * (time.perf_counter() - t0)  # the top box and all boxes are one call
    out = {"adaptive": found}
    if name.startswith("ws_p"):  # and with fewer boxes (not timed)
        out["keep0.5"] = watershed(a, size, prom, rank, keep=0.5)
    return _first(found), out, ms, ms


def _top_then_all(name: str, spec: Candidate, d: dict[str, Any], i: int, size: int) -> PerImage:
    """A top-box rule, then its all-boxes outputs (the top box first, then the instances)."""
    kind, _family, fn = spec
    assert fn is not None
    a = d["raw"][i]
    g = field(d, i, kind)
    feats = d["feats"][i] if name.startswith(("lost", "tokencut")) else None
    t0 = time.perf_counter()
    b = fn(g, a, feats, size)
    t1 = time.perf_counter()
    if name == "sign":
        out = {
            "today": product_all_peak(a, np.empty(0), size),  # the product's --boxes all (with peak)
            "adaptive": all_boxes_adaptive(g, b, size, float(max(a.max(), 0))),
        }
    else:
        peak = float(max(a.max(), 0)) if kind == "wstar" else 1.0
        out = {
            "adaptive": all_boxes_adaptive(g, b, size, peak),
            "fixed": all_boxes_adaptive(g, b, size, peak, per_instance=False),
        }
        if "peak_rel" in name:
            out["level"] = level_all(g, size, float(name.split("peak_rel")[1]))
        if "halfmax" in name:
            out["level"] = level_all(g, size, halfmax_level(g))
    t2 = time.perf_counter()
    return b, out, 1000 * (t1 - t0), 1000 * (t2 - t1)


def run_candidate(name: str, spec: Candidate, sets: dict[str, dict[str, Any]], size: int) -> dict[str, Any]:
    """Per set: the top boxes, the all-boxes outputs and the ms per image (top, then all boxes)."""
    kind = spec[0]
    out = {}
    for sname, d in sets.items():
        if kind != "wstar" and "scene" not in d:
            continue
        rows = [
            (_whole(name, d, i, size) if spec[2] is None else _top_then_all(name, spec, d, i, size))
            for i in range(len(d["raw"]))
        ]
        out[sname] = {
            "top": [r[0] for r in rows],
            "all": [r[1] for r in rows],
            "ms": np.array([r[2] for r in rows]),
            "ms_all": np.array([r[3] for r in rows]),
        }
    return out


def _select(cands: dict[str, Candidate], only: str, skip: str) -> dict[str, Candidate]:
    if only:
        unknown = [n for n in only.split(",") if n not in cands]
        if unknown:
            fail(f"unknown rule(s) {', '.join(unknown)}")
        cands = {n: cands[n] for n in only.split(",")}
    if skip:
        cands = {n: v for n, v in cands.items() if not n.startswith(tuple(skip.split(",")))}
    return cands


def _oracles(cands: dict[str, Candidate], sets: dict[str, dict[str, Any]], store: Path, size: int) -> None:
    """The oracle hits of every field a selected rule reads (computed once, then kept in STORE)."""
    for kind in sorted({k for k, _f, _fn in cands.values()} | {"wstar"}):
        p = store / f"oracle_{kind}.pkl"
        if p.is_file():
            continue
        hits = {s: oracle_hits(d, kind, size) for s, d in sets.items() if kind == "wstar" or "scene" in d}
        write_bytes_atomic(p, pickle.dumps(hits))
        print(f"oracle {kind} done", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--cache", type=Path, required=True, help="folder of cache_features' npz files")
    ap.add_argument("--store", type=Path, required=True, help="folder for the boxes (one pickle per rule)")
    ap.add_argument("--tag", default="448", help="cache tag: 448, 640 or 448s16 (default 448)")
    ap.add_argument("--only", default="", help="comma-separated rule names to run (rewrites their boxes)")
    ap.add_argument("--skip", default="", help="comma-separated name prefixes not to run")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    size = input_size(args.tag)
    cands = _select(candidates(), args.only, args.skip)
    t_start = time.time()
    sets = prepare(args.cache, args.tag)
    print(f"prepared in {time.time() - t_start:.0f}s", flush=True)
    args.store.mkdir(parents=True, exist_ok=True)
    _oracles(cands, sets, args.store, size)
    for name, spec in cands.items():
        p = args.store / f"{name.replace(':', '__')}.pkl"
        if p.is_file() and not args.only:
            continue
        write_bytes_atomic(p, pickle.dumps(run_candidate(name, spec, sets, size)))
        print(f"{name} done {time.time() - t_start:.0f}s", flush=True)


if __name__ == "__main__":
    main()
