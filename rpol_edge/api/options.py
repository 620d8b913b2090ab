"""Keyword options checked against the config record they fill: a misspelt option is refused with
the closest valid name instead of being ignored (`fit`, `export`, `refit`)."""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any


def check_options(cls: type, given: dict[str, Any], fixed: set[str]) -> None:
    names = {f.name for f in dataclasses.fields(cls)} - fixed
    for key in given:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise TypeError(f"unknown option {key!r}{hint}; options: {', '.join(sorted(names))}")
