"""The numbered examples run as a user would run them, with the public API only."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, *args: str) -> str:
    res = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.py")), ids=lambda p: p.name)
def test_examples_import_only_the_public_api(path: Path) -> None:
    tree = ast.parse(path.read_text())
    ours = [
        node for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rpol_edge")
        or isinstance(node, ast.Import) and any(a.name.startswith("rpol_edge.") for a in node.names)
    ]  # fmt: skip
    assert not ours, f"{path.name} reaches into the package: {[ast.unparse(n) for n in ours]}"


def test_fit_and_localize() -> None:
    out = run_example("01_fit_and_localize.py")
    assert "fitted on 40 images" in out and "original pixels" in out and "score map (224, 224)" in out


def test_export_and_compare(sample_model: Path) -> None:
    out = run_example("02_export_and_compare.py", str(sample_model))
    assert "exported model.onnx" in out
    found = re.search(r"min ([\d.]+) over 8 photos, max \|score map difference\| ([\d.e+-]+)", out)
    assert found, out
    iou, gap = found.groups()
    assert float(iou) >= 0.9 and float(gap) < 1e-3, out
