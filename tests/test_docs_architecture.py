"""The architecture page against the code: its picture and integrations table are what
scripts/architecture_diagram.py draws from the import contracts today, every integration names a
real extra and real modules, and tests/ mirrors the package as the page says."""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]

if sys.version_info < (3, 11):
    pytest.importorskip("tomli", reason="reading pyproject.toml on Python 3.10 needs tomli")


def _script() -> ModuleType:
    path = REPO / "scripts" / "architecture_diagram.py"
    spec = importlib.util.spec_from_file_location("architecture_diagram", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


diagram = _script()


def test_committed_picture_and_table_are_what_the_contracts_draw() -> None:
    for rel, content in diagram.outputs().items():
        committed = (REPO / rel).read_text()
        assert committed == content, f"{rel} is stale: run python scripts/architecture_diagram.py"


def test_the_picture_follows_the_contracts() -> None:
    """A package leaving the torch-free contract, or a layer added, changes the picture."""
    project = diagram.load_pyproject()
    svg = diagram.render(project)
    assert svg.count("<rect") > sum(len(row) for row in diagram.layers(project))
    less_free = copy.deepcopy(project)
    torch_rule = next(c for c in diagram.contracts(less_free) if "torch" in c.get("forbidden_modules", []))
    torch_rule["source_modules"].remove("rpol_edge.results")
    assert diagram.render(less_free) != svg
    more_layers = copy.deepcopy(project)
    layer_rule = next(c for c in diagram.contracts(more_layers) if c["type"] == "layers")
    layer_rule["layers"].insert(0, "rpol_edge.extra")
    assert ">extra</text>" in diagram.render(more_layers)


def test_an_unknown_extra_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    project = diagram.load_pyproject()
    renamed = diagram.Integration("X", "does", "rpol_edge.runtimes", ("runtimes",), ("no-such-extra",))
    monkeypatch.setattr(diagram, "INTEGRATIONS", (*diagram.INTEGRATIONS, renamed))
    with pytest.raises(SystemExit, match="no-such-extra"):
        diagram.render(project)


def test_integrations_name_real_modules_and_every_runtime_with_its_extra() -> None:
    from rpol_edge.runtimes.registry import RUNTIMES

    for integration in diagram.INTEGRATIONS:
        for code in integration.code:
            path = REPO / "rpol_edge" / code.replace(".", "/")
            assert path.with_suffix(".py").is_file() or (path / "__init__.py").is_file(), code
    for info in RUNTIMES.values():
        module = info.module.removeprefix("rpol_edge.")
        listed = [i for i in diagram.INTEGRATIONS if any(module.startswith(c) for c in i.code)]
        assert any(info.extra in i.extras for i in listed), f"{info.name}: extra {info.extra} not shown"


def test_tests_mirror_the_package() -> None:
    root = REPO / "rpol_edge"
    packages = [p.parent.relative_to(root) for p in root.rglob("__init__.py") if p.parent != root]
    missing = [f"rpol_edge/{p}" for p in packages if not (REPO / "tests" / p).is_dir()]
    assert not missing, f"subpackages without a tests/ folder of the same path: {missing}"
