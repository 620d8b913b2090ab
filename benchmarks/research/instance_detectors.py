"""The instance study's candidates: every rule that turns a response map into ranked boxes, by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np

from benchmarks.research.instance_rules import SCORE_RANKINGS, instance_boxes, ranked_instances
from rpol_edge.results.boxes import contour_boxes, iou_inclusive, largest_box
from rpol_edge.results.instances import ALL_BOXES, TOP_IOU, InstanceRule, all_boxes
from rpol_edge.results.score_grid import upsample_matrix

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
        order = np.argsort(-areas, kind="stable")
        keep = [i for i in order if areas[i] >= min_area] or [int(order[0])]
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
