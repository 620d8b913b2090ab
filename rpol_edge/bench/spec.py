"""What a bench row is made of: ``PATH`` (the runtime its suffix selects) or ``PATH@key=value,...``
whose keys go to :func:`rpol_edge.runtimes.open_runtime` (``runtime=``, ``precision=``, ``device=``,
any option a runtime takes). So a new runtime or exported flavour is a new spec, not new bench code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STAGES = ("pre", "infer", "post")


QUANTILES = (50, 90, 99)


@dataclass(frozen=True)
class Spec:
    """One row's recipe: which pipeline, on which artifact, with which runtime options."""

    kind: str
    """``model`` (an artifact through its runtime), ``reference`` or ``backbone``."""
    path: Path
    options: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    @property
    def runtime(self) -> str:
        if self.kind == "backbone":
            return str(self.options.get("runtime", "torch"))
        if self.kind == "reference":
            return "torch"
        from rpol_edge.runtimes import choose

        return choose(self.path, str(self.options.get("runtime", "auto"))).name


INT_OPTIONS = frozenset({"threads"})
"""Runtime options that are numbers; every other value stays text (a path may be all digits)."""


def _option_value(key: str, text: str) -> Any:
    """``true``/``false`` -> bool, ``threads=4`` -> 4, else the text."""
    flag = {"true": True, "false": False}.get(text.lower())
    if flag is not None:
        return flag
    if key in INT_OPTIONS:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"bench spec option {key}={text!r}: a whole number, e.g. {key}=2") from None
    return text


def parse_spec(text: str) -> Spec:
    """``exp/model.onnx`` or ``m.rpol@precision=fp16,device=cuda`` -> Spec(kind="model")."""
    path, _, opts = text.partition("@")
    options: dict[str, Any] = {}
    for item in filter(None, (o.strip() for o in opts.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"bench spec {text!r}: options are key=value, e.g. {path}@precision=fp16")
        key = key.replace("-", "_")
        options[key] = _option_value(key, value)
    if not Path(path).is_file():
        raise ValueError(f"bench spec {text!r}: no such file {path}")
    return Spec("model", Path(path), options, label=Path(path).name + (f"@{opts}" if opts else ""))
