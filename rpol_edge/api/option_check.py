"""Keyword options checked against the config record they fill: a misspelt option is refused with
the closest valid name instead of being ignored (`fit`, `export`, `refit`)."""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any


def closest_option(key: str, names: set[str]) -> str | None:
    """The option a misspelt or shortened ``key`` most likely meant: a close spelling
    (``input_sise``, ``input-size``), else the one option whose first word it is (``tau``, the
    command line's ``--tau``, is ``tau_mode``)."""
    close = difflib.get_close_matches(key.replace("-", "_"), sorted(names), n=1)
    if close:
        return close[0]
    starting = [n for n in names if n.split("_")[0] == key]
    return starting[0] if len(starting) == 1 else None


def check_options(cls: type, given: dict[str, Any], fixed: set[str]) -> None:
    names = {f.name for f in dataclasses.fields(cls)} - fixed
    for key in given:
        if key not in names:
            close = closest_option(key, names)
            hint = f" (did you mean {close}?)" if close else ""
            raise TypeError(f"unknown option {key!r}{hint}; options: {', '.join(sorted(names))}")
