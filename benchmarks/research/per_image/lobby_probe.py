"""Probes of the scene-evidence field on the lobby camera (train and test frames):

* ``levels``: top box of the region holding the evidence peak at a fixed relative level, or at a
  half maximum over the peak's own neighbourhood (mean / max / median / min of its 8 neighbours);
* ``localhalf``: the local-half-maximum boxes (top box and per object) over a grid of keep and
  prominence;
* ``flatness``: the top box at fine relative levels 0.80 .. 0.94 (how flat the picked level is).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.research.per_image.data import field, input_size, prepare
from benchmarks.research.per_image.levels import rel_region
from benchmarks.research.per_image.maps import minmax_clamped
from benchmarks.research.per_image.metrics import det_metrics
from benchmarks.research.per_image.scene import local_halfmax_boxes
from rpol_edge.evaluate.detection_metrics import match_image
from rpol_edge.results.boxes import iou_inclusive

LOBBY = ("lobby_train", "lobby")


def local_base(g: np.ndarray, how: str) -> float:
    """A statistic of the 8 neighbours of the grid's peak."""
    py, px = np.unravel_index(np.argmax(g), g.shape)
    nb = np.sort(g[max(0, py - 1) : py + 2, max(0, px - 1) : px + 2].reshape(-1))[:-1]  # without the peak
    return float({"nbmean": nb.mean(), "nbmax": nb.max(), "nbmed": np.median(nb), "nbmin": nb.min()}[how])


def _local_half(how: str, size: int, g: np.ndarray) -> np.ndarray | None:
    return rel_region(g, size, (local_base(g, how) + g.max()) / 2 / g.max(), "peak")


def top_box_rate(d: dict[str, Any], rule: Callable[[np.ndarray], np.ndarray | None]) -> float:
    """Top box GT-known Loc (%) of a rule of the scene field."""
    hits = []
    for i in range(len(d["raw"])):
        b = rule(field(d, i, "scene"))
        hits.append(b is not None and iou_inclusive(b, d["boxes"][i]).max() >= 0.5)
    return 100 * float(np.mean(hits))


def probe_levels(sets: dict[str, Any], size: int) -> None:
    rules: dict[str, Callable[[np.ndarray], np.ndarray | None]] = {}
    for how in ("nbmean", "nbmax", "nbmed", "nbmin"):
        rules[f"localhalf_{how}"] = partial(_local_half, how, size)
    for rel in (0.85, 0.88, 0.9, 0.92):
        rules[f"rel{rel}"] = partial(rel_region, size=size, rel=rel, which="peak")
    for s in LOBBY:
        for name, fn in rules.items():
            print(s, name, round(top_box_rate(sets[s], fn), 1))


def probe_localhalf(sets: dict[str, Any], size: int) -> None:
    for s in LOBBY:
        d = sets[s]
        for keep in (0.3, 0.5, 0.7):
            for prom in (0.2, 0.3, 0.5):
                hits, sc, tp, ngt = [], [], [], []
                for i in range(len(d["raw"])):
                    e = d["scene"][i]
                    boxes, scores = local_halfmax_boxes(
                        minmax_clamped(e), size, float(e.max() - max(e.min(), 0)), prom, keep
                    )
                    gt = d["boxes"][i]
                    hits.append(len(boxes) > 0 and iou_inclusive(boxes[0], gt).max() >= 0.5)
                    tp.append(match_image(boxes, scores, gt))
                    sc.append(scores)
                    ngt.append(len(gt))
                m = det_metrics(sc, tp, np.array(ngt), np.arange(len(ngt)))
                print(
                    s,
                    f"keep{keep} prom{prom}",
                    "top",
                    round(100 * np.mean(hits), 1),
                    {k: round(v, 1) for k, v in m.items()},
                    "boxes/img",
                    round(sum(map(len, sc)) / len(sc), 2),
                    flush=True,
                )


def probe_flatness(sets: dict[str, Any], size: int) -> None:
    for s in LOBBY:
        row = [
            f"{rel}: {top_box_rate(sets[s], partial(rel_region, size=size, rel=rel, which='peak')):.1f}"
            for rel in (0.8, 0.82, 0.84, 0.86, 0.88, 0.9, 0.92, 0.94)
        ]
        print(s, size, "; ".join(row), flush=True)


PROBES = {"levels": probe_levels, "localhalf": probe_localhalf, "flatness": probe_flatness}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("probe", choices=sorted(PROBES))
    ap.add_argument("--cache", type=Path, required=True, help="folder of cache_features' npz files")
    ap.add_argument("--tag", default="448", help="cache tag: 448, 640 or 448s16 (default 448)")
    args = ap.parse_args()
    PROBES[args.probe](prepare(args.cache, args.tag), input_size(args.tag))


if __name__ == "__main__":
    main()
