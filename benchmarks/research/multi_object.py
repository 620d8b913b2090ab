"""A multi-object test set made from the raccoon photos: 2-4 raccoons from different photos per canvas.

Each canvas is real background (the largest box-free strip of a photo, scale_shift.py's
`free_strip`, cropped to that photo's aspect ratio and resized to its size). Raccoons are cut from
single-raccoon photos as their box plus a margin and blended in with the same feathered alpha as the
scale-shifted set, but elliptical: opaque over the ellipse through the box's edge midpoints, fading
to 0 outside it, so the source photo's background in the box corners fades into the canvas and no
rectangle shows. Each canvas has one size band, so every band holds 2-, 3- and 4-object canvases: the
area share of each raccoon's box is drawn from the band, and boxes (grown by a margin) never
overlap, so every animal stays fully visible and the boxes are exact. Deterministic for a seed.

The canvases of fold i are built only from the photos of fold i (same folds as
operating_point.py), so a w* fitted on the other folds has seen none of their raccoons.

Writes a Pascal VOC folder that `rpol-edge eval --data voc --split test|fold0..` reads:
    python -m benchmarks.research.multi_object --root ../shared/data/raccoon --out /work/cache/multi_object \
        [--per-fold 40 --k 5 --seed 0 --overview benchmarks/results/multi_object_examples.png]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import cv2
import numpy as np

from benchmarks.research.scale_shift import background, free_strip
from rpol_edge.core.files import write_bytes_atomic, write_text_atomic
from rpol_edge.data import Sample, read_dataset
from rpol_edge.data.images import load_rgb

SIZE_BANDS: tuple[tuple[float, float], ...] = ((0.015, 0.05), (0.05, 0.10), (0.10, 0.22))
"""Area share of the canvas per raccoon box: small (< 5 %), medium (5-10 %), large (10-22 %)."""
CUT_MARGIN = 0.25
"""Cut-out margin on each side of a box, as a share of the box's width (height): room for the fade."""


@dataclass(frozen=True)
class MultiCanvas:
    name: str
    image: np.ndarray
    """(H, W, 3) uint8 RGB."""
    boxes: np.ndarray
    """(M, 4) int64 inclusive pixel boxes."""
    sources: tuple[str, ...]
    background: str
    band: int


def folds(n: int, k: int, seed: int) -> list[np.ndarray]:
    """The folds of operating_point.py (same permutation for the same n, k, seed)."""
    perm = np.random.default_rng(seed).permutation(n)
    return [np.sort(p) for p in np.array_split(perm, k)]


def cut_alpha(h: int, w: int, box: np.ndarray, clipped: tuple[bool, bool, bool, bool]) -> np.ndarray:
    """Alpha (h, w) of a cut-out: 1 inside the ellipse through the box's edge midpoints (grown 5 %),
    falling linearly to 0 at 1.45x that radius (the box corners sit at about 0.2), and forced to 0
    at the cut's border, quickly where the cut was clipped by the source photo's edge (the animal
    runs to that edge there)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    ax, ay = max(1.0, 1.05 * (x1 - x0 + 1) / 2), max(1.0, 1.05 * (y1 - y0 + 1) / 2)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.sqrt(((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2)
    alpha = np.clip((1.45 - r) / 0.45, 0.0, 1.0)
    k = int(max(3, 0.04 * max(h, w))) | 1
    alpha = cv2.GaussianBlur(alpha, (k, k), 0)
    ramps = [max(1.0, (0.02 if c else 0.10) * s) for c, s in zip(clipped, (w, h, w, h), strict=True)]
    ax_ = np.arange(w, dtype=np.float32)
    ay_ = np.arange(h, dtype=np.float32)
    edge_x = np.minimum(np.clip((ax_ + 1) / ramps[0], 0, 1), np.clip((w - ax_) / ramps[2], 0, 1))
    edge_y = np.minimum(np.clip((ay_ + 1) / ramps[1], 0, 1), np.clip((h - ay_) / ramps[3], 0, 1))
    return np.asarray(alpha * np.minimum(edge_y[:, None], edge_x[None, :]), np.float32)


def _disjoint(box: np.ndarray, others: list[np.ndarray], gap: float) -> bool:
    for o in others:
        g = gap * max(o[2] - o[0], o[3] - o[1], box[2] - box[0], box[3] - box[1])
        if not (box[0] > o[2] + g or box[2] < o[0] - g or box[1] > o[3] + g or box[3] < o[1] - g):
            return False
    return True


def build_multi(
    samples: list[Sample], images: list[np.ndarray], count: int, rng: np.random.Generator, prefix: str
) -> list[MultiCanvas]:
    """``count`` canvases from these photos only (raccoons from the single-box ones, backgrounds
    from the ones with the most box-free area)."""
    single = [i for i, s in enumerate(samples) if len(s.boxes) == 1]
    strips = [free_strip(s.boxes, im.shape[1], im.shape[0]) for s, im in zip(samples, images, strict=True)]
    free = np.array([(x1 - x0) * (y1 - y0) / (im.shape[0] * im.shape[1]) for (x0, y0, x1, y1), im in
                     zip(strips, images, strict=True)])  # fmt: skip
    donors = [int(i) for i in np.argsort(-free) if free[i] >= 0.15] or [int(i) for i in np.argsort(-free)[:8]]
    out: list[MultiCanvas] = []
    for c in range(count):
        band = c % len(SIZE_BANDS)
        n_obj = 2 + (c // len(SIZE_BANDS)) % 3
        j = int(rng.choice(donors))
        h, w = images[j].shape[:2]
        canvas = background(images[j], strips[j], w, h).astype(np.float32)
        picks = [int(i) for i in rng.choice([i for i in single if i != j], size=n_obj, replace=False)]
        placed: list[np.ndarray] = []
        used: list[str] = []
        # Alpha already pasted: a later cut-out's fade never paints its own background over an animal.
        taken = np.zeros((h, w), np.float32)
        for p in picks:
            box = placed_box = None
            src, b = images[p], np.asarray(samples[p].boxes[0], np.float64)
            bw, bh = b[2] - b[0] + 1, b[3] - b[1] + 1
            share = rng.uniform(*SIZE_BANDS[band])
            for _attempt in range(300):
                scale = np.sqrt(share * w * h / (bw * bh))
                mx, my = CUT_MARGIN * bw, CUT_MARGIN * bh
                cx0, cy0 = max(0, int(b[0] - mx)), max(0, int(b[1] - my))
                cx1, cy1 = min(src.shape[1], int(b[2] + mx) + 1), min(src.shape[0], int(b[3] + my) + 1)
                sw, sh = max(4, round((cx1 - cx0) * scale)), max(4, round((cy1 - cy0) * scale))
                if sw < w and sh < h:
                    ox, oy = int(rng.integers(0, w - sw + 1)), int(rng.integers(0, h - sh + 1))
                    box = np.round((b - [cx0, cy0, cx0, cy0]) * scale).astype(np.int64)
                    box = np.clip(box, 0, [sw - 1, sh - 1, sw - 1, sh - 1])
                    placed_box = box + [ox, oy, ox, oy]
                    if _disjoint(placed_box, placed, 0.08):
                        break
                placed_box = None
                share *= 0.97  # no room: shrink a little and retry
            if placed_box is None or box is None:
                continue
            cut = cv2.resize(src[cy0:cy1, cx0:cx1], (sw, sh), interpolation=cv2.INTER_AREA).astype(np.float32)
            clipped = (cx0 == 0, cy0 == 0, cx1 == src.shape[1], cy1 == src.shape[0])
            alpha = cut_alpha(sh, sw, box, clipped) * (1.0 - taken[oy : oy + sh, ox : ox + sw])
            taken[oy : oy + sh, ox : ox + sw] = np.maximum(taken[oy : oy + sh, ox : ox + sw], alpha)
            alpha = alpha[:, :, None]
            region = canvas[oy : oy + sh, ox : ox + sw]
            canvas[oy : oy + sh, ox : ox + sw] = alpha * cut + (1 - alpha) * region
            placed.append(placed_box)
            used.append(samples[p].image_id)
        name = f"{prefix}-{c:03d}"
        image = np.clip(canvas, 0, 255).astype(np.uint8)
        out.append(MultiCanvas(name, image, np.stack(placed), tuple(used), samples[j].image_id, band))
    return out


def build_folds(samples: list[Sample], k: int, per_fold: int, seed: int) -> list[list[MultiCanvas]]:
    images = [load_rgb(s.path) for s in samples]
    result = []
    for f, idx in enumerate(folds(len(samples), k, seed)):
        rng = np.random.default_rng([seed, f])
        sub = [samples[i] for i in idx]
        result.append(build_multi(sub, [images[i] for i in idx], per_fold, rng, f"multi-f{f}"))
    return result


def voc_xml(c: MultiCanvas) -> str:
    h, w = c.image.shape[:2]
    objs = "".join(
        "\t<object>\n\t\t<name>raccoon</name>\n\t\t<difficult>0</difficult>\n\t\t<bndbox>\n"
        f"\t\t\t<xmin>{b[0] + 1}</xmin>\n\t\t\t<ymin>{b[1] + 1}</ymin>\n"
        f"\t\t\t<xmax>{b[2] + 1}</xmax>\n\t\t\t<ymax>{b[3] + 1}</ymax>\n\t\t</bndbox>\n\t</object>\n"
        for b in c.boxes
    )
    src = escape(",".join(c.sources))
    return (
        f"<annotation>\n\t<filename>{c.name}.jpg</filename>\n\t<source><database>multi_object.py "
        f"from {src} on {escape(c.background)}</database></source>\n"
        f"\t<size>\n\t\t<width>{w}</width>\n\t\t<height>{h}</height>\n\t\t<depth>3</depth>\n\t</size>\n"
        f"{objs}</annotation>\n"
    )


def write_voc(per_fold: list[list[MultiCanvas]], out: Path) -> None:
    """JPEGImages/, Annotations/ (VOC 1-based), ImageSets/Main/{test,fold<i>,band<b>}.txt."""
    (out / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    every = [c for fold in per_fold for c in fold]
    for c in every:
        ok, buf = cv2.imencode(
            ".jpg", cv2.cvtColor(c.image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95]
        )
        if not ok:
            raise OSError(f"could not encode {c.name}")
        write_bytes_atomic(out / "JPEGImages" / f"{c.name}.jpg", bytes(buf.tobytes()))
        write_text_atomic(out / "Annotations" / f"{c.name}.xml", voc_xml(c))
    main = out / "ImageSets" / "Main"
    write_text_atomic(main / "test.txt", "".join(f"{c.name}\n" for c in every))
    for f, fold in enumerate(per_fold):
        write_text_atomic(main / f"fold{f}.txt", "".join(f"{c.name}\n" for c in fold))
    for b in range(len(SIZE_BANDS)):
        write_text_atomic(main / f"band{b}.txt", "".join(f"{c.name}\n" for c in every if c.band == b))


def overview(canvases: list[MultiCanvas], path: Path, cols: int = 3) -> None:
    """A grid of canvases with their boxes drawn, to check by eye that they look natural."""
    tiles = []
    for c in canvases:
        im = cv2.cvtColor(c.image, cv2.COLOR_RGB2BGR).copy()
        for b in c.boxes:
            cv2.rectangle(im, (int(b[0]), int(b[1])), (int(b[2]), int(b[3])), (0, 255, 0), 1)
        tiles.append(cv2.resize(im, (400, 300), interpolation=cv2.INTER_AREA))
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[i : i + cols]) for i in range(0, len(tiles), cols)]
    ok, buf = cv2.imencode(".png", np.vstack(rows))
    if ok:
        write_bytes_atomic(path, bytes(buf.tobytes()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True, help="VOC folder to write")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--per-fold", type=int, default=42)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--overview", type=Path, default=None, help="PNG grid of 9 canvases with boxes")
    args = ap.parse_args()
    samples = read_dataset("voc", args.root, "train") + read_dataset("voc", args.root, "test")
    per_fold = build_folds(samples, args.k, args.per_fold, args.seed)
    write_voc(per_fold, args.out)
    every = [c for fold in per_fold for c in fold]
    shares = [
        (b[2] - b[0] + 1) * (b[3] - b[1] + 1) / (c.image.shape[0] * c.image.shape[1])
        for c in every
        for b in c.boxes
    ]
    print(
        f"{len(every)} canvases, {len(shares)} raccoons; box area share median {np.median(shares):.1%}, "
        f"{np.mean(np.array(shares) < 0.10):.0%} under 10 %; wrote {args.out}"
    )
    if args.overview:
        overview(every[:9], args.overview)


if __name__ == "__main__":
    main()
