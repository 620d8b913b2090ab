"""A fixed camera's w* map, normalised per cell by what the camera's own frames show there.

The w* map of a fixed camera's folder lies on the animals and on parts of the scene alike (on the
proxy camera of `fixed_camera`, `sign`'s box spans both: 6.7 %). Per cell i, the fit frames give
the mean mu_i and the spread sigma_i of the raw response a_i = w*^T f_i / ||f_i||; per frame
z_i = (a_i - mu_i) / sigma_i says how unusual the response is for that cell, so a part of the scene
that is positive in every frame drops out. The mask keeps z > k; the box is the largest region's
(or the peak's). Needs no labels; sigma needs the second moment of a, so a product version would
take a second pass over the fit frames once w* is known (the mean alone, w*^T of the per-cell mean
unit feature, comes from the scene sums in one pass, and does not work: the `centred` rows).

Sets: the proxy camera (held-out frames and its fit frames; 4 views mixed in one folder) and the
CAVIAR lobby (w* and the cell statistics from its train frames, scored on train and test). Top box:
GT-known Loc at IoU 0.5 with any GT box; 95 % bootstrap intervals over images (2000 resamples).

    python -m benchmarks.research.per_image.response_z --cache CACHE --out RESULTS/response_z_448.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.research.per_image.coverage import camera_sets
from benchmarks.research.per_image.data import prepare
from benchmarks.research.per_image.metrics import ci, top_hits
from rpol_edge.core.files import write_text_atomic
from rpol_edge.results.detection import crop_boxes

KS = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0)


def cell_stats(raw: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) per cell of the fit frames' raw responses."""
    a = np.stack(raw).astype(np.float64)
    return a.mean(0), a.std(0) + 1e-6


def top_box(g: np.ndarray, k: float, mode: str, size: int) -> np.ndarray | None:
    """The box of the upsampled field above k (``largest`` region or the ``peak``'s)."""
    up = F.interpolate(
        torch.from_numpy(g[None, None]).float(), size=(size, size), mode="bilinear", align_corners=True
    )
    u = up[0, 0].numpy()
    m = (u > k).astype(np.uint8)
    if not m.any():
        return None
    found, _ = crop_boxes(u, m, boxes=mode)
    return found[0] if len(found) else None


def score(d: dict[str, Any], field: Any, k: float, mode: str, size: int, boot: np.ndarray) -> dict[str, Any]:
    hits = top_hits([top_box(field(np.asarray(a, np.float64)), k, mode, size) for a in d["raw"]], d["boxes"])
    return {"top": round(100 * float(hits.mean()), 1), "ci": ci(100 * hits[boot].mean(1))}


def evaluate(cache: Path, tag: str, n_boot: int) -> dict[str, Any]:
    size = int(tag[:3])
    cams = camera_sets(cache, tag)
    lobby = prepare(cache, tag)
    pairs = {
        "camera": (cams["camera"], cams["camera_fit"]),
        "camera_fit": (cams["camera_fit"], cams["camera_fit"]),
        "lobby": (lobby["lobby"], lobby["lobby_train"]),
        "lobby_train": (lobby["lobby_train"], lobby["lobby_train"]),
    }
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {"tag": tag, "sets": {}}
    for name, (d, fit) in pairs.items():
        mu, sd = cell_stats(fit["raw"])
        boot = rng.integers(0, len(d["raw"]), (n_boot, len(d["raw"])))
        rows = {"sign": score(d, lambda a: a, 0.0, "largest", size, boot)}
        for k in (0.0, 0.05, 0.1):
            rows[f"centred>{k}"] = score(d, lambda a, mu=mu: a - mu, k, "largest", size, boot)
        for k in KS:
            for mode in ("largest", "peak"):
                rows[f"z>{k}_{mode}"] = score(d, lambda a, mu=mu, sd=sd: (a - mu) / sd, k, mode, size, boot)
        out["sets"][name] = rows
        print(name, {r: v["top"] for r, v in rows.items()})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, required=True, help="the feature cache (with the camera_* sets)")
    ap.add_argument("--tag", default="448")
    ap.add_argument("--bootstrap", type=int, default=2000)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    res = evaluate(args.cache, args.tag, args.bootstrap)
    write_text_atomic(args.out, json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
