"""The GPU check's JSON record and clock: each section runs under ``Check.section``, the record is
rewritten (atomically) after every section, so a run killed at its time limit keeps what it measured."""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rpol_edge.core.files import write_text_atomic


class Check:
    """The JSON record and the clock: each section is a function run under ``section``."""

    def __init__(self, out: Path, budget_s: float) -> None:
        self.out = out
        self.t0 = time.perf_counter()
        self.deadline = self.t0 + budget_s
        self.rec: dict[str, Any] = {"sections": {}, "errors": {}}

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def section(self, name: str, body: Callable[[], Any], need_s: float = 0.0) -> Any:
        """Run ``body``; its return value (JSON-able) goes under ``name``. Errors are recorded.
        A section that needs ``need_s`` > 0 seconds is skipped when less of the budget is left."""
        if need_s > 0 and self.left() < need_s:
            self.rec["sections"][name] = (
                f"skipped: {self.left():.0f} s of the budget left, needs ~{need_s:.0f}"
            )
            print(f"[{name}] skipped (budget)", flush=True)
            self.save()
            return None
        t = time.perf_counter()
        print(f"[{name}] ...", flush=True)
        try:
            value = body()
        except Exception as exc:  # noqa: BLE001 - recorded; the next section still runs
            self.rec["errors"][name] = f"{type(exc).__name__}: {exc}"
            self.rec["sections"][name] = "error"
            traceback.print_exc()
            value = None
        else:
            if value is not None and not isinstance(value, np.ndarray):  # data stays out of the record
                self.rec[name] = value
            self.rec["sections"][name] = f"ok in {time.perf_counter() - t:.1f} s"
        print(f"[{name}] {self.rec['sections'][name]}", flush=True)
        self.save()
        return value

    def save(self) -> None:
        self.rec["elapsed_s"] = round(time.perf_counter() - self.t0, 1)
        write_text_atomic(self.out, json.dumps(self.rec, indent=1, default=str))
