"""The one-command demo: fit on the bundled sample, evaluate, write overlays."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rpol_edge.data import read_dataset
from rpol_edge.data.sample import SAMPLE_ROOT
from rpol_edge.evaluate.evaluation import evaluate
from rpol_edge.fitting.fitter import FitConfig, Progress, fit
from rpol_edge.results.detection import predict_files
from rpol_edge.runtimes import open_runtime


@dataclass
class DemoResult:
    model: Path
    metrics: dict[str, Any]
    overlays: Path
    n_overlays: int


def run_demo(
    out_dir: Path, input_size: int = 448, workers: int = 2, progress: Progress | None = None
) -> DemoResult:
    """Fit w* on the sample's train split (no labels used), evaluate on its test split, draw overlays."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model = out_dir / "sample.rpol"
    result = fit(FitConfig("voc", SAMPLE_ROOT, "train", input_size=input_size, workers=workers), progress)
    result.artifact.save(model)
    with open_runtime(model, "torch") as rt:
        metrics = evaluate(rt, "voc", SAMPLE_ROOT, "test", workers=workers).metrics
        images = [s.path for s in read_dataset("voc", SAMPLE_ROOT, "test")]
        records, _ = predict_files(rt, images, out_dir / "overlays")
    return DemoResult(model, metrics, out_dir / "overlays", len(records))
