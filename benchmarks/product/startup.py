"""Cold start without PyTorch: open the ONNX Runtime runtime and localize one frame, in a fresh process.

Each variant runs in its own child process, started cold, ``--repeats`` times in turn; the parent
reads the child's wall time (spawn to exit, interpreter start included) and its peak resident
memory (VmHWM, which the child reads at its exit: ``benchmarks.peak_memory``), and reports
medians:

- ``rpol_edge``: ``open_runtime(model, "ort", device="cpu")``, then one photo through the shared
  pre-processing (decode, resize, crop), the graph, and the shared post-processing (box);
  ``rpol_edge openvino``: the same through ``open_runtime(model, "openvino")`` (when installed).
- ``bare``: the same work written with onnxruntime + OpenCV only (the floor).
- ``cli predict``: the whole ``rpol-edge predict MODEL IMAGE -o DIR`` command (overlay PNG, JSON).

Targets: rpol_edge <= 0.6 s and <= 250 MB. Without ``--model`` the bundled sample is
fitted and exported at 448 first (needs the torch and onnx extras; the timed children never
import torch). Usage:

    python -m benchmarks.product.startup [--model exp/model.onnx] [--image IMG] [--repeats 7]
                                 [--out benchmarks/results/startup.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.peak_memory import AT_EXIT, reported_peak_mb
from rpol_edge.bench.runner import cpu_record
from rpol_edge.bench.stats import peak_rss_mb

SAMPLE = Path(__file__).resolve().parents[2] / "rpol_edge" / "sample"
TARGET_S, TARGET_MB = 0.6, 250.0

RPOL_EDGE = """
import json, sys, time
t0 = time.perf_counter()
from pathlib import Path
from typing import Any
from rpol_edge.core.geometry import resize_crop
from rpol_edge.data.images import load_rgb
from rpol_edge.results.detection import detect
from rpol_edge.runtimes import infer_all, open_runtime
t1 = time.perf_counter()
with open_runtime(Path(sys.argv[1]), sys.argv[3], device="cpu") as rt:
    t2 = time.perf_counter()
    frame, t = resize_crop(load_rgb(Path(sys.argv[2])), rt.meta.resize_size, rt.meta.input_size)
    out = infer_all(rt, frame[None])
    box = detect(out.score[0, 0], out.mask[0, 0], t).box
    t3 = time.perf_counter()
heavy = sorted(m for m in ("torch", "timm", "torchvision") if m in sys.modules)
print(json.dumps({"import_s": t1 - t0, "open_s": t2 - t1, "frame_s": t3 - t2, "box": box, "heavy": heavy,
                  "input_size": rt.meta.input_size}))
"""

BARE = """
import json, sys, time
t0 = time.perf_counter()
import cv2
import numpy as np
import onnxruntime as ort
t1 = time.perf_counter()
sess = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
meta = json.loads(sess.get_modelmeta().custom_metadata_map["rpol_edge"])
t2 = time.perf_counter()
resize, crop = meta["resize_size"], meta["input_size"]
image = cv2.cvtColor(cv2.imread(sys.argv[2]), cv2.COLOR_BGR2RGB)
h, w = image.shape[:2]
interp = cv2.INTER_AREA if resize < min(h, w) else cv2.INTER_LINEAR
o = (resize - crop) // 2
frame = cv2.resize(image, (resize, resize), interpolation=interp)[o : o + crop, o : o + crop]
score, mask = sess.run(["score", "mask"], {"frames": np.ascontiguousarray(frame)[None]})
contours, _ = cv2.findContours(mask[0, 0], cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
box = cv2.boundingRect(max(contours, key=cv2.contourArea)) if contours else None
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "open_s": t2 - t1, "frame_s": t3 - t2, "box": box, "heavy": []}))
"""


def child_run(name: str, argv: list[str], cwd: Path) -> dict[str, Any]:
    """The child's wall time (spawn to exit) and the peak memory it reports at exit (``AT_EXIT``).

    It runs in ``cwd`` (a scratch folder): ``python -c`` puts the working folder first on sys.path,
    and the package measured must be the installed one (or PYTHONPATH's), not a checkout nearby.
    """
    start = time.perf_counter()
    proc = subprocess.run(with_peak(argv), capture_output=True, text=True, cwd=cwd)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed ({proc.returncode}): {proc.stderr[-400:]}")
    record: dict[str, Any] = {"wall_s": wall, "peak_mb": reported_peak_mb(proc.stderr)}
    lines = proc.stdout.strip().splitlines()
    if lines and lines[-1].startswith("{"):
        record.update(json.loads(lines[-1]))
    return record


def with_peak(argv: list[str]) -> list[str]:
    """``python -c CODE args`` with ``AT_EXIT`` run first, so the child reports its peak at exit."""
    py, flag, code, *rest = argv
    return [py, flag, AT_EXIT + code, *rest]


BUILD = """
import sys
from pathlib import Path
from typing import Any
from rpol_edge.exporters.onnx_export import export_onnx
from rpol_edge.fitting.fitter import FitConfig, fit
sample, folder = Path(sys.argv[1]), Path(sys.argv[2])
fit(FitConfig("voc", sample, "train", input_size=448, workers=0)).artifact.save(folder / "sample.rpol")
export_onnx(folder / "sample.rpol", folder / "model.onnx")
"""


def build_sample_model(folder: Path) -> Path:
    """Fit on the bundled sample at 448 and export the ONNX graph, in a child process: this
    process stays small (no torch here; its own peak is recorded)."""
    subprocess.run([sys.executable, "-c", BUILD, str(SAMPLE), str(folder)], check=True, cwd=folder)
    return folder / "model.onnx"


def openvino_installed() -> bool:
    """Asked without importing it here (this process must stay small)."""
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


def median(rows: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(float(r[key]) for r in rows if key in r))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, help="ONNX file (default: fit + export the bundled sample)")
    ap.add_argument("--image", type=Path, default=SAMPLE / "JPEGImages" / "raccoon-100.jpg")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/startup.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model.resolve() if args.model else build_sample_model(Path(tmp))
        image = args.image.resolve()
        py = sys.executable
        variants = {
            "rpol_edge": [py, "-c", RPOL_EDGE, str(model), str(image), "ort"],
            "bare": [py, "-c", BARE, str(model), str(image)],
            "cli predict": [
                py,
                "-c",
                "from rpol_edge.cli.app import main; main()",
                "predict",
                str(model),
                str(image),
                "-o",
                str(Path(tmp) / "pred"),
            ],
        }
        if openvino_installed():
            variants["rpol_edge openvino"] = [py, "-c", RPOL_EDGE, str(model), str(image), "openvino"]
        parent_mb = peak_rss_mb()
        load_before = os.getloadavg()[0]
        rows: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
        for _ in range(args.repeats):  # interleaved, so machine noise hits every variant alike
            for name, argv in variants.items():
                rows[name].append(child_run(name, argv, Path(tmp)))
    summary: dict[str, dict[str, Any]] = {}
    for name, runs in rows.items():
        summary[name] = {
            "wall_s_median": median(runs, "wall_s"),
            "peak_mb_median": median(runs, "peak_mb"),
            **{f"{k}_median": median(runs, k) for k in ("import_s", "open_s", "frame_s") if k in runs[0]},
        }
        if "heavy" in runs[0]:
            summary[name]["imported_torch_or_timm"] = sorted({m for r in runs for m in r["heavy"]})
    ours = summary["rpol_edge"]
    ov = summary.get("rpol_edge openvino")
    record = {
        "model": str(args.model or "bundled sample, fitted + exported at 448"),
        "input_size": rows["rpol_edge"][0]["input_size"],
        "image": str(args.image),
        "repeats": args.repeats,
        "parent_peak_mb": parent_mb,
        "load_avg_1min": [load_before, os.getloadavg()[0]],
        "machine": f"{os.cpu_count()} CPU cores, {platform.machine()}, Python {platform.python_version()}",
        "targets": {"wall_s": TARGET_S, "peak_mb": TARGET_MB},
        "meets_targets": ours["wall_s_median"] <= TARGET_S and ours["peak_mb_median"] <= TARGET_MB,
        "openvino_meets_targets": (
            ov["wall_s_median"] <= TARGET_S and ov["peak_mb_median"] <= TARGET_MB if ov else None
        ),
        "cpu": cpu_record()["cpu"],
        "variants": summary,
        "runs": rows,
    }
    print(f"{'variant':18s} {'wall s':>7s} {'peak MB':>8s} {'import s':>9s} {'open s':>7s} {'frame s':>8s}")
    for name, s in summary.items():
        parts = [f"{s.get(f'{k}_median', float('nan')):9.3f}" for k in ("import_s", "open_s", "frame_s")]
        print(f"{name:18s} {s['wall_s_median']:7.3f} {s['peak_mb_median']:8.1f} {' '.join(parts)}")
    load = f"{load_before:.1f} -> {os.getloadavg()[0]:.1f}"
    print(f"machine load (1-min average) {load} on {os.cpu_count()} cores")
    print(
        f"targets: <= {TARGET_S} s, <= {TARGET_MB:.0f} MB (rpol_edge row): "
        f"{'met' if record['meets_targets'] else 'NOT met'}; torch/timm imported: "
        f"{ours.get('imported_torch_or_timm') or 'no'}"
    )
    from rpol_edge.core.files import write_text_atomic  # only now: this process stays small while timing

    write_text_atomic(args.out, json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
