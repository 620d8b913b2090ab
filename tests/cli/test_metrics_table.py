"""The metrics table's rows come from the library's result records, not from a second list."""

from __future__ import annotations

from typing import TypedDict

from rpol_edge.bench.stats import accuracy_keys
from rpol_edge.cli.metrics_table import METRIC_KEYS, TOPK_KEYS, metrics_table, scalar_fields
from rpol_edge.evaluate.metrics import BoxAccuracy, TopKLocResult


class _Record(TypedDict):
    n: int
    score: float
    label: str
    nested: dict[str, float]


def test_scalar_fields_keep_numbers_in_declared_order() -> None:
    assert scalar_fields(_Record) == ("n", "score")


def test_table_rows_are_the_accuracy_record_fields() -> None:
    result = dict(BoxAccuracy().result())
    numbers = [k for k, v in result.items() if isinstance(v, (int, float))]
    # the operating threshold is shown as the operating point's label, in the same row
    assert list(METRIC_KEYS) == ["operating_point" if k == "operating_threshold" else k for k in numbers]
    assert set(TOPK_KEYS) == set(TopKLocResult.__annotations__) - {"n_images"}
    table = metrics_table("metric", result | {"operating_point": "sign"})
    assert table.row_count == len(METRIC_KEYS)
    # eval names the oracle rows again (to place them beside the label-free result): once each
    from rpol_edge.cli.evaluate import ORACLE_KEYS

    assert set(ORACLE_KEYS) <= set(METRIC_KEYS)
    assert metrics_table("metric", result | {"operating_point": "sign"}, ORACLE_KEYS).row_count == len(
        METRIC_KEYS
    )


def test_bench_accuracies_are_the_record_percentages() -> None:
    assert accuracy_keys() == ("gt_known_loc", "maxboxacc", "maxboxacc_v2", "maxboxacc_v2_rpol")
