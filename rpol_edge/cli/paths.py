"""Output paths checked before the work starts."""

from __future__ import annotations

import os
from pathlib import Path


def check_writable(path: Path) -> None:
    """Refuse an output path before minutes of work, not after."""
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a file name (e.g. {path / 'model.rpol'})")
    parent = path.parent if str(path.parent) else Path(".")
    if parent.exists() and not os.access(parent, os.W_OK):
        raise ValueError(f"cannot write to {parent}")
