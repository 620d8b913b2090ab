"""The one benchmark: rows in their own processes, derived ratios, parity, outputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="the ort rows need the ort extra")

from rpol_edge.bench import report, runner, stats  # noqa: E402
from rpol_edge.bench import spec as bench_spec  # noqa: E402
from tests.conftest import SAMPLE  # noqa: E402


def test_spec_parsing(sample_onnx: Path) -> None:
    s = bench_spec.parse_spec(f"{sample_onnx}@runtime=ort,threads=1,cuda-graph=true")
    assert s.path == sample_onnx and s.options == {"runtime": "ort", "threads": 1, "cuda_graph": True}
    assert s.runtime == "ort" and s.label == "model.onnx@runtime=ort,threads=1,cuda-graph=true"
    with pytest.raises(ValueError, match="key=value"):
        bench_spec.parse_spec(f"{sample_onnx}@fp16")
    with pytest.raises(ValueError, match="no such file"):
        bench_spec.parse_spec("missing.onnx")
    # a path stays text
    assert bench_spec.parse_spec(f"{sample_onnx}@weights=2024").options == {"weights": "2024"}
    with pytest.raises(ValueError, match="whole number"):
        bench_spec.parse_spec(f"{sample_onnx}@threads=two")


def test_fixed_batch_is_a_row_with_its_reason(variants: dict[str, Path]) -> None:
    """A fixed-batch graph is not looped N times and called batch N: the row says why it is empty."""
    spec = bench_spec.Spec("model", variants["fp32-static"], {"device": "cpu"}, "m")
    row = runner.run_row({"spec": spec, "label": "m", "batch": 4, "images": [], "iters": 1, "warmup": 0})
    assert not row["available"] and "fixed at 1; export with --batch 1:4:8" in row["reason"]


def test_bench_rows_ratios_parity_outputs(sample_model: Path, sample_onnx: Path, tmp_path: Path) -> None:
    images = sorted((SAMPLE / "JPEGImages").iterdir())[:4]
    cfg = runner.BenchConfig(
        specs=[bench_spec.parse_spec(str(sample_model)), bench_spec.parse_spec(str(sample_onnx)),
               bench_spec.parse_spec(f"{sample_model}@precision=fp16")],
        images=images, batches=[2], iters=2, warmup=1, device="cpu", threads=1, work_dir=tmp_path / "w",
        eval_data="voc", eval_root=SAMPLE, eval_split="test",
    )  # fmt: skip
    rows = {r.label: r for r in runner.run_bench(cfg)}
    assert list(rows) == [
        "reference pipeline", "bare backbone, torch", "bare backbone, ort",
        "sample.rpol", "model.onnx", "sample.rpol@precision=fp16",
    ]  # fmt: skip
    fp16 = rows["sample.rpol@precision=fp16"]
    assert not fp16.available and "needs device=cuda" in fp16.reason  # a row with its reason
    for label, r in rows.items():
        if not r.available:
            continue
        assert r.batch == 2 and r.iters == 2, label
        assert set(r.ms) == {"pre", "infer", "post", "total"}, label
        assert 0 < r.ms["infer"]["p50"] <= r.ms["infer"]["p90"] <= r.ms["infer"]["p99"], label
        assert r.throughput > 0 and r.peak_rss_mb > 50 and r.speedup_vs_reference is not None, label
    assert rows["reference pipeline"].speedup_vs_reference == 1.0
    # a .rpol row needs its backbone: the MB column counts it, not only the small w* file
    assert rows["sample.rpol"].artifact_mb > 10 * sample_model.stat().st_size / 2**20 + 5
    assert rows["bare backbone, ort"].artifact.endswith("sample.backbone.onnx")
    # The fused graph's overhead is over the bare backbone of its own runtime.
    onnx_row, ref = rows["model.onnx"], rows["reference pipeline"]
    expected = onnx_row.ms["infer"]["p50"] / rows["bare backbone, ort"].ms["infer"]["p50"]
    assert onnx_row.overhead_vs_backbone == pytest.approx(expected, rel=1e-2)
    # Accuracy and parity with the reference on the 12 labelled sample test images.
    for r in (ref, onnx_row, rows["sample.rpol"]):
        assert r.accuracy["n_images"] == 12 and 0 <= r.accuracy["maxboxacc_v2_rpol"] <= 100
    assert ref.parity == {"max_abs_score": 0.0, "boxes_identical": 12, "boxes_iou_090": 12, "n": 12}
    assert onnx_row.parity["max_abs_score"] < 1e-3 and onnx_row.parity["boxes_iou_090"] >= 11
    # The reference pipeline thresholds on the host as the reference implementation does; the
    # fused graph must agree with it.
    assert onnx_row.accuracy["maxboxacc_v2"] == pytest.approx(ref.accuracy["maxboxacc_v2"], abs=8.34)
    assert not list((tmp_path / "w").glob("maps_*.npz"))  # scratch maps cleaned up

    all_rows = list(rows.values())
    md = report.to_markdown(all_rows, "cmd")
    assert "| reference pipeline | torch | fp32 | 2 |" in md and "n/a: InferenceError" in md
    assert "MaxBoxAccV2 (RPOL)" in md
    rec = report.record(all_rows, cfg, "rpol-edge bench ...")
    report.write_json(tmp_path / "r.json", rec)
    back = json.loads((tmp_path / "r.json").read_text())
    assert back["machine"]["cpu_count"] == os.cpu_count() and len(back["rows"]) == 6
    png = tmp_path / "p.png"
    report.plot(all_rows, png, "test")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_bench_cli_errors_are_one_line(sample_onnx: Path) -> None:
    from typer.testing import CliRunner

    from rpol_edge.cli.app import app

    r = CliRunner().invoke(app, ["bench", str(sample_onnx), "--batch", "0"])
    assert r.exit_code == 2 and "sizes must be >= 1" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["bench", f"{sample_onnx}@oops"])
    assert r.exit_code == 2 and "key=value" in r.output


def _part(p50_total: float, samples: list[float], available: bool = True) -> dict:
    """A child's record as run_row returns it: pre/post 0, infer = the given samples (s)."""
    row = stats.Row("m", "model", "ort", "fp32", 1, available=available, reason="" if available else "boom")
    d = row.to_dict()
    if available:
        d["ms"] = {"total": {"p50": p50_total}}
        d["iters"], d["peak_rss_mb"] = len(samples), 100.0 + p50_total
        d[stats.SAMPLES] = {"pre": [0.0] * len(samples), "infer": samples, "post": [0.0] * len(samples)}
    return d


def test_rounds_pool_samples_and_pair_speedups() -> None:
    """Quantiles come from all rounds' samples; speed-ups pair round k with round k."""
    merged = stats.merge_rounds([_part(10.0, [0.010, 0.012]), _part(20.0, [0.020, 0.030])])
    assert merged.rounds == 2 and merged.iters == 4 and merged.round_total_p50 == [10.0, 20.0]
    assert merged.ms["infer"]["p50"] == pytest.approx(16.0)  # median of 10, 12, 20, 30 ms
    assert merged.ms["total"]["p50"] == pytest.approx(16.0) and merged.peak_rss_mb == 120.0
    assert stats.SAMPLES not in merged.to_dict()
    assert not stats.merge_rounds([_part(10.0, [0.01]), _part(0.0, [], available=False)]).available
    base = stats.Row(
        "a", "model", "ort", "fp32", 1, ms={"total": {"p50": 30.0}}, round_total_p50=[20.0, 40.0, 30.0]
    )
    fast = stats.Row(
        "b", "model", "ort", "int8", 1, ms={"total": {"p50": 15.0}}, round_total_p50=[10.0, 25.0, 10.0]
    )
    # Per round 2.0, 1.6, 3.0: median 2.0 (the pooled p50s would say 2.0 too, by chance), range 1.6-3.0.
    assert stats.paired_speedup(base, fast) == (2.0, [1.6, 3.0])
    one = stats.Row("c", "model", "ort", "int8", 1, ms={"total": {"p50": 12.0}}, round_total_p50=[12.0])
    assert stats.paired_speedup(base, one) == (2.5, [])


def test_bench_rounds_run_each_row_in_new_processes(sample_onnx: Path, tmp_path: Path) -> None:
    images = sorted((SAMPLE / "JPEGImages").iterdir())[:2]
    cfg = runner.BenchConfig(
        specs=[bench_spec.parse_spec(str(sample_onnx)), bench_spec.parse_spec(f"{sample_onnx}@threads=1")],
        images=images, iters=3, warmup=1, device="cpu", reference=False, backbone=False,
        work_dir=tmp_path / "w", rounds=2,
    )  # fmt: skip
    stale = tmp_path / "w" / "maps_0_1.npz"  # an earlier, killed run's maps must not become parity
    stale.parent.mkdir(parents=True)
    np.savez(stale, score=np.zeros((1, 1, 2, 2), np.float32), mask=np.zeros((1, 1, 2, 2), np.uint8))
    first, second = runner.run_bench(cfg)
    assert not first.parity and not second.parity and not stale.exists()
    for r in (first, second):
        assert r.available and r.rounds == 2 and r.iters == 6 and len(r.round_total_p50) == 2
    assert first.speedup_vs_first is None and second.speedup_vs_first is not None
    ratios = [a / c for a, c in zip(first.round_total_p50, second.round_total_p50, strict=True)]
    lo, hi = second.speedup_vs_first_range
    assert (lo, hi) == (round(min(ratios), 3), round(max(ratios), 3))
    assert second.speedup_vs_first == round(float(np.median(ratios)), 3)
    md = report.to_markdown([first, second])
    assert "2 rounds" in md and f"{second.speedup_vs_first:.2f}x ({lo:.2f}-{hi:.2f})" in md
