"""A proxy "fixed camera" set: real fixed views with small pasted animals (the bird-webcam case).

Views: the CAVIAR lobby (a real ceiling camera; its frames vary as people walk, and the people are
part of the scene here, not objects) and ``N_BG_VIEWS`` background views (the largest box-free strip
of a raccoon photo, `scale_shift.background`), whose frames differ by a small shift, a gain and
sensor noise. Animals: raccoon cut-outs from single-raccoon photos (`multi_object.cut_alpha`'s
elliptical fade), 1-3 per frame, each box ``SHARE`` of the frame, never overlapping. The fit frames
(w* fitted label-free on them, as a user fits on the camera's folder) take lobby train frames and
raccoons of photo folds 0-2; the scored frames lobby test frames and raccoons of folds 3-4 (none of
their raccoons was seen by the fit). The GT boxes are the raccoons only. Deterministic for a seed.

    python -m benchmarks.research.per_image.fixed_camera --cache CACHE [--size 448]
writes CACHE/camera_{train,test}_<size>.npz (the cache_features layout, plus the view per frame).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from benchmarks.research.multi_object import CUT_MARGIN, cut_alpha
from benchmarks.research.operating_point_stats import folds
from benchmarks.research.per_image.cache_features import data_arguments, features, save
from benchmarks.research.scale_shift import background, free_strip
from rpol_edge.backbones.timm_backbone import BackboneSpec, build_backbone
from rpol_edge.data import Sample, read_dataset
from rpol_edge.data.images import load_rgb

W, H = 384, 288
"""Frame size: the lobby camera's."""
SHARE = (0.02, 0.10)
"""Area share of the frame per animal box."""
N_OBJ = (1, 3)
N_BG_VIEWS = 3
FRAMES = {"train": (150, 50), "test": (75, 25)}
"""Per split: lobby frames, then frames per background view."""
MARGIN = 0.05
"""No animal box within this share of the frame's border (the network crop trims about 3 %)."""


def _disjoint(b: np.ndarray, others: list[np.ndarray]) -> bool:
    for o in others:
        g = 0.08 * max(o[2] - o[0], o[3] - o[1], b[2] - b[0], b[3] - b[1])
        if not (b[0] > o[2] + g or b[2] < o[0] - g or b[1] > o[3] + g or b[3] < o[1] - g):
            return False
    return True


def _place(
    canvas: np.ndarray, src: np.ndarray, b: np.ndarray, share: float, rng: np.random.Generator,
    placed: list[np.ndarray], taken: np.ndarray,
) -> np.ndarray | None:  # fmt: skip
    """Paste one cut-out (its box scaled to ``share`` of the frame) where it overlaps no other;
    return its box in the frame, or None when there was no room."""
    bw, bh = b[2] - b[0] + 1, b[3] - b[1] + 1
    mx, my = CUT_MARGIN * bw, CUT_MARGIN * bh
    cx0, cy0 = max(0, int(b[0] - mx)), max(0, int(b[1] - my))
    cx1, cy1 = min(src.shape[1], int(b[2] + mx) + 1), min(src.shape[0], int(b[3] + my) + 1)
    for _attempt in range(200):
        scale = np.sqrt(share * W * H / (bw * bh))
        sw, sh = max(4, round((cx1 - cx0) * scale)), max(4, round((cy1 - cy0) * scale))
        box = np.clip(np.round((b - [cx0, cy0, cx0, cy0]) * scale).astype(np.int64), 0, [sw - 1, sh - 1] * 2)
        lo_x, lo_y = int(MARGIN * W) - box[0], int(MARGIN * H) - box[1]
        hi_x, hi_y = int((1 - MARGIN) * W) - box[2], int((1 - MARGIN) * H) - box[3]
        lo_x, lo_y, hi_x, hi_y = max(lo_x, 0), max(lo_y, 0), min(hi_x, W - sw), min(hi_y, H - sh)
        if hi_x >= lo_x and hi_y >= lo_y:
            ox, oy = int(rng.integers(lo_x, hi_x + 1)), int(rng.integers(lo_y, hi_y + 1))
            if _disjoint(box + [ox, oy, ox, oy], placed):
                break
        share *= 0.97
    else:
        return None
    cut = cv2.resize(src[cy0:cy1, cx0:cx1], (sw, sh), interpolation=cv2.INTER_AREA).astype(np.float32)
    clipped = (cx0 == 0, cy0 == 0, cx1 == src.shape[1], cy1 == src.shape[0])
    alpha = cut_alpha(sh, sw, box, clipped) * (1.0 - taken[oy : oy + sh, ox : ox + sw])
    taken[oy : oy + sh, ox : ox + sw] = np.maximum(taken[oy : oy + sh, ox : ox + sw], alpha)
    region = canvas[oy : oy + sh, ox : ox + sw]
    canvas[oy : oy + sh, ox : ox + sw] = alpha[:, :, None] * cut + (1 - alpha[:, :, None]) * region
    return box + [ox, oy, ox, oy]


def _jitter(view: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One frame of a still view: a shift of up to 3 px, a gain of 0.9-1.1, sensor noise (sigma 3)."""
    m = np.array([[1, 0, rng.uniform(-3, 3)], [0, 1, rng.uniform(-3, 3)]], np.float32)
    f = cv2.warpAffine(view, m, (W, H), borderMode=cv2.BORDER_REFLECT).astype(np.float32)
    return np.asarray(f * rng.uniform(0.9, 1.1) + np.asarray(rng.normal(0, 3, f.shape), np.float32))


def _frame(
    view: np.ndarray, animals: list[tuple[np.ndarray, np.ndarray]], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    canvas = view.astype(np.float32)
    taken = np.zeros((H, W), np.float32)
    placed: list[np.ndarray] = []
    n = int(rng.integers(N_OBJ[0], N_OBJ[1] + 1))
    for k in rng.choice(len(animals), size=n, replace=False):
        src, b = animals[int(k)]
        box = _place(canvas, src, b, float(rng.uniform(*SHARE)), rng, placed, taken)
        if box is not None:
            placed.append(box)
    return np.clip(canvas, 0, 255).astype(np.uint8), np.stack(placed)


def bg_views(samples: list[Sample], images: list[np.ndarray], skip: set[int]) -> list[np.ndarray]:
    """The ``N_BG_VIEWS`` photos (not in ``skip``) with the largest box-free strip, as W x H views."""
    strips = [free_strip(s.boxes, im.shape[1], im.shape[0]) for s, im in zip(samples, images, strict=True)]
    free = [(x1 - x0) * (y1 - y0) / (im.shape[0] * im.shape[1]) for (x0, y0, x1, y1), im in
            zip(strips, images, strict=True)]  # fmt: skip
    order = [int(i) for i in np.argsort(free)[::-1] if int(i) not in skip][:N_BG_VIEWS]
    return [background(images[i], strips[i], W, H) for i in order]


Items = list[tuple[np.ndarray, np.ndarray]]


def build(raccoon: Path, lobby: Path, seed: int) -> dict[str, tuple[Items, list[int]]]:
    """Per split: (frame, GT boxes) pairs and the view of each frame (0 = lobby)."""
    samples = read_dataset("voc", raccoon, "train") + read_dataset("voc", raccoon, "test")
    images = [load_rgb(s.path) for s in samples]
    fo = folds(len(samples), 5, 0)
    single = {i for i, s in enumerate(samples) if len(s.boxes) == 1}
    views = bg_views(samples, images, single)  # backgrounds from multi-raccoon photos only
    out = {}
    for split, fold_ids in (("train", (0, 1, 2)), ("test", (3, 4))):
        rng = np.random.default_rng([seed, 0 if split == "train" else 1])
        idx = [int(i) for f in fold_ids for i in fo[f] if int(i) in single]
        animals = [(images[i], np.asarray(samples[i].boxes[0], np.float64)) for i in idx]
        n_lobby, n_view = FRAMES[split]
        lob = read_dataset("voc", lobby, split)
        pick = np.sort(rng.choice(len(lob), size=min(n_lobby, len(lob)), replace=False))
        bases = [cv2.resize(load_rgb(lob[int(j)].path), (W, H)) for j in pick]
        vid = [0] * len(bases)
        for v, view in enumerate(views):
            bases += [np.clip(_jitter(view, rng), 0, 255).astype(np.uint8) for _ in range(n_view)]
            vid += [v + 1] * n_view
        out[split] = ([_frame(b, animals, rng) for b in bases], vid)
    return out


def write_voc(root: Path, split: str, items: Items) -> None:
    """The frames as a Pascal VOC folder (JPEG quality 95, boxes 1-based inclusive), so the product's
    own `rpol-edge fit` and `eval` run on the same proxy camera."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    names = []
    for j, (rgb, boxes) in enumerate(items):
        name = f"{split}{j:04d}"
        names.append(name)
        cv2.imwrite(str(root / "JPEGImages" / f"{name}.jpg"), rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        objs = "".join(
            f"<object><name>raccoon</name><bndbox><xmin>{int(b[0]) + 1}</xmin><ymin>{int(b[1]) + 1}</ymin>"
            f"<xmax>{int(b[2]) + 1}</xmax><ymax>{int(b[3]) + 1}</ymax></bndbox></object>"
            for b in boxes
        )
        (root / "Annotations" / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.jpg</filename><size><width>{rgb.shape[1]}</width>"
            f"<height>{rgb.shape[0]}</height><depth>3</depth></size>{objs}</annotation>"
        )
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(names) + "\n")


def main() -> None:
    ap = data_arguments(__doc__)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--examples", type=Path, default=None, help="write a few frames as JPEG here")
    ap.add_argument("--voc", type=Path, default=None, help="also write every frame as a VOC folder here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    bb = build_backbone(BackboneSpec("lite0", "", 32), args.size)
    args.cache.mkdir(parents=True, exist_ok=True)
    for split, (items, vid) in build(args.raccoon, args.lobby, args.seed).items():
        if args.examples is not None:
            args.examples.mkdir(parents=True, exist_ok=True)
            for j in range(0, len(items), max(1, len(items) // 6)):
                im, bx = items[j][0].copy(), items[j][1]
                for b in bx:
                    cv2.rectangle(im, (int(b[0]), int(b[1])), (int(b[2]), int(b[3])), (255, 0, 0), 1)
                cv2.imwrite(str(args.examples / f"{split}_{j:03d}.jpg"), im[:, :, ::-1])
        if args.voc is not None:
            write_voc(args.voc, split, items)
        feats, boxes = features(bb, args.size, items, f"camera {split}")
        save(args.cache, f"camera_{split}", str(args.size), feats, boxes, {"view": np.array(vid)})


if __name__ == "__main__":
    main()
