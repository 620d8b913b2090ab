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
import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.research.instance_rules import SCORE_RANKINGS, instance_boxes, ranked_instances  # noqa: E402
from benchmarks.research.multi_object import build_folds  # noqa: E402
from benchmarks.research.operating_point import folds  # noqa: E402
from benchmarks.research.scale_shift import build_canvases  # noqa: E402
from rpol_edge.backbones.timm_backbone import BackboneSpec, build_backbone  # noqa: E402
from rpol_edge.core.geometry import resize_crop  # noqa: E402
from rpol_edge.core.wstar import FeatureSums, solve  # noqa: E402
from rpol_edge.data import read_dataset  # noqa: E402
from rpol_edge.data.images import load_rgb  # noqa: E402
from rpol_edge.evaluate.detection_metrics import average_precision, match_image  # noqa: E402
from rpol_edge.modeling.localizer import Localizer  # noqa: E402
from rpol_edge.results.boxes import contour_boxes, iou_inclusive, largest_box  # noqa: E402
from rpol_edge.results.instances import ALL_BOXES, TOP_IOU, InstanceRule, all_boxes  # noqa: E402
from rpol_edge.results.score_grid import upsample_matrix  # noqa: E402

SETS = ("photos", "shifted", "multi")


@dataclass
class Data:
    feats: np.ndarray  # (N, C, h, w) float16
    boxes: list[np.ndarray]  # network-frame GT
    fold: np.ndarray  # (N,) fold of each image
    area: list[np.ndarray]  # per GT box: share of the crop


def frames_for(
    items: list[tuple[np.ndarray, np.ndarray]], k: int, s: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    frames, boxes = [], []
    for image, b in items:
        frame, t = resize_crop(image, s, k)
        frames.append(frame)
        boxes.append(t.boxes_to_input(b))
    return np.stack(frames), boxes


def load_sets(root: Path, k: int, seed: int, n_folds: int, per_fold: int) -> dict[str, Any]:
    samples = read_dataset("voc", root, "train") + read_dataset("voc", root, "test")
    fold_of = np.zeros(len(samples), np.int64)
    for f, idx in enumerate(folds(len(samples), n_folds, seed)):
        fold_of[idx] = f
    photos = [(load_rgb(x.path), np.asarray(x.boxes)) for x in samples]
    shifted = [(c.image, c.boxes) for c in build_canvases(samples, seed)]
    multi_folds = build_folds(samples, n_folds, per_fold, seed)
    multi = [(c.image, c.boxes) for fold in multi_folds for c in fold]
    multi_fold = np.array([f for f, fold in enumerate(multi_folds) for _ in fold])
    return {
        "photos": (photos, fold_of),
        "shifted": (shifted, fold_of),
        "multi": (multi, multi_fold),
        "names": [x.image_id for x in samples],
    }


def extract(module: torch.nn.Module, mean: Any, std: Any, k: int, frames: np.ndarray) -> np.ndarray:
    loc = Localizer(module, torch.zeros(1, 8), mean, std, k, 0.5)
    out = []
    with torch.inference_mode():
        for i in range(0, len(frames), 8):
            out.append(loc.features(torch.from_numpy(frames[i : i + 8])).float().numpy().astype(np.float16))
    return np.concatenate(out)


def set_lite_stride16(model: torch.nn.Module, dilated: bool) -> None:
    blocks = model.blocks  # type: ignore[union-attr]
    blocks[5][0].conv_dw.stride = (1, 1)
    if not dilated:
        return
    for block in [*list(blocks[5])[1:], *list(blocks[6])]:
        conv = block.conv_dw
        conv.dilation = (2, 2)
        conv.padding = tuple(2 * (k - 1) // 2 for k in conv.kernel_size)


def build_data(
    raw_sets: dict[str, Any], k: int, stride16: str, cache: Path | None, seed: int
) -> dict[str, Data]:
    s = int(round(k * 480 / 448))
    bb = build_backbone(BackboneSpec("lite0", "", 32), k)
    if stride16:
        # EfficientNet-Lite0's last stride-2 depthwise conv (stage 5) at stride 1: output stride 16,
        # the pretrained weights unchanged: "plain" as the ResNet recipe (no dilation), "dilated"
        # with the later depthwise convs dilated by 2 so their receptive fields stay the trained ones.
        set_lite_stride16(bb.module.model, dilated=stride16 == "dilated")
    out: dict[str, Data] = {}
    for name in SETS:
        items, fold = raw_sets[name]
        frames, boxes = frames_for(items, k, s)
        names = ",".join(raw_sets["names"])
        key = f"{name}|lite0|{bb.weights_sha256}|{k}|{s}|{stride16}|{seed}|{len(items)}|{names}"
        path = cache / f"feats_{hashlib.sha256(key.encode()).hexdigest()[:16]}.npy" if cache else None
        if path is not None and path.is_file():
            feats = np.load(path)
        else:
            t0 = time.time()
            feats = extract(bb.module, bb.mean, bb.std, k, frames)
            print(
                f"  features {name} {k} stride16={stride16}: {feats.shape} in {time.time() - t0:.0f} s",
                flush=True,
            )
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, feats)
        area = [((b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)) / (k * k) for b in boxes]
        out[name] = Data(feats, boxes, np.asarray(fold), area)
    return out


# ---- candidates ---------------------------------------------------------------------------------

Detector = Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def upsampled(raw: np.ndarray, k: int) -> np.ndarray:
    uy, ux = upsample_matrix(raw.shape[0], k), upsample_matrix(raw.shape[1], k)
    return uy @ raw @ ux.T


def largest_rule(mode: str, level: float) -> Detector:
    """Today's one box: the largest contour of a pixel mask (sign, rel * max, or the unclamped
    min-max map at 0.5); score: mean raw response of the grid cells inside the box."""

    def run(raw: np.ndarray, feats: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        up = upsampled(raw, k)
        if mode == "noclamp":
            lo, hi = raw.min(), raw.max()
            mask = (up - lo) / max(hi - lo, 1e-12) > level
        else:
            mask = up > level * max(float(raw.max()), 0.0)
        if not mask.any():
            return np.zeros((0, 4), np.int64), np.zeros(0)
        b = largest_box(mask.astype(np.uint8))
        return b[None], np.array([_box_score(raw, b, k)])

    return run


def contours_rule(min_area: float) -> Detector:
    """Every contour of the sign mask with area >= min_area of the crop, ranked by area."""

    def run(raw: np.ndarray, feats: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        mask = (upsampled(raw, k) > 0).astype(np.uint8)
        if not mask.any():
            return np.zeros((0, 4), np.int64), np.zeros(0)
        boxes, _ = contour_boxes(mask)
        areas = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1) / (k * k)
        keep = np.argsort(-areas, kind="stable")
        keep = [i for i in keep if areas[i] >= min_area] or [int(keep[0])]
        return boxes[keep], areas[keep]

    return run


def _box_score(raw: np.ndarray, b: np.ndarray, k: int) -> float:
    h = raw.shape[0]
    c = np.clip(np.round(np.asarray(b, np.float64) * (h - 1) / (k - 1)).astype(int), 0, h - 1)
    return float(raw[c[1] : c[3] + 1, c[0] : c[2] + 1].mean())


def instance_rule(rule: InstanceRule) -> Detector:
    def run(raw: np.ndarray, feats: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return instance_boxes(raw, k, rule, feats if rule.needs_features else None)

    return run


def graph_outputs(raw: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The exported graph's score map and sign mask from a raw response grid, in float32 as the
    graph computes them (clamp, min-max, align_corners=True bilinear upsampling, clamp to [0, 1];
    mask: the upsampled raw response > 0)."""
    a = raw.astype(np.float32)
    c = np.maximum(a, 0.0)
    grid = (c - c.min()) / max(float(c.max() - c.min()), 1e-12)
    uy, ux = (upsample_matrix(n, k).astype(np.float32) for n in a.shape)
    score = np.clip(uy @ grid.astype(np.float32) @ ux.T, 0.0, 1.0)
    return score, (uy @ a @ ux.T > 0).astype(np.uint8)


PEAKS_05 = InstanceRule("peaks", rel=0.0, keep=0.5, prominence=0.5)
"""The instances ``--boxes all`` used on their own before the top box led the list."""


def map_rule(ranking: str, rule: InstanceRule = PEAKS_05) -> Detector:
    """What ``--boxes all`` runs after any runtime: `map_instances` on the graph's two outputs
    (the raw grid recovered from the score map), instances scored by ``ranking``."""

    def run(raw: np.ndarray, feats: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        score, mask = graph_outputs(raw, k)
        return ranked_instances(score, mask, raw.shape[0], rule, ranking)

    return run


def largest_first(
    rest: Detector, iou_max: float, top_rule: Detector | None = None, cap: bool = False
) -> Detector:
    """``largest``'s box first, then the instances of ``rest`` that overlap it less than
    ``iou_max`` (IoU): the top box stays today's, the other boxes add the other objects. The
    first box's score is the image's best (its own or the best instance's), so it stays first."""

    def run(raw: np.ndarray, feats: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        top, top_s = (top_rule or map_largest)(raw, feats, k)
        boxes, scores = rest(raw, feats, k)
        if not len(top):
            return boxes, scores
        if len(boxes):
            keep = iou_inclusive(top[0], boxes)[0] < iou_max
            boxes, scores = boxes[keep], scores[keep]
        if cap:  # the first box keeps its own score; the others are capped just below it
            first = float(top_s[0])
            scores = np.minimum(scores, first * (1 - 1e-6))
        else:
            first = max(float(top_s[0]), float(scores.max()) if len(scores) else -np.inf)
        return np.concatenate([top, boxes]), np.concatenate([[first], scores])

    return run


def product_all(raw: np.ndarray, feats: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``--boxes all`` as the product runs it (`all_boxes` on the graph's outputs)."""
    score, mask = graph_outputs(raw, k)
    return all_boxes(score, mask, raw.shape[0])


def product_all_peak(raw: np.ndarray, feats: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """`product_all` with the graph's ``peak`` output (the maximum raw response): every score
    times it, so scores compare across images (the mean clamped response inside each box)."""
    score, mask = graph_outputs(raw, k)
    return all_boxes(score, mask, raw.shape[0], peak=float(raw.max()))


def peak_rule(rule: InstanceRule, iou_max: float) -> Detector:
    """`all_boxes` with other constants, scores times the peak (as the product with a peak output)."""

    def run(raw: np.ndarray, feats: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        score, mask = graph_outputs(raw, k)
        return all_boxes(score, mask, raw.shape[0], rule, iou_max, peak=float(raw.max()))

    return run


def map_largest(raw: np.ndarray, feats: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``--boxes largest`` as the product runs it: the mask's largest contour, scored by the mean
    of the score map inside the box (not the raw response: the graph does not output it)."""
    score, mask = graph_outputs(raw, k)
    if not mask.any():
        return np.zeros((0, 4), np.int64), np.zeros(0)
    b = largest_box(mask)
    return b[None], np.array([float(score[b[1] : b[3] + 1, b[0] : b[2] + 1].mean())])


def candidates() -> dict[str, tuple[str, Detector, dict[str, Any]]]:
    """name -> (family, detector, constants)."""
    c: dict[str, tuple[str, Detector, dict[str, Any]]] = {}
    c["largest"] = ("largest", largest_rule("rel", 0.0), {"mask": "sign"})
    for lv in (0.1, 0.2, 0.3):
        c[f"largest_rel{lv}"] = ("largest_rel", largest_rule("rel", lv), {"rel": lv})
    c["largest_noclamp0.5"] = ("largest_noclamp", largest_rule("noclamp", 0.5), {"t": 0.5})
    c["contours_area2%"] = ("contours", contours_rule(0.02), {"min_area": 0.02})
    c["map_largest"] = ("map_largest", map_largest, {"score": "box"})
    c["all"] = ("all", product_all, {**asdict(ALL_BOXES), "iou_max": TOP_IOU})
    c["all_peak"] = ("all_peak", product_all_peak, {**asdict(ALL_BOXES), "iou_max": TOP_IOU})
    for ranking in SCORE_RANKINGS:
        consts = {**asdict(PEAKS_05), "ranking": ranking}
        c[f"map_peaks_{ranking}"] = ("map_peaks", map_rule(ranking), consts)
    for rule, tag in (
        (PEAKS_05, "prom0.5_keep0.5"),
        (InstanceRule("peaks", keep=0.3, prominence=0.3), "prom0.3_keep0.3"),
        (InstanceRule("peaks", keep=0.5, prominence=0.3), "prom0.3_keep0.5"),
        (InstanceRule("peaks", keep=0.5, prominence=0.2), "prom0.2_keep0.5"),
        (InstanceRule("peaks", rel=0.1, keep=0.5, prominence=0.3), "rel0.1_prom0.3_keep0.5"),
        (InstanceRule("peaks", keep=0.3, prominence=0.2), "prom0.2_keep0.3"),
    ):
        for iou_max in (0.3, 0.5):
            consts = {**asdict(rule), "ranking": "box", "iou_max": iou_max}
            c[f"first_{tag}_iou{iou_max}"] = (
                "largest_first",
                largest_first(map_rule("box", rule), iou_max),
                consts,
            )
            det = largest_first(map_rule("box", rule), iou_max, cap=True)
            c[f"firstcap_{tag}_iou{iou_max}"] = ("largest_first_cap", det, consts)
            det = largest_first(instance_rule(rule), iou_max, top_rule=largest_rule("rel", 0.0))
            c[f"rawfirst_{tag}_iou{iou_max}"] = ("largest_first_raw", det, consts)
    for rule, tag in (
        (ALL_BOXES, "rel0.1_prom0.3_keep0.5"),
        (InstanceRule("peaks", rel=0.1, keep=0.3, prominence=0.3), "rel0.1_prom0.3_keep0.3"),
        (InstanceRule("peaks", rel=0.1, keep=0.5, prominence=0.2), "rel0.1_prom0.2_keep0.5"),
        (InstanceRule("peaks", rel=0.2, keep=0.5, prominence=0.3), "rel0.2_prom0.3_keep0.5"),
    ):
        for iou_max in (0.5, 0.7):
            consts = {**asdict(rule), "iou_max": iou_max, "peak": True}
            c[f"allpeak_{tag}_iou{iou_max}"] = ("all_peak_grid", peak_rule(rule, iou_max), consts)
    grid: list[InstanceRule] = []
    for keep in (0.0, 0.3, 0.5):
        for rel in (0.0, 0.1, 0.2):
            grid.append(InstanceRule("regions", rel=rel, keep=keep))
            for p in (0.1, 0.2, 0.3, 0.5):
                grid.append(InstanceRule("peaks", rel=rel, keep=keep, prominence=p))
    for keep in (0.1, 0.3):
        for rel in (0.0, 0.2):
            grid.append(InstanceRule("regions", rel=rel, keep=keep, score="mass"))
            for p in (0.2, 0.3, 0.5):
                grid.append(InstanceRule("peaks", rel=rel, keep=keep, prominence=p, score="mass"))
    for keep in (0.3, 0.5):
        for sigma in (1.5, 3.0):
            for nmax in (0.2, 0.4):
                grid.append(InstanceRule("ncut", keep=keep, sigma=sigma, ncut_max=nmax, min_cells=2))
        for sc in (0.3, 0.5, 0.7):
            grid.append(InstanceRule("seeds", keep=keep, seed_cos=sc))
    for r in grid:
        name = f"{r.rule}_rel{r.rel}_keep{r.keep}"
        if r.rule == "peaks":
            name += f"_prom{r.prominence}"
        if r.rule == "ncut":
            name += f"_sig{r.sigma}_nc{r.ncut_max}"
        if r.rule == "seeds":
            name += f"_cos{r.seed_cos}"
        if r.score != "mean":
            name += f"_{r.score}"
        consts = {k: v for k, v in asdict(r).items() if k != "rule"}
        c[name] = (r.rule + ("_mass" if r.score == "mass" else ""), instance_rule(r), consts)
    return c


# ---- scoring -----------------------------------------------------------------------------------


@dataclass
class PerImage:
    top: np.ndarray  # (N,) 0/1 top-box GT-known
    scores: list[np.ndarray]
    tp: list[np.ndarray]
    n_gt: np.ndarray  # (N,)
    gt_hit: list[np.ndarray]  # per GT box: matched
    ms: np.ndarray  # (N,) host ms per image


def fit_w(feats: np.ndarray) -> np.ndarray:
    f = feats.astype(np.float64)
    n = np.linalg.norm(f, axis=1, keepdims=True)
    v = f.mean(axis=(2, 3))
    u = (f / np.maximum(n, 1e-12)).mean(axis=(2, 3))
    w, _ = solve(FeatureSums(v.sum(0, keepdims=True), u.sum(0, keepdims=True), np.array([len(f)])))
    return np.asarray(w, np.float64).reshape(-1)


def responses(feats: np.ndarray, w: np.ndarray) -> np.ndarray:
    f = feats.astype(np.float32)
    a = np.einsum("nchw,c->nhw", f, w.astype(np.float32))
    return (a / np.maximum(np.linalg.norm(f, axis=1), 1e-12)).astype(np.float64)


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
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + f", {torch.get_num_threads()} threads"
    except OSError:
        pass
    return "unknown"


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
