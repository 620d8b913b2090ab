"""The fitted-model file (``.rpol``): w*, the running sums it came from, and the metadata record.

A plain ``torch.save`` dict of tensors and one JSON string, so it loads with ``weights_only=True``;
written to a temporary file and renamed so an interrupted write never leaves a half file behind.

torch is imported only to save or load a model file: the atomic writers and hashes here serve the
commands that run exported graphs, which must not import it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rpol_edge.extras import require_torch
from rpol_edge.metadata import MetadataError, ModelMeta

MAGIC = "rpol-edge-model"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def file_sha256(path: Path) -> str:
    """Streaming sha256 of a file (checkpoints and engines can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_bytes_atomic(path: Path, data: bytes) -> None:
    def write(tmp: Path) -> None:
        tmp.write_bytes(data)

    atomic_write(path, write)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def array_sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a, dtype=np.float32).tobytes()).hexdigest()


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
            "meta": self.meta.to_json(),
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
        meta = ModelMeta.from_json(obj["meta"], str(path))
        w = obj["w"].numpy()
        if w.shape != (meta.n_heads, meta.channels):
            raise MetadataError(
                f"{path}: w* has shape {w.shape}, metadata says ({meta.n_heads}, {meta.channels})"
            )
        if array_sha256(w) != meta.w_sha256:
            raise MetadataError(f"{path}: w* does not match its recorded hash (file edited or damaged)")
        taus = obj["taus"].numpy() if isinstance(obj.get("taus"), torch.Tensor) else None
        return cls(meta, w, obj["v_sum"].numpy(), obj["u_sum"].numpy(), obj["count"].numpy(), taus)
