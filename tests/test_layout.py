"""The layout as tests: size limits, the torch boundary, and the import paths old artifacts use.

Limits: no module over MAX_MODULE_LINES lines and no function over MAX_FUNCTION_LINES lines in the
package and in benchmarks/ (small files a newcomer can read; docs/architecture.md). The torch
boundary: every module of the torch-free packages imports, in a fresh interpreter, without torch,
timm or torchvision being imported (import-linter checks the static graph; this checks what really
runs, lazy imports at module level included).
"""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
CHECKED = ("rpol_edge", "benchmarks")
def _torch_free_sources() -> list[str]:
    """The torch-free contract's packages, read from pyproject.toml (one list, not two)."""
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    return next(c["source_modules"] for c in contracts if "never imports torch" in c["name"])


TORCH_FREE: list[str] = _torch_free_sources()
# Optional dependencies a torch-free module may need; without them it is skipped, and counted.
OPTIONAL = {"openvino", "tensorrt", "cuda", "pyds", "gi", "tritonclient", "triton_python_backend_utils",
            "onnxruntime", "onnx", "matplotlib"}


def _sources() -> list[Path]:
    return sorted(p for root in CHECKED for p in (REPO / root).rglob("*.py") if "__pycache__" not in p.parts)


def _rel(p: Path) -> str:
    return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p)


def module_violations(paths: list[Path], limit: int = MAX_MODULE_LINES) -> list[str]:
    out = []
    for p in paths:
        n = len(p.read_text().splitlines())
        if n > limit:
            out.append(f"{_rel(p)}: {n} lines")
    return out


def function_violations(paths: list[Path], limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """Every function or method (nested ones too) longer than ``limit`` lines, decorators excluded."""
    out = []
    for p in paths:
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > limit:
                    out.append(f"{_rel(p)}:{node.lineno} {node.name}: {n} lines")
    return out


def test_limit_checks_count_what_they_claim(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("def f():\n" + "    x = 1\n" * 79)  # an 80-line function, an 80-line module
    assert function_violations([f]) == [] and module_violations([f], 80) == []
    f.write_text("def f():\n" + "    x = 1\n" * 80)  # 81 lines
    assert len(function_violations([f])) == 1 and len(module_violations([f], 80)) == 1


def test_no_module_over_the_limit() -> None:
    bad = module_violations(_sources())
    assert not bad, f"modules over {MAX_MODULE_LINES} lines:\n" + "\n".join(bad)


def test_no_function_over_the_limit() -> None:
    bad = function_violations(_sources())
    assert not bad, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(bad)


PROBE = r"""
import importlib, json, pkgutil, sys
packages = json.loads(sys.argv[1]); optional = set(json.loads(sys.argv[2]))
done, skipped = [], []
for name in packages:
    mod = importlib.import_module(name)
    names = [name]
    if hasattr(mod, "__path__"):
        names += [m.name for m in pkgutil.walk_packages(mod.__path__, name + ".")]
    for m in names:
        try:
            importlib.import_module(m)
            done.append(m)
        except ImportError as exc:
            root = (exc.name or "").split(".")[0]
            if root not in optional:
                raise
            skipped.append(f"{m} (needs {root})")
heavy = sorted(k for k in ("torch", "timm", "torchvision") if k in sys.modules)
print(json.dumps({"imported": done, "skipped": skipped, "heavy": heavy}))
"""


def test_torch_free_packages_import_no_torch() -> None:
    r = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(TORCH_FREE), json.dumps(sorted(OPTIONAL))],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    rec = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(rec["imported"]) >= 40, rec  # the packages really were walked
    assert rec["heavy"] == [], f"imported {rec['heavy']} (skipped: {rec['skipped']})"


# What an ensemble exported by the earlier layout runs as its pre/post model.py, kept verbatim.
OLD_STEP = REPO / "tests" / "fixtures" / "pre_layout" / "triton_step_model.py"


def test_old_import_paths_resolve_to_the_new_modules() -> None:
    from rpol_edge._moved import OLD_PATHS

    for old, new in OLD_PATHS.items():
        assert importlib.import_module(old) is importlib.import_module(new)
        assert importlib.import_module(old).__spec__.name == new  # the module keeps its own spec
    names = [
        (n.module, a.name)
        for n in ast.walk(ast.parse(OLD_STEP.read_text()))
        if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("rpol_edge")
        for a in n.names
    ]
    assert len(names) >= 5, names  # metadata, prepare, geometry, detect/box_mode, padded_boxes
    for module, name in names:
        assert hasattr(importlib.import_module(module), name), f"{module}.{name}"


def test_module_names_say_their_job_once() -> None:
    """No two modules of the package share a name (`__init__`/`__main__` aside): a name says one job.
    CLI command modules are named for their command and may share it with nothing else."""
    seen: dict[str, list[str]] = {}
    for path in sorted((REPO / "rpol_edge").rglob("*.py")):
        if path.name not in ("__init__.py", "__main__.py"):
            seen.setdefault(path.stem, []).append(str(path.relative_to(REPO)))
    twice = {name: paths for name, paths in seen.items() if len(paths) > 1}
    assert not twice, f"module names used twice: {twice}"
