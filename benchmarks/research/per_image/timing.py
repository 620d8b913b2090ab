"""Host cost per frame of a box rule on one core, from the graph's outputs (score map K x K, sign
mask, peak) as the product would run it after any runtime: grid recovery (grid_from_score), top
box and all boxes; the warm second run of each frame. Run it alone, pinned to one core
(taskset -c 0). For the ``ws_*`` rules it also checks that the product path's top box is within
2 px of the evaluated one.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from benchmarks.research.instance_detectors import graph_outputs
from benchmarks.research.per_image.candidates import candidates
from benchmarks.research.per_image.data import field, input_size, prepare
from benchmarks.research.per_image.errors import fail
from benchmarks.research.per_image.instance_sets import all_boxes_adaptive, level_all, peaks_boxes, watershed
from benchmarks.research.per_image.scene import (
    scene_background,
    scene_boxes,
    scene_evidence,
    scene_level_boxes,
    scene_sums,
)
from rpol_edge.bench.runner import cpu_record
from rpol_edge.core.files import write_text_atomic
from rpol_edge.results.instances import all_boxes, grid_from_score

SPECIAL = ("today", "scene:localhalf", "scene:evidence+localhalf", "scene:level_grid")


def frame_rule(
    name: str, kind: str, fn: Any, d: dict[str, Any], i: int, bg: np.ndarray, size: int
) -> Callable[[], Any]:
    """One frame's host work on the graph's outputs (computed here, outside the timed call)."""
    a = d["raw"][i]
    if kind == "wstar":
        score, mask = graph_outputs(a, size)
        peak = float(a.max())
    else:
        score, mask = graph_outputs(field(d, i, kind), size)  # the scene field exported as the map
        peak = 1.0
    cells = a.shape[0]

    def run() -> Any:
        if name == "today":
            return all_boxes(score, mask, cells, peak=peak)
        if name == "scene:localhalf":
            return scene_boxes(d["scene"][i], size)  # the evidence grid as the graph would output it
        if name == "scene:level_grid":  # every component at SCENE_LEVEL_640, from the evidence grid
            return scene_level_boxes(d["scene"][i], size)
        if name == "scene:evidence+localhalf":
            return scene_boxes(scene_evidence(d["feats"][i], bg), size)  # evidence on the host (numpy)
        if name.startswith("ws_"):  # the product path: map_instances on the graph's outputs
            return peaks_boxes(score, mask, peak, cells, float(name.split("_")[1][1:]))
        g = grid_from_score(score, cells).astype(np.float64)
        top = fn(g, None, None, size)
        if "peak_rel" in name:  # all boxes: every component at the same level
            return level_all(g, size, float(name.split("peak_rel")[1]))
        return all_boxes_adaptive(g, top, size, peak)

    return run


def time_rule(name: str, sets: dict[str, Any], bg: np.ndarray, size: int, limit: int) -> dict[str, Any]:
    cands = candidates()
    kind, _fam, fn = cands[name] if name in cands else ("wstar" if name == "today" else "scene", "", None)
    ms, same = [], []
    for s in ("photos", "multi", "lobby"):
        d = sets[s]
        if kind != "wstar" and "scene" not in d:
            continue
        for i in range(min(len(d["raw"]), limit)):
            run = frame_rule(name, kind, fn, d, i, bg, size)
            for _rep in range(2):
                t0 = time.perf_counter()
                out = run()
                t = 1000 * (time.perf_counter() - t0)
            ms.append(t)  # the second (warm) run
            if name.startswith("ws_"):
                rb, _ = watershed(d["raw"][i], size, float(name.split("_")[1][1:]), "mean")
                wb = out[0]
                same.append(len(rb) == len(wb) and (len(rb) == 0 or np.abs(rb[0] - wb[0]).max() <= 2))
    row: dict[str, Any] = {
        "p50_ms": round(float(np.median(ms)), 3),
        "p95_ms": round(float(np.percentile(ms, 95)), 3),
        "frames": len(ms),
    }
    if same:
        row["product_path_matches_eval_top_box_within_2px"] = round(float(np.mean(same)), 4)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rules", nargs="+", help=f"rule names of evaluate_rules, or {', '.join(SPECIAL)}")
    ap.add_argument("--cache", type=Path, required=True, help="folder of cache_features' npz files")
    ap.add_argument("--tag", default="448", help="cache tag: 448, 640 or 448s16 (default 448)")
    ap.add_argument(
        "--frames", type=int, default=10**9, help="at most this many frames per set (default all)"
    )
    ap.add_argument("--out", type=Path, help="JSON record to write")
    args = ap.parse_args()
    unknown = [n for n in args.rules if n not in candidates() and n not in SPECIAL]
    if unknown:
        fail(f"unknown rule(s) {', '.join(unknown)}")
    cv2.setNumThreads(1)
    size = input_size(args.tag)
    sets = prepare(args.cache, args.tag)
    sums, n = scene_sums(sets["lobby_train"]["feats"])
    bg = scene_background(sums, n)
    out: dict[str, Any] = {}
    for name in args.rules:
        out[name] = time_rule(name, sets, bg, size, args.frames)
        print(name, out[name], flush=True)
    out["_machine_note"] = "timings move with the machine's load: run alone, pinned to one core"
    out["_machine"] = {
        "lscpu_model": [cpu_record().get("cpu", "")],
        "cores": "taskset -c 0, 1 thread",
        "when": time.strftime("%Y-%m-%d %H:%M"),
    }
    print(json.dumps(out))
    if args.out:
        write_text_atomic(args.out, json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
