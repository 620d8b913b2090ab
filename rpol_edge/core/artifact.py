"""The fitted-model file (``.rpol``): w*, the running sums it came from, and the metadata record.

A plain ``torch.save`` dict of tensors and one JSON string, so it loads with ``weights_only=True``;
written to a temporary file and renamed so an interrupted write never leaves a half file behind.

torch is imported only to save or load a model file (`rpol_edge.core.files` writes it).
"""

from __future__ import annotations

import os
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
            raise MetadataError(f"{path}: not an rpol-edge model file ({exc.__class__.__name__})") from None
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
        return cls(meta, w, obj["v_sum"].numpy(), obj["u_sum"].numpy(), obj["count"].numpy(), taus)


def portable(meta: ModelMeta, folder: Path) -> ModelMeta:
    """The paths a model file records (fit data root, backbone checkpoint), relative to the folder
    it is written to: the file does not carry the maker's absolute paths, and a folder moved with
    its data keeps working (`located` resolves them again on load)."""

    def rel(text: str) -> str:
        if not text or not os.path.isabs(text):
            return text
        return os.path.relpath(text, os.path.abspath(folder))

    extra = dict(meta.extra)
    if "weights" in extra:
        extra["weights"] = rel(extra["weights"])
    return meta.replace(fit_root=rel(meta.fit_root), extra=extra)


def located(meta: ModelMeta, folder: Path) -> ModelMeta:
    """`portable`'s inverse: relative recorded paths resolved against the model file's folder
    (absolute ones, as older files hold, stay as they are)."""

    def absolute(text: str) -> str:
        if not text or os.path.isabs(text):
            return text
        return os.path.normpath(os.path.join(os.path.abspath(folder), text))

    extra = dict(meta.extra)
    if "weights" in extra:
        extra["weights"] = absolute(extra["weights"])
    return meta.replace(fit_root=absolute(meta.fit_root), extra=extra)
