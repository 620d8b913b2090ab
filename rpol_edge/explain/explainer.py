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
The math and the per-query heaps live in rpol_edge/explain/representers.py, the query points in
rpol_edge/explain/queries.py; this module streams the training set through them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rpol_edge.core.artifact import ModelArtifact
from rpol_edge.core.geometry import CropTransform
from rpol_edge.core.metadata import MetadataError
from rpol_edge.core.wstar import EPS, tau
from rpol_edge.data import DatasetError, Sample, read_dataset, sample_subset
from rpol_edge.data.loader import iterate_batches
from rpol_edge.evaluate.evaluation import head_rows
from rpol_edge.explain.feature_cache import CacheWriter, FeatureCacheError, cache_key, open_cache
from rpol_edge.explain.queries import QueryView, query_view
from rpol_edge.explain.representers import Query, importance, normalizer, score_image, unit_map
from rpol_edge.modeling.factory import build_localizer
from rpol_edge.modeling.localizer import Localizer

Progress = Callable[[int, int], None]

SUMS_TOLERANCE = 1e-3
"""Largest relative difference between the re-streamed and the stored v sum before explain refuses:
a larger one means another data set, split or sampling than the fit's (float16 caches stay ~1e-5)."""


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


def _training_set(cfg: ExplainConfig, meta_fields: dict[str, Any]) -> tuple[str, Path, str]:
    if meta_fields["fit_data"] == "source" and not cfg.data:
        return _source_folder(cfg, meta_fields["fit_root"])
    data = cfg.data or meta_fields["fit_data"]
    root = cfg.root or (Path(meta_fields["fit_root"]) if meta_fields["fit_root"] else None)
    split = cfg.split or meta_fields["fit_split"]
    if not data or root is None or not split:
        raise MetadataError(
            f"{cfg.model} does not record its training set (fitted before rpol-edge kept it): "
            "pass --data, --root and --split"
        )
    return data, Path(root), split


def _source_folder(cfg: ExplainConfig, source: str) -> tuple[str, Path, str]:
    """A fit on a folder source (``fit --source DIR``) read its images in the folder reader's order:
    explain reads them again as that folder. A camera, stream or video is not read again."""
    if source and "://" not in source and Path(source).is_dir():
        return "folder", cfg.root or Path(source), cfg.split or ""
    raise MetadataError(
        f"{cfg.model} was fitted on frames of {source or 'a source'}, which explain cannot read again: "
        "save those frames as images and pass --data folder --root DIR"
    )


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


def _check_request(cfg: ExplainConfig) -> None:
    """Refusals that need nothing loaded: no query image, a bad --top, a model that is no .rpol."""
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


@dataclass
class _Head:
    """The fitted head being explained: its tau, Z = ||v - tau u|| and w*."""

    artifact: ModelArtifact
    index: int
    t: float
    z: float
    w: np.ndarray


def _load_head(cfg: ExplainConfig) -> _Head:
    artifact = ModelArtifact.load(cfg.model)
    meta = artifact.meta
    if meta.head != "rpol":
        raise MetadataError(f"{cfg.model}: a {meta.head} model has no w* built from training points")
    if meta.operating_point == "scene":
        raise MetadataError(
            f"{cfg.model}: a scene model's map is the evidence against its scene, not w*'s response: "
            "it has no training points to show (explain a model fitted without --operating-point scene)"
        )
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
    return _Head(artifact, h_idx, t, z, np.asarray(artifact.w[h_idx], np.float64))


@dataclass
class _TrainingSet:
    data: str
    root: Path
    split: str
    samples: list[Sample]
    wanted: Callable[[Sample], bool]
    """Whether an image belongs to the head's class (every image for a single-class fit)."""


def _training_samples(cfg: ExplainConfig, head: _Head) -> _TrainingSet:
    """The fit's training images, in the fit's order; refuses a list of another length early."""
    meta = head.artifact.meta
    data, root, split = _training_set(cfg, meta.to_dict())
    samples = sample_subset(read_dataset(data, root, split), meta.sampling_ratio, meta.seed)
    rows = head_rows(meta)
    label_of_head = {row: label for label, row in rows.items()}
    wanted = (lambda s: True) if not rows else (lambda s: s.label == label_of_head[head.index])
    if not rows and len(samples) != meta.n_images + meta.n_skipped:
        # Cheap early refusal; the feature sums are compared exactly after the stream.
        raise DatasetError(
            f"{data} {split!r} under {root} lists {len(samples)} images (sampling {meta.sampling_ratio}, "
            f"seed {meta.seed}); the model was fitted on {meta.n_images} (+{meta.n_skipped} skipped): "
            "not its training set"
        )
    return _TrainingSet(data, root, split, samples, wanted)


_Features = Iterator[tuple[Sample | None, np.ndarray | None, np.ndarray | None, str]]


@dataclass
class _Scan:
    """What one pass over the training set found, beside the queries' sums and heaps."""

    v_rec: np.ndarray
    """sum_n mean_i f_{n,i} as streamed: must reproduce the stored v."""
    n_used: int = 0
    n_skipped: int = 0
    feature_grid: tuple[int, int] | None = None
    seconds: float = 0.0


def _scan(
    cfg: ExplainConfig,
    head: _Head,
    train: _TrainingSet,
    stream: _Features,
    queries: list[Query],
    writer: CacheWriter | None,
    n_skipped: int,
    progress: Progress | None,
) -> _Scan:
    """Score every wanted training image against every query; a cache being written gets every
    image (the head's or not) and is committed only when the stream ends, else removed."""
    scan = _Scan(np.zeros(head.artifact.meta.channels, np.float64), n_skipped=n_skipped)
    started = time.perf_counter()
    try:
        for done, (sample, f, norms_exact, reason) in enumerate(stream, 1):
            if sample is None:
                raise FeatureCacheError(f"--cache {cfg.cache}: lists an image the data set does not have")
            if f is None:
                scan.n_skipped += 1
                if writer:
                    writer.skip(sample.image_id, reason)
                continue
            unit, norms = unit_map(f)
            if writer:
                writer.add(sample.image_id, f, norms)
            if norms_exact is not None:
                norms = np.asarray(norms_exact, np.float64)
            if progress:
                progress(done, len(train.samples))
            if not train.wanted(sample):
                continue
            scan.feature_grid = (int(norms.shape[0]), int(norms.shape[1]))
            alpha = importance(norms, head.t, head.z)
            score_image(queries, sample.image_id, str(sample.path), unit, alpha, scan.n_used, cfg.top)
            scan.n_used += 1
            scan.v_rec += (unit * norms).mean(axis=(1, 2))
        if writer:
            writer.commit()
            writer = None
    finally:
        if writer:
            writer.abort()
    scan.seconds = time.perf_counter() - started
    return scan


def _sums_difference(head: _Head, scan: _Scan) -> float:
    """The relative difference of the streamed v to the stored one; refuses another training set."""
    v_stored = head.artifact.v_sum[head.index]
    sums_rel = float(np.linalg.norm(scan.v_rec - v_stored) / max(float(np.linalg.norm(v_stored)), EPS))
    count = int(head.artifact.count[head.index])
    if scan.n_used != count or sums_rel > SUMS_TOLERANCE:
        raise DatasetError(
            f"the training set streamed ({scan.n_used} images, relative difference of the feature sums "
            f"{sums_rel:.1e}) does not reproduce the model's fit ({count} images): "
            "another data set, split, sampling or input size than the fit's"
        )
    return sums_rel


def _info(
    cfg: ExplainConfig, head: _Head, train: _TrainingSet, scan: _Scan, views: list[QueryView], cached: bool
) -> dict[str, Any]:
    """The record shared by every query image's explanation (without the timings)."""
    meta = head.artifact.meta
    return {
        "model": str(cfg.model),
        "training_set": {
            "data": train.data,
            "root": str(train.root),
            "split": train.split,
            "sampling_ratio": meta.sampling_ratio,
            "seed": meta.seed,
        },
        "head_index": head.index,
        "tau_mode": meta.tau_mode,
        "tau": head.t,
        "Z": head.z,
        "alpha_formula": "(||f|| - tau) / (h*w*Z)",
        "ranking": "by the image's total contribution sum_i r_{n,i}(q)",
        "n_train_images": scan.n_used,
        "n_train_skipped": scan.n_skipped,
        "train_feature_grid": list(scan.feature_grid or (0, 0)),
        "query_feature_grid": list(views[0].grid),
        "n_query_images": len(views),
        "feature_sums_rel_diff": _sums_difference(head, scan),
        "cache": {
            "path": str(cfg.cache) if cfg.cache else None,
            "used": cached,
            "written": bool(cfg.cache) and not cached,
        },
    }


def explain(cfg: ExplainConfig, progress: Progress | None = None) -> list[Explanation]:
    """Stream the training set once and split a_q into representer values for every query point of
    every query image; one Explanation per image."""
    _check_request(cfg)
    started = time.perf_counter()
    head = _load_head(cfg)
    meta = head.artifact.meta
    train = _training_samples(cfg, head)

    # Refuse a wrong cache before minutes of backbone work.
    key = cache_key(meta, train.data, train.root, train.split, train.samples)
    cached = open_cache(cfg.cache, key) if cfg.cache else None
    loc = build_localizer(head.artifact, cfg.weights)
    views = [query_view(loc, meta, head.w, head.index, Path(p), cfg.points) for p in cfg.images]
    # Only now: a bad query image or point must not leave a half-made cache folder behind.
    writer = CacheWriter(cfg.cache, key, meta.w_sha256) if cfg.cache and cached is None else None
    queries = [q for v in views for q in v.queries]

    stream: _Features
    if cached is not None:
        by_id = {s.image_id: s for s in train.samples}
        stream = ((by_id.get(cached.image_ids[i]), f, nm, "") for i, f, nm in cached.iterate())
    else:
        todo = train.samples if writer else [s for s in train.samples if train.wanted(s)]
        stream = _stream(loc, todo, meta.fit_resize, meta.fit_size, cfg)
    n_skipped = len(cached.skipped) if cached else 0
    scan = _scan(cfg, head, train, stream, queries, writer, n_skipped, progress)
    info = _info(cfg, head, train, scan, views, cached is not None)
    info.update(seconds_total=round(time.perf_counter() - started, 3), seconds_stream=round(scan.seconds, 3))
    info["top"] = cfg.top
    frame = (meta.fit_resize, meta.fit_size)
    return [
        Explanation({**info, "image": str(v.path)}, v.queries, v.image, v.transform, v.score, frame)
        for v in views
    ]


__all__ = ["ExplainConfig", "Explanation", "explain"]
