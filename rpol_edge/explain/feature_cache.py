"""Feature cache for ``explain``: the training set's backbone features, float16, memory-mapped.

Repeated explanations against the same training set then cost one read of the cache instead of one
backbone pass per image. The cache is keyed on everything that determines the features (backbone,
weights hash, output stride, fit resolution, data kind/root/split, sampling, the image list) and
refuses to be used with anything else. w* does not enter the features, so two models fitted on the
same backbone and data (e.g. ``--tau joint`` and ``--tau mean``) may share one cache; the w* hash of
the model that wrote it is recorded for information only.

Layout of DIR: ``manifest.json``, ``features.f16`` (raw float16, (N, C, h, w), C-order),
``norms.f32`` (raw float32, (N, h, w): the exact per-position norms, so the importances alpha do
not inherit float16 rounding). The folder is built beside DIR and renamed into place when complete,
so an interrupted run never leaves a cache that looks valid. Reads map a window of images at a
time, so resident memory stays bounded whatever N is.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from rpol_edge.core.metadata import ModelMeta
from rpol_edge.data import Sample, sample_list_sha256

FORMAT = "rpol-edge-feature-cache/1"
WINDOW = 32
"""Images mapped at once while reading."""


class FeatureCacheError(ValueError):
    """A cache folder that is not a cache, is damaged, or belongs to another model or data set."""


def cache_key(
    meta: ModelMeta, data: str, root: Path, split: str, samples: Sequence[Sample]
) -> dict[str, Any]:
    """The fields a cache must match to be reused (everything the features depend on)."""
    return {
        "format": FORMAT,
        "backbone": meta.backbone,
        "weights_sha256": meta.weights_sha256,
        "output_stride": meta.output_stride,
        "channels": meta.channels,
        "fit_size": meta.fit_size,
        "fit_resize": meta.fit_resize,
        "data": data,
        "root": str(Path(root).resolve()),
        "split": split,
        "sampling_ratio": meta.sampling_ratio,
        "seed": meta.seed,
        "n_listed": len(samples),
        "image_list_sha256": sample_list_sha256(samples),
    }


@dataclass
class CachedSet:
    """An opened, validated cache: ``image_ids`` in stream order, features (N, C, h, w)."""

    folder: Path
    image_ids: list[str]
    shape: tuple[int, int, int]
    skipped: list[tuple[str, str]]
    manifest: dict[str, Any]

    def iterate(self) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """(index, features float16 (C, h, w), norms float32 (h, w)), mapping WINDOW images at a time."""
        c, h, w = self.shape
        n = len(self.image_ids)
        feat_bytes = c * h * w * 2
        norm_bytes = h * w * 4
        for start in range(0, n, WINDOW):
            k = min(WINDOW, n - start)
            feats = np.memmap(self.folder / "features.f16", np.float16, "r", start * feat_bytes, (k, c, h, w))
            norms = np.memmap(self.folder / "norms.f32", np.float32, "r", start * norm_bytes, (k, h, w))
            for j in range(k):
                yield start + j, np.asarray(feats[j]), np.asarray(norms[j])
            # Dropping the maps returns their pages, so RSS does not grow with the cache size.
            del feats, norms


def open_cache(folder: Path, key: dict[str, Any]) -> CachedSet | None:
    """The cache in ``folder`` if it matches ``key``; None when ``folder`` is absent or empty."""
    folder = Path(folder)
    if not folder.exists() or (folder.is_dir() and not any(folder.iterdir())):
        return None
    manifest_path = folder / "manifest.json"
    if not folder.is_dir() or not manifest_path.is_file():
        raise FeatureCacheError(f"--cache {folder}: exists but is not an rpol-edge feature cache")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise FeatureCacheError(f"--cache {folder}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict):
        raise FeatureCacheError(f"--cache {folder}: manifest is not a JSON object")
    for name, want in key.items():
        have = manifest.get(name)
        if have != want:
            raise FeatureCacheError(
                f"--cache {folder} was written for another model or data set ({name}: cache has "
                f"{str(have)[:40]!r}, this run needs {str(want)[:40]!r}); use another --cache folder"
            )
    ids = [str(i) for i in manifest.get("image_ids", [])]
    shape = tuple(int(x) for x in manifest.get("shape", ()))
    if len(shape) != 3:
        raise FeatureCacheError(f"--cache {folder}: manifest has no feature shape")
    c, h, w = shape
    for name, itemsize in (("features.f16", 2 * c * h * w), ("norms.f32", 4 * h * w)):
        path = folder / name
        if not path.is_file() or path.stat().st_size != itemsize * len(ids):
            raise FeatureCacheError(f"--cache {folder}: {name} is missing or has the wrong size (damaged)")
    skipped = [(str(a), str(b)) for a, b in manifest.get("skipped", [])]
    return CachedSet(folder, ids, (c, h, w), skipped, manifest)


class CacheWriter:
    """Appends features image by image into a temporary folder; ``commit`` renames it into place."""

    def __init__(self, folder: Path, key: dict[str, Any], w_sha256: str) -> None:
        self.folder = Path(folder)
        if self.folder.exists() and (not self.folder.is_dir() or any(self.folder.iterdir())):
            raise FeatureCacheError(f"--cache {self.folder}: exists and is not empty")
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.folder.name}.", dir=self.folder.parent))
        self.key = key
        self.w_sha256 = w_sha256
        self.ids: list[str] = []
        self.skipped: list[tuple[str, str]] = []
        self.shape: tuple[int, int, int] | None = None
        self._feat: BinaryIO = open(self.tmp / "features.f16", "wb")  # noqa: SIM115 (closed in commit/abort)
        self._norm: BinaryIO = open(self.tmp / "norms.f32", "wb")  # noqa: SIM115

    def add(self, image_id: str, features: np.ndarray, norms: np.ndarray) -> None:
        shape = tuple(int(x) for x in features.shape)
        if self.shape is None:
            self.shape = shape  # type: ignore[assignment]
        elif shape != self.shape:
            raise FeatureCacheError(f"{image_id}: feature shape {shape} differs from {self.shape}")
        self._feat.write(np.ascontiguousarray(features, np.float16).tobytes())
        self._norm.write(np.ascontiguousarray(norms, np.float32).tobytes())
        self.ids.append(image_id)

    def skip(self, image_id: str, reason: str) -> None:
        self.skipped.append((image_id, reason))

    def commit(self) -> None:
        self._feat.close()
        self._norm.close()
        manifest = {
            **self.key,
            "shape": list(self.shape or (0, 0, 0)),
            "dtype": "float16",
            "image_ids": self.ids,
            "skipped": self.skipped,
            "written_by_w_sha256": self.w_sha256,
        }
        (self.tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        if self.folder.exists():
            self.folder.rmdir()  # empty (checked in __init__); rename needs the name free or empty
        os.replace(self.tmp, self.folder)

    def abort(self) -> None:
        self._feat.close()
        self._norm.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
