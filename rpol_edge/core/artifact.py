"""The fitted-model file (``.rpol``): w*, the running sums it came from, and the metadata record.

A plain ``torch.save`` dict of tensors and one JSON string, so it loads with ``weights_only=True``;
written to a temporary file and renamed so an interrupted write never leaves a half file behind.

torch is imported only to save or load a model file (`rpol_edge.core.files` writes it).
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rpol_edge.core.extras import require_torch
from rpol_edge.core.files import array_sha256, atomic_write
from rpol_edge.core.metadata import MetadataError, ModelMeta

MAGIC = "rpol-edge-model"


@dataclass
class ModelArtifact:
    meta: ModelMeta
    w: np.ndarray  # (n_heads, C) float64, unit rows
    v_sum: np.ndarray
    u_sum: np.ndarray
    count: np.ndarray
    taus: np.ndarray | None = None
    """(n_heads,) float64 tau of every head (the metadata keeps head 0's); None in older files."""
    cells: np.ndarray | None = None
    """(C, H, W) float64 per-cell sums of unit features: the scene model of a ``scene`` fit."""
    zstats: np.ndarray | None = None
    """(2, H, W) float32: mean and standard deviation of the w* response per cell (``zscore``)."""

    def save(self, path: Path) -> None:
        require_torch("writing a model file", with_timm=False)
        import torch

        payload = {
            "magic": MAGIC,
            "meta": portable(self.meta, Path(path).parent).to_json(),
            "w": torch.from_numpy(np.asarray(self.w, np.float64)),
            "v_sum": torch.from_numpy(np.asarray(self.v_sum, np.float64)),
            "u_sum": torch.from_numpy(np.asarray(self.u_sum, np.float64)),
            "count": torch.from_numpy(np.asarray(self.count, np.int64)),
        }
        if self.taus is not None:
            payload["taus"] = torch.from_numpy(np.asarray(self.taus, np.float64))
        if self.cells is not None:
            payload["cells"] = torch.from_numpy(np.asarray(self.cells, np.float64))
        if self.zstats is not None:
            payload["zstats"] = torch.from_numpy(np.asarray(self.zstats, np.float32))
        atomic_write(path, lambda tmp: torch.save(payload, tmp))

    @classmethod
    def load(cls, path: Path) -> ModelArtifact:
        path = Path(path)
        if not path.is_file():
            raise MetadataError(f"{path}: no such model file")
        require_torch(f"reading {path.name} (a fitted model file)", with_timm=False)
        import torch

        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise MetadataError(unreadable(path, exc)) from None
        if not isinstance(obj, dict) or obj.get("magic") != MAGIC:
            raise MetadataError(f"{path}: not an rpol-edge model file (no {MAGIC} header)")
        missing = [k for k in ("meta", "w", "v_sum", "u_sum", "count") if k not in obj]
        if missing:
            raise MetadataError(f"{path}: damaged model file (no {', '.join(missing)})")
        meta = located(ModelMeta.from_json(obj["meta"], str(path)), path.parent)
        w = obj["w"].numpy()
        if w.shape != (meta.n_heads, meta.channels):
            raise MetadataError(
                f"{path}: w* has shape {w.shape}, metadata says ({meta.n_heads}, {meta.channels})"
            )
        if array_sha256(w) != meta.w_sha256:
            raise MetadataError(f"{path}: w* does not match its recorded hash (file edited or damaged)")
        taus = obj["taus"].numpy() if isinstance(obj.get("taus"), torch.Tensor) else None
        cells = obj["cells"].numpy() if isinstance(obj.get("cells"), torch.Tensor) else None
        if (cells is not None) != (meta.operating_point == "scene"):
            raise MetadataError(f"{path}: damaged model file (scene model and operating point disagree)")
        if cells is not None and cells.shape[0] != meta.channels:
            raise MetadataError(
                f"{path}: scene model has {cells.shape[0]} channels, metadata says {meta.channels}"
            )
        zstats = obj["zstats"].numpy() if isinstance(obj.get("zstats"), torch.Tensor) else None
        wrong = zstats is not None and len(zstats) != 2
        if wrong or (zstats is not None) != (meta.operating_point == "zscore"):
            raise MetadataError(f"{path}: damaged model file (cell statistics and operating point disagree)")
        counts = obj["count"].numpy()
        return cls(meta, w, obj["v_sum"].numpy(), obj["u_sum"].numpy(), counts, taus, cells, zstats)


ZIP_MAGIC = b"PK\x03\x04"
"""How every file `ModelArtifact.save` writes begins: torch.save writes a zip archive."""


def unreadable(path: Path, exc: BaseException) -> str:
    """Why torch could not load ``path``, in the user's terms.

    A zip archive is found by the directory at its end: a file that begins like one but has no
    such end was cut short (an interrupted copy, download or write), which calls for a new copy,
    not for another file. Anything else is not a model file at all.
    """
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(len(ZIP_MAGIC))
    if size == 0:
        return f"{path}: damaged or incomplete model file (empty); copy it again or fit it anew"
    if ZIP_MAGIC.startswith(head) and not zipfile.is_zipfile(path):
        return (
            f"{path}: damaged or incomplete model file (truncated: the zip archive ends after {size} "
            "bytes without its directory); copy it again or fit it anew"
        )
    return f"{path}: not an rpol-edge model file ({exc.__class__.__name__})"


RELATIVE = {"fit_root": "fit_root_rel", "weights": "weights_rel"}
"""Each recorded path's copy relative to the model file's folder (``extra``), written beside it."""


def _get(meta: ModelMeta, key: str) -> str:
    return meta.fit_root if key == "fit_root" else meta.extra.get(key, "")


def _set(meta: ModelMeta, key: str, value: str, extra: dict[str, str]) -> ModelMeta:
    if key == "fit_root":
        return meta.replace(fit_root=value, extra=extra)
    return meta.replace(extra={**extra, key: value})


def portable(meta: ModelMeta, folder: Path) -> ModelMeta:
    """The record as a model file keeps it: each recorded path (fit data root, backbone checkpoint)
    as it is, made absolute, and also relative to the folder the file is written to, so that
    `located` finds them on this machine and in a folder moved together with its data. (Exported
    graphs and engines carry neither: `ModelMeta.shipped`.) A source's URL (``fit --source
    rtsp://...``) is no path: it stays as it is."""
    extra = {k: v for k, v in meta.extra.items() if k not in RELATIVE.values()}
    for key, rel_key in RELATIVE.items():
        text = _get(meta, key)
        if not text or "://" in text:
            continue
        path = os.path.abspath(text)  # a relative --weights path was typed relative to the cwd
        meta = _set(meta, key, path, extra)
        extra = dict(meta.extra)
        try:
            extra[rel_key] = os.path.relpath(path, os.path.abspath(folder))
        except ValueError:  # another drive (Windows): no relative form
            pass
        meta = meta.replace(extra=extra)
    return meta


def located(meta: ModelMeta, folder: Path) -> ModelMeta:
    """Each recorded path where it is now: as recorded when that exists (this machine; a relative
    one, as older files may hold for --weights, taken from the working folder), else the relative
    copy resolved against the model file's folder (the folder was moved with its data)."""
    for key, rel_key in RELATIVE.items():
        text, rel = _get(meta, key), meta.extra.get(rel_key, "")
        if text and os.path.exists(text):
            continue
        if rel:
            moved = os.path.normpath(os.path.join(os.path.abspath(folder), rel))
            if os.path.exists(moved):
                meta = _set(meta, key, moved, dict(meta.extra))
    return meta
