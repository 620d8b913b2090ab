"""The numbered examples run as a user would run them (public API only)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, *args: str) -> str:
    res = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def test_fit_and_localize() -> None:
    out = run_example("01_fit_and_localize.py")
    assert "fitted on 40 images" in out and "original pixels" in out


def test_export_and_compare(sample_model: Path) -> None:
    out = run_example("02_export_and_compare.py", str(sample_model))
    assert "opset 17" in out and "'boxes_identical': 12" in out
