"""Import paths that files written by earlier versions of rpol-edge still use.

An exported Triton ensemble runs a copy of the step module as its pre/post ``model.py``, and that
copy imports the paths of the version that wrote it; a DeepStream folder's README names the
decode and probe modules of its version. Each old path below is the same module object as its new
one, so those files keep working; nothing in the package imports an old path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

OLD_PATHS: dict[str, str] = {
    "rpol_edge.evaluate.predict": "rpol_edge.results.detection",
    "rpol_edge.exporters.triton": "rpol_edge.integrations.triton.repository",
    "rpol_edge.evaluate.deepstream_decode": "rpol_edge.integrations.deepstream.decode",
    "rpol_edge.evaluate.deepstream_probe": "rpol_edge.integrations.deepstream.probe",
}


class _Alias(importlib.abc.Loader):
    """Hands out the new module itself (one module object under two names)."""

    def __init__(self, new: str) -> None:
        self.new = new
        self.spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.new)
        self.spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The import system stamped the old path's spec on the module: give it its own back.
        module.__spec__ = self.spec


class _OldPaths(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        new = OLD_PATHS.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _Alias(new))


def install() -> None:
    """Answer the old paths (once per interpreter)."""
    if not any(isinstance(f, _OldPaths) for f in sys.meta_path):
        sys.meta_path.append(_OldPaths())
