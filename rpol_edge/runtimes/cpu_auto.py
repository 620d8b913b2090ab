"""Which installed runtime ``--runtime auto`` runs an ``.onnx`` graph on, on a CPU: chosen per CPU
family, by what was measured on one, never assumed to hold on another.

OpenVINO and ONNX Runtime take turns at the top depending on the CPU's integer-matrix units:
OpenVINO's INT8 kernels use AMX where the CPU has it, and there OpenVINO was the faster; on an AMD
EPYC (AVX-512 VNNI, no AMX) ONNX Runtime was. A CPU family with no row of its own takes the row
for "no AMX" (the measured case closest to it). FP32 graphs have no rule: OpenVINO at exact f32 was
not faster on either CPU (docs/runtimes.md), so they stay on ONNX Runtime.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
"""Where the CPU's model name and flags are read (Linux); elsewhere no flags, so no AMX."""

NAMES = {"openvino": "OpenVINO", "ort": "onnxruntime"}


@dataclass(frozen=True)
class CpuRule:
    """One CPU family's measured choice for one graph precision."""

    family: str
    """The family in words, for the log line: ``AMX``, ``no AMX``."""
    flag: str | None
    """The ``/proc/cpuinfo`` flag that puts a CPU in this family; None: every CPU without one of
    the other rows' flags."""
    runtime: str
    """The registry name of the faster runtime: ``openvino`` or ``ort``."""
    other: str
    """The runtime it was measured against."""
    speedup: float
    """How many times faster ``runtime`` ran the graph than ``other`` (ms per frame, batch 1)."""
    measured_on: str
    """The CPU it was measured on, in a few words."""
    record: str
    """The measurement: the benchmark record in the repository (its command, date, CPU, numbers)."""

    def reason(self, cpu: str, precision: str) -> str:
        """The one log line that says what was chosen and why."""
        return (
            f"auto: {NAMES[self.runtime]} for {precision.upper()} on {cpu or 'this CPU'} ({self.family}): "
            f"measured {self.speedup:.2f}x faster than {NAMES[self.other]} on {self.measured_on}, "
            f"{self.record} (another: --runtime NAME, runtime=NAME in Python)"
        )


CPU_AUTO: dict[str, tuple[CpuRule, ...]] = {
    "int8": (
        CpuRule(
            "AMX", "amx_int8", "openvino", "ort", 1.24, "an Intel Xeon with AMX",
            # Lite0 448, batch 1: 7.75 against 9.62 ms, 2026-12-03
            "benchmarks/results/ladder.json",
        ),
        CpuRule(
            "no AMX", None, "ort", "openvino", 1.29, "an AMD EPYC (Zen 4, AVX-512 VNNI)",
            # Lite0 448, batch 1, 2 threads: 10.34 against 13.34 ms, 2026-12-02
            "benchmarks/results/cpu_batch_threads.json",
        ),
    ),
}  # fmt: skip
"""Graph precision -> its rows, first match wins (a row with a flag before the catch-all)."""


def cpu_rule(precision: str, flags: Iterable[str]) -> CpuRule | None:
    """The row for a graph of this precision on a CPU with these flags; None: no rule (ONNX
    Runtime, said by no line: it is the runtime for ``.onnx`` files)."""
    have = set(flags)
    rows = CPU_AUTO.get(precision, ())
    return next((r for r in rows if r.flag is None or r.flag in have), None)


def this_cpu(cpuinfo: Path | None = None) -> tuple[str, frozenset[str]]:
    """The CPU's model name and flags from ``/proc/cpuinfo`` (empty where it cannot be read)."""
    try:
        text = (cpuinfo or CPUINFO).read_text()
    except OSError:
        return "", frozenset()
    fields = [line.split(":", 1) for line in text.splitlines() if ":" in line]
    model = next((v.strip() for k, v in fields if k.strip() == "model name"), "")
    flags = next((v.split() for k, v in fields if k.strip() == "flags"), [])
    return model, frozenset(flags)
