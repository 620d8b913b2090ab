"""Representer points behind a map (Song et al., ICCV 2023, Sections D-E, Eq. 13-15), with the
fit's exact scaling.

The fit keeps v = sum_n mean_i f_{n,i} and u = sum_n mean_i f̂_{n,i} (sums over images of spatial
means, rpol_edge/core/wstar.py), so

    v - tau u = sum_n sum_i (||f_{n,i}|| - tau) / (h w) * f̂_{n,i},     w* = (v - tau u) / Z,
    Z = ||v - tau u||  (the stored sums, not means),

and for a query position q with unit feature f̂_q:

    a_q = w*·f̂_q = sum_{n,i} r_{n,i}(q),   r_{n,i}(q) = alpha_{n,i} (f̂_{n,i}·f̂_q),
    alpha_{n,i} = (||f_{n,i}|| - tau) / (h w Z).

The identity holds before the clamp at 0. An all-zero feature has f̂ = 0, so it contributes to
neither side. The training set is streamed once (or read from a feature cache); per query only the
K most excitatory and K most inhibitory images are kept (heaps), so memory does not grow with N.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rpol_edge.core.artifact import ModelArtifact
from rpol_edge.core.geometry import CropTransform, resize_crop
from rpol_edge.core.metadata import MetadataError
from rpol_edge.core.wstar import EPS, direction, tau
from rpol_edge.data import DatasetError, Sample, read_dataset, sample_subset
from rpol_edge.data.images import load_rgb
from rpol_edge.data.loader import iterate_batches
from rpol_edge.evaluate.evaluation import head_rows
from rpol_edge.explain.feature_cache import CacheWriter, FeatureCacheError, cache_key, open_cache
from rpol_edge.modeling.factory import build_localizer
from rpol_edge.modeling.localizer import Localizer

Progress = Callable[[int, int], None]

SUMS_TOLERANCE = 1e-3
"""Largest relative difference between the re-streamed and the stored v sum before explain refuses:
a larger one means another data set, split or sampling than the fit's (float16 caches stay ~1e-5)."""


# ---- the math, as small pure functions -------------------------------------------------------


def normalizer(v_sum: np.ndarray, u_sum: np.ndarray, t: float) -> float:
    """Z = ||v - tau u|| over the stored sums: w* = (v - tau u) / Z."""
    return float(np.linalg.norm(direction(v_sum, u_sum, t)))


def importance(norms: np.ndarray, t: float, z: float) -> np.ndarray:
    """alpha_{n,i} = (||f_{n,i}|| - tau) / (h w Z) for one training image's (h, w) norm map."""
    h, w = norms.shape[-2:]
    return (np.asarray(norms, np.float64) - t) / (h * w * z)


def unit_map(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(f̂ (C, h, w) float64, ||f|| (h, w) float64); a zero vector gets f̂ = 0, never NaN."""
    f = np.asarray(features, np.float64)
    norms = np.sqrt(np.einsum("chw,chw->hw", f, f))
    return f / np.maximum(norms, EPS), norms


def similarity(unit: np.ndarray, unit_q: np.ndarray) -> np.ndarray:
    """f̂_{n,i}·f̂_q for every position i of one image: (C, h, w), (C,) -> (h, w)."""
    return np.einsum("chw,c->hw", unit, unit_q)


def representer_values(alpha: np.ndarray, sim: np.ndarray) -> np.ndarray:
    """r_{n,i}(q) = alpha_{n,i} (f̂_{n,i}·f̂_q)."""
    return alpha * sim


def point_to_cell(x: float, y: float, t: CropTransform, grid: tuple[int, int]) -> tuple[int, int]:
    """Original-image pixel (x, y) -> the (row, col) feature cell that sees it in the network crop."""
    px = x * t.scale_x - t.offset
    py = y * t.scale_y - t.offset
    if not (0 <= px < t.crop and 0 <= py < t.crop):
        raise ValueError(
            f"--point {x:g},{y:g} falls outside the {t.crop}x{t.crop} center crop the model sees "
            f"(image {t.src_w}x{t.src_h})"
        )
    gh, gw = grid
    return min(int(py * gh / t.crop), gh - 1), min(int(px * gw / t.crop), gw - 1)


def cell_to_point(row: int, col: int, t: CropTransform, grid: tuple[int, int]) -> tuple[float, float]:
    """Centre of a feature cell in original-image pixels."""
    gh, gw = grid
    px = (col + 0.5) * t.crop / gw
    py = (row + 0.5) * t.crop / gh
    return (px + t.offset) / t.scale_x, (py + t.offset) / t.scale_y


# ---- the streaming driver ----------------------------------------------------------------------


@dataclass
class ExplainConfig:
    model: Path
    images: list[Path]
    """Query images: all explained with one pass over the training set."""
    points: list[tuple[float, float]] = field(default_factory=list)
    """Query points in original-image pixels; empty = the map's peak and its lowest point."""
    data: str | None = None
    root: Path | None = None
    split: str | None = None
    """Training set; defaults to the one recorded in the model (fit_data / fit_root / fit_split)."""
    top: int = 3
    cache: Path | None = None
    head_index: int = 0
    weights: Path | None = None
    batch_size: int = 16
    workers: int = 2


@dataclass(order=True)
class Contribution:
    """One training image's part of a_q: ``total`` = sum_i r_{n,i}(q), with its maps (h, w)."""

    total: float
    image_id: str = field(compare=False)
    path: str = field(compare=False)
    positive: float = field(compare=False)
    negative: float = field(compare=False)
    alpha: np.ndarray = field(compare=False, repr=False)
    sim: np.ndarray = field(compare=False, repr=False)
    r: np.ndarray = field(compare=False, repr=False)

    def record(self) -> dict[str, Any]:
        return {
            "image_id": self.image_id,
            "path": self.path,
            "contribution": self.total,
            "positive_part": self.positive,
            "negative_part": self.negative,
            "alpha_min": float(self.alpha.min()),
            "alpha_max": float(self.alpha.max()),
            "similarity_min": float(self.sim.min()),
            "similarity_max": float(self.sim.max()),
            "r_min": float(self.r.min()),
            "r_max": float(self.r.max()),
        }


@dataclass
class Query:
    x: float
    y: float
    cell: tuple[int, int]
    source: str
    """``given``, ``peak`` or ``lowest``."""
    unit: np.ndarray  # (C,) float64
    a_q: float
    """w*·f̂_q before the clamp."""
    sum_r: float = 0.0
    excitatory: list[tuple[float, int, Contribution]] = field(default_factory=list)
    inhibitory: list[tuple[float, int, Contribution]] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        return {
            "point": [round(self.x, 2), round(self.y, 2)],
            "cell": list(self.cell),
            "source": self.source,
            "a_q": self.a_q,
            "a_q_clamped": max(self.a_q, 0.0),
            "sum_r": self.sum_r,
            "identity_abs_error": abs(self.sum_r - self.a_q),
            "excitatory": [c.record() for c in self.top_excitatory()],
            "inhibitory": [c.record() for c in self.top_inhibitory()],
        }

    def top_excitatory(self) -> list[Contribution]:
        return [c for _, _, c in sorted(self.excitatory, key=lambda e: (-e[0], e[1]))]

    def top_inhibitory(self) -> list[Contribution]:
        return [c for _, _, c in sorted(self.inhibitory, key=lambda e: (-e[0], e[1]))]


@dataclass
class Explanation:
    meta: dict[str, Any]
    queries: list[Query]
    image: np.ndarray
    """The query image, uint8 RGB, original pixels."""
    transform: CropTransform
    score: np.ndarray
    """The model's K x K score map for the chosen head (what ``predict`` shows)."""
    train_transform: tuple[int, int]
    """(fit_resize, fit_size): how training images were framed for their features."""

    def record(self) -> dict[str, Any]:
        return {**self.meta, "queries": [q.record() for q in self.queries]}


def _push(heap: list[tuple[float, int, Contribution]], key: float, n: int, c: Contribution, k: int) -> None:
    """Keep the k largest keys (a min-heap); ties keep the earlier image."""
    item = (key, -n, c)
    if len(heap) < k:
        heapq.heappush(heap, item)
    elif item[:2] > heap[0][:2]:
        heapq.heapreplace(heap, item)


def _query_features(
    loc: Localizer, meta_resize: int, meta_input: int, image: np.ndarray
) -> tuple[np.ndarray, CropTransform, np.ndarray]:
    frame, t = resize_crop(image, meta_resize, meta_input)
    with torch.inference_mode():
        x = torch.from_numpy(frame[None])
        f = loc.features(x)
        score, *_ = loc.localize(f)  # the map from these features: one backbone pass
    return f[0].double().numpy(), t, score[0].numpy()


def _training_set(cfg: ExplainConfig, meta_fields: dict[str, Any]) -> tuple[str, Path, str]:
    data = cfg.data or meta_fields["fit_data"]
    root = cfg.root or (Path(meta_fields["fit_root"]) if meta_fields["fit_root"] else None)
    split = cfg.split or meta_fields["fit_split"]
    if not data or root is None or not split:
        raise MetadataError(
            f"{cfg.model} does not record its training set (fitted before rpol-edge kept it): "
            "pass --data, --root and --split"
        )
    return data, Path(root), split


def _stream(
    loc: Localizer, samples: list[Sample], resize: int, crop: int, cfg: ExplainConfig
) -> Iterator[tuple[Sample | None, np.ndarray | None, np.ndarray | None, str]]:
    """(sample, features (C, h, w) float32, None, "") per decoded image, (sample, None, None, reason)
    per skip; the third slot carries exact norms only when features come from the float16 cache."""
    for batch in iterate_batches(samples, resize, crop, cfg.batch_size, cfg.workers):
        for s, reason in batch.skipped:
            yield s, None, None, reason
        if len(batch.frames):
            with torch.inference_mode():
                f = loc.features(torch.from_numpy(batch.frames)).float().numpy()
            for s, fi in zip(batch.samples, f, strict=True):
                yield s, fi, None, ""


@dataclass
class _View:
    path: Path
    image: np.ndarray
    transform: CropTransform
    score: np.ndarray
    grid: tuple[int, int]
    queries: list[Query]


def _query_view(
    loc: Localizer, meta: Any, w: np.ndarray, h_idx: int, path: Path, points: list[tuple[float, float]]
) -> _View:
    """One query image: its features, its map, and its query points (given, or peak and lowest)."""
    image = load_rgb(path)
    fq, transform, score = _query_features(loc, meta.resize_size, meta.input_size, image)
    unit_q, _ = unit_map(fq)
    grid = (int(unit_q.shape[1]), int(unit_q.shape[2]))
    act = np.einsum("c,chw->hw", w, unit_q)  # a before the clamp, per cell
    cells: list[tuple[float, float, int, int, str]] = []
    if points:
        cells = [(x, y, *point_to_cell(x, y, transform, grid), "given") for x, y in points]
    else:
        for source, flat in (("peak", int(np.argmax(act))), ("lowest", int(np.argmin(act)))):
            row, col = divmod(flat, grid[1])
            cells.append((*cell_to_point(row, col, transform, grid), row, col, source))
    queries = [
        Query(x, y, (row, col), source, unit_q[:, row, col].copy(), float(act[row, col]))
        for x, y, row, col, source in cells
    ]
    return _View(path, image, transform, score[h_idx], grid, queries)


def explain(cfg: ExplainConfig, progress: Progress | None = None) -> list[Explanation]:
    """Stream the training set once and split a_q into representer values for every query point of
    every query image; one Explanation per image."""
    if not cfg.images:
        raise ValueError("explain needs at least one query image")
    if cfg.top < 1:
        raise ValueError(f"--top {cfg.top}: at least 1")
    if Path(cfg.model).suffix.lower() != ".rpol":
        raise MetadataError(
            f"{cfg.model}: explain needs the fitted .rpol model (it streams the training images "
            "through the backbone and splits w* into their contributions; an exported graph carries "
            "neither the backbone's features nor w*'s training sums)"
        )
    started = time.perf_counter()
    artifact = ModelArtifact.load(cfg.model)
    meta = artifact.meta
    if meta.head != "rpol":
        raise MetadataError(f"{cfg.model}: a {meta.head} model has no w* built from training points")
    if not 0 <= cfg.head_index < meta.n_heads:
        raise ValueError(f"--head-index {cfg.head_index}: the model has {meta.n_heads} head(s)")
    h_idx = cfg.head_index
    if artifact.taus is not None:
        t = float(artifact.taus[h_idx])
    elif meta.tau_mode == "joint":
        t = tau(artifact.v_sum[h_idx], artifact.u_sum[h_idx])
    else:
        t = float(meta.tau)
    z = normalizer(artifact.v_sum[h_idx], artifact.u_sum[h_idx], t)
    if z <= 0:
        raise MetadataError(f"{cfg.model}: w* is zero (v = tau u); nothing to explain")
    w = np.asarray(artifact.w[h_idx], np.float64)

    data, root, split = _training_set(cfg, meta.to_dict())
    samples = sample_subset(read_dataset(data, root, split), meta.sampling_ratio, meta.seed)
    rows = head_rows(meta)
    label_of_head = {row: label for label, row in rows.items()}
    wanted = (lambda s: True) if not rows else (lambda s: s.label == label_of_head[h_idx])
    if not rows and len(samples) != meta.n_images + meta.n_skipped:
        # Cheap early refusal; the feature sums are compared exactly after the stream.
        raise DatasetError(
            f"{data} {split!r} under {root} lists {len(samples)} images (sampling {meta.sampling_ratio}, "
            f"seed {meta.seed}); the model was fitted on {meta.n_images} (+{meta.n_skipped} skipped): "
            "not its training set"
        )

    # Refuse a wrong cache before minutes of backbone work.
    key = cache_key(meta, data, root, split, samples)
    cached = open_cache(cfg.cache, key) if cfg.cache else None
    loc = build_localizer(artifact, cfg.weights)
    views = [_query_view(loc, artifact.meta, w, h_idx, Path(p), cfg.points) for p in cfg.images]
    # Only now: a bad query image or point must not leave a half-made cache folder behind.
    writer = CacheWriter(cfg.cache, key, meta.w_sha256) if cfg.cache and cached is None else None
    queries = [q for v in views for q in v.queries]

    by_id = {s.image_id: s for s in samples}
    stream: Iterator[tuple[Sample | None, np.ndarray | None, np.ndarray | None, str]]
    if cached is not None:
        stream = ((by_id.get(cached.image_ids[i]), f, nm, "") for i, f, nm in cached.iterate())
    else:
        todo = samples if writer else [s for s in samples if wanted(s)]
        stream = _stream(loc, todo, meta.fit_resize, meta.fit_size, cfg)

    v_rec = np.zeros(meta.channels, np.float64)
    n_used = 0
    n_skipped = len(cached.skipped) if cached else 0
    feature_grid: tuple[int, int] | None = None
    counter = itertools.count()
    stream_started = time.perf_counter()
    try:
        for done, (sample, f, norms_exact, reason) in enumerate(stream, 1):
            if sample is None:
                raise FeatureCacheError(f"--cache {cfg.cache}: lists an image the data set does not have")
            if f is None:
                n_skipped += 1
                if writer:
                    writer.skip(sample.image_id, reason)
                continue
            unit, norms = unit_map(f)
            if writer:
                writer.add(sample.image_id, f, norms)
            if norms_exact is not None:
                norms = np.asarray(norms_exact, np.float64)
            if progress:
                progress(done, len(samples))
            if not wanted(sample):
                continue
            feature_grid = (int(norms.shape[0]), int(norms.shape[1]))
            n_used += 1
            v_rec += (unit * norms).mean(axis=(1, 2))
            alpha = importance(norms, t, z)
            for q in queries:
                sim = similarity(unit, q.unit)
                r = representer_values(alpha, sim)
                total = float(r.sum())
                q.sum_r += total
                contrib = Contribution(
                    total,
                    sample.image_id,
                    str(sample.path),
                    float(r[r > 0].sum()),
                    float(r[r < 0].sum()),
                    alpha.astype(np.float32),
                    sim.astype(np.float32),
                    r.astype(np.float32),
                )
                n = next(counter)
                _push(q.excitatory, total, n, contrib, cfg.top)
                _push(q.inhibitory, -total, n, contrib, cfg.top)
        if writer:
            writer.commit()
            writer = None
    finally:
        if writer:
            writer.abort()

    v_stored = artifact.v_sum[h_idx]
    sums_rel = float(np.linalg.norm(v_rec - v_stored) / max(float(np.linalg.norm(v_stored)), EPS))
    if n_used != int(artifact.count[h_idx]) or sums_rel > SUMS_TOLERANCE:
        raise DatasetError(
            f"the training set streamed ({n_used} images, relative difference of the feature sums "
            f"{sums_rel:.1e}) does not reproduce the model's fit ({int(artifact.count[h_idx])} images): "
            "another data set, split, sampling or input size than the fit's"
        )
    elapsed = time.perf_counter() - started
    info = {
        "model": str(cfg.model),
        "training_set": {
            "data": data,
            "root": str(root),
            "split": split,
            "sampling_ratio": meta.sampling_ratio,
            "seed": meta.seed,
        },
        "head_index": h_idx,
        "tau_mode": meta.tau_mode,
        "tau": t,
        "Z": z,
        "alpha_formula": "(||f|| - tau) / (h*w*Z)",
        "ranking": "by the image's total contribution sum_i r_{n,i}(q)",
        "n_train_images": n_used,
        "n_train_skipped": n_skipped,
        "train_feature_grid": list(feature_grid or (0, 0)),
        "query_feature_grid": list(views[0].grid),
        "n_query_images": len(views),
        "feature_sums_rel_diff": sums_rel,
        "cache": {
            "path": str(cfg.cache) if cfg.cache else None,
            "used": cached is not None,
            "written": bool(cfg.cache) and cached is None,
        },
        "seconds_total": round(elapsed, 3),
        "seconds_stream": round(time.perf_counter() - stream_started, 3),
        "top": cfg.top,
    }
    frame = (meta.fit_resize, meta.fit_size)
    return [
        Explanation({**info, "image": str(v.path)}, v.queries, v.image, v.transform, v.score, frame)
        for v in views
    ]


__all__ = [
    "Contribution",
    "ExplainConfig",
    "Explanation",
    "Query",
    "cell_to_point",
    "explain",
    "importance",
    "normalizer",
    "point_to_cell",
    "representer_values",
    "similarity",
    "unit_map",
]
