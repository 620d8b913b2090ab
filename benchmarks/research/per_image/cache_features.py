"""Cache Lite0 backbone features once per set and input size (npz files, float16).

Sets: the raccoon photos (train + test, 200, the folds of operating_point_stats, seed 0), the
multi-object canvases (multi_object.build_folds: 5 folds x 42, seed 0; fold i's canvases from fold
i's photos only), the caviar-lobby train and test splits. Preprocessing: the product's resize_crop
(resize round(K * 480 / 448), centre crop K), GT boxes mapped to the crop. ``--stride16 dilated``:
Lite0's stage-5 stride-2 depthwise conv at stride 1, later convs dilated (a 28 x 28 grid at 448).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.research.instance_data import extract, frames_for, set_lite_stride16
from benchmarks.research.multi_object import build_folds
from benchmarks.research.operating_point_stats import folds
from benchmarks.research.per_image.errors import fail
from rpol_edge.backbones.timm_backbone import BackboneSpec, build_backbone
from rpol_edge.core.files import atomic_write
from rpol_edge.data import read_dataset
from rpol_edge.data.images import load_rgb


def save(
    out: Path, name: str, tag: str, feats: np.ndarray, boxes: list[np.ndarray], extra: dict[str, Any]
) -> None:
    """One set's features, its GT boxes (flattened, with the count per image) and ``extra``."""
    path = out / f"{name}_{tag}.npz"
    nb = np.array([len(b) for b in boxes])
    flat = np.concatenate(boxes).astype(np.int64)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, feats=feats, boxes=flat, n_boxes=nb, **extra)

    atomic_write(path, write)
    print(f"wrote {path} {feats.shape}", flush=True)


def features(
    bb: Any, k: int, items: list[tuple[np.ndarray, np.ndarray]], label: str
) -> tuple[np.ndarray, list[np.ndarray]]:
    frames, boxes = frames_for(items, k, int(round(k * 480 / 448)))
    t0 = time.time()
    feats = extract(bb.module, bb.mean, bb.std, k, frames)
    print(f"{label} {time.time() - t0:.0f}s", flush=True)
    return feats, boxes


def data_arguments(doc: str | None) -> argparse.ArgumentParser:
    """The arguments every feature-caching job takes: the cache, the two data sets, the input size."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, required=True, help="folder to write the npz files to")
    ap.add_argument("--raccoon", type=Path, default=Path("../shared/data/raccoon"), help="raccoon set (VOC)")
    ap.add_argument("--lobby", type=Path, default=Path("../shared/data/caviar-lobby"), help="lobby set (VOC)")
    ap.add_argument("--size", type=int, default=448, help="input size K (default 448)")
    return ap


def main() -> None:
    ap = data_arguments(__doc__)
    ap.add_argument("--sets", default="photos,multi,lobby", help="comma-separated: photos, multi, lobby")
    ap.add_argument("--stride16", default="", choices=("", "dilated"), help="Lite0 at output stride 16")
    args = ap.parse_args()
    for root in (args.raccoon, args.lobby):
        if not root.is_dir():
            fail(f"no data set at {root}")
    torch.set_num_threads(1)
    k = args.size
    bb = build_backbone(BackboneSpec("lite0", "", 32), k)
    tag = str(k)
    if args.stride16:
        set_lite_stride16(bb.module.model, dilated=True)
        tag += "s16"
    args.cache.mkdir(parents=True, exist_ok=True)
    want = args.sets.split(",")
    samples = read_dataset("voc", args.raccoon, "train") + read_dataset("voc", args.raccoon, "test")
    fold_of = np.zeros(len(samples), np.int64)
    for f, idx in enumerate(folds(len(samples), 5, 0)):
        fold_of[idx] = f
    test_ids = {x.image_id for x in read_dataset("voc", args.raccoon, "test")}
    if "photos" in want:
        feats, boxes = features(bb, k, [(load_rgb(x.path), np.asarray(x.boxes)) for x in samples], "photos")
        save(
            args.cache,
            "photos",
            tag,
            feats,
            boxes,
            {
                "fold": fold_of,
                "names": np.array([x.image_id for x in samples]),
                "is_test": np.array([x.image_id in test_ids for x in samples]),
            },
        )
    if "multi" in want:
        mf = build_folds(samples, 5, 42, 0)
        feats, boxes = features(bb, k, [(c.image, c.boxes) for fold in mf for c in fold], "multi")
        save(
            args.cache,
            "multi",
            tag,
            feats,
            boxes,
            {
                "fold": np.array([f for f, fo in enumerate(mf) for _ in fo]),
                "names": np.array([c.name for fo in mf for c in fo]),
            },
        )
    if "lobby" in want:
        for split in ("train", "test"):
            ss = read_dataset("voc", args.lobby, split)
            feats, boxes = features(
                bb, k, [(load_rgb(x.path), np.asarray(x.boxes)) for x in ss], f"lobby {split}"
            )
            save(
                args.cache, f"lobby_{split}", tag, feats, boxes, {"names": np.array([x.image_id for x in ss])}
            )


if __name__ == "__main__":
    main()
