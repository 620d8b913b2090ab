"""Host-side timing of per-frame post-processing: every call timed after untimed warm-up passes."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def timed(run: Callable[[int], object], n: int, repeats: int) -> np.ndarray:
    """ms of ``run(i)`` for every frame i, 3 untimed passes first, then ``repeats`` timed ones."""
    for _ in range(3):
        for i in range(n):
            run(i)
    ms = []
    for _ in range(repeats):
        for i in range(n):
            t0 = time.perf_counter()
            run(i)
            ms.append(1000 * (time.perf_counter() - t0))
    return np.array(ms)
