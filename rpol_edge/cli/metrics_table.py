"""The metrics table of `eval` and `demo`: its rows are the fields of the library's result records,
so a metric added there is shown here without being named twice."""

from __future__ import annotations

from typing import Any, get_type_hints

from rich.table import Table

from rpol_edge.evaluate.metrics import BoxAccuracyResult, TopKLocResult


def scalar_fields(record: type) -> tuple[str, ...]:
    """A result record's number fields, in their declared order (nested tables left out)."""
    return tuple(name for name, kind in get_type_hints(record).items() if kind in (int, float))


# The evaluation adds the operating point's label (``sign``, ``fixed 0.5``) beside its threshold;
# the table shows the label, which names the rule and, for a fixed one, the threshold too.
METRIC_KEYS = tuple(
    "operating_point" if key == "operating_threshold" else key for key in scalar_fields(BoxAccuracyResult)
)
TOPK_KEYS = tuple(key for key in scalar_fields(TopKLocResult) if key not in METRIC_KEYS)


def metrics_table(title: str, metrics: dict[str, Any], more: tuple[str, ...] = ()) -> Table:
    table = Table(title, "value")
    for key in dict.fromkeys(METRIC_KEYS + more):  # once each: ``more`` may name a metric field
        value = metrics[key]
        table.add_row(key, f"{value:.2f}" if isinstance(value, float) else str(value))
    return table
