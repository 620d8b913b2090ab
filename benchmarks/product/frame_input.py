"""Raw frames in (``export --frame-size``) against the host pre-processing path: parity and host time.

    python -m benchmarks.product.frame_input --model m.rpol --root ../shared/data/raccoon \
        --out benchmarks/results/frame_input.json

Frames: the raccoon test photos stretched to W x H (bilinear) and in BGR, as a camera would hand
them over. Three ways to the same K x K map, all through ONNX Runtime (CPU):
  host    the live runner's host path: geometry.resize_crop (INTER_AREA when shrinking) + BGR->RGB,
          then the plain graph;
  host-linear  the same with INTER_LINEAR (what the graph computes), isolating the interpolation;
  graph   the raw frame into the --frame-size graph (resize, crop, BGR->RGB inside).
Reported: |d score| and boxes identical / IoU >= 0.9 of graph vs host and vs host-linear, and the
host milliseconds per frame of each path (``prepare.prepare``, what the live runner times as
``pre``), plus the inference time of both graphs. Timings on a shared 2-core VM are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.launch import REPO
from rpol_edge.core.files import write_text_atomic
from rpol_edge.runtimes import Output, Runtime, infer_all


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--root", type=Path, default=REPO.parent / "shared" / "data" / "raccoon")
    p.add_argument("--frame-size", default="1280x720")
    p.add_argument("--work", type=Path, default=Path("frame_input_work"))
    p.add_argument("--repeats", type=int, default=5, help="timing passes over the frames")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()

    import cv2

    from rpol_edge.core.export_formats import parse_frame_size
    from rpol_edge.data import read_dataset
    from rpol_edge.data.images import load_rgb

    w, h = parse_frame_size(args.frame_size)
    plain, raw = export_graphs(args.model, args.work, w, h)
    samples = read_dataset("voc", args.root, "test")
    frames = [
        np.ascontiguousarray(cv2.resize(load_rgb(s.path), (w, h), interpolation=cv2.INTER_LINEAR)[..., ::-1])
        for s in samples
    ]
    parity, timing = measure(plain, raw, frames, args.repeats)
    record = {
        "command": " ".join(sys.argv),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "loadavg_1m": os.getloadavg()[0],
        "frame_size": [w, h],
        "n": len(frames),
        **parity,
        **{k: round(v, 4) for k, v in timing.items()},
    }
    print_summary(parity, timing, w, h)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.out, json.dumps(record, indent=1))


def export_graphs(model: Path, work: Path, w: int, h: int) -> tuple[Path, Path]:
    """The plain graph and the raw-frame (--frame-size WxH, BGR) graph, exported once into ``work``."""
    from rpol_edge.exporters.onnx_export import export_onnx

    work.mkdir(parents=True, exist_ok=True)
    plain, raw = work / "model.onnx", work / f"model.{w}x{h}.onnx"
    if not plain.is_file():
        export_onnx(model, plain, batch=(1, 1, 1))
    if not raw.is_file():
        export_onnx(model, raw, batch=(1, 1, 1), frame=(w, h, "bgr"))
    return plain, raw


def host_linear(bgr: np.ndarray, resize: int, crop: int) -> np.ndarray:
    """The host path with INTER_LINEAR (what the graph computes): resize, centre crop, BGR->RGB."""
    import cv2

    x = cv2.resize(bgr, (resize, resize), interpolation=cv2.INTER_LINEAR)
    o = int(round((resize - crop) / 2.0))
    return cv2.cvtColor(np.ascontiguousarray(x[o : o + crop, o : o + crop]), cv2.COLOR_BGR2RGB)


def run_each(rt: Runtime, inputs: list[np.ndarray]) -> tuple[Output, list[float]]:
    """Every input alone through ``rt``: the outputs stacked, and ms per call."""
    outs, ms = [], []
    for x in inputs:
        t0 = time.perf_counter()
        outs.append(infer_all(rt, x[None]))
        ms.append((time.perf_counter() - t0) * 1e3)
    return Output(np.concatenate([o.score for o in outs]), np.concatenate([o.mask for o in outs])), ms


def host_ms(frames: list[np.ndarray], fn: Callable[[np.ndarray], object], repeats: int) -> float:
    """Median over ``repeats`` passes of the ms per frame ``fn`` takes."""
    per = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for f in frames:
            fn(f)
        per.append((time.perf_counter() - t0) * 1e3 / len(frames))
    return statistics.median(per)


def measure(
    plain: Path, raw: Path, frames: list[np.ndarray], repeats: int
) -> tuple[dict[str, Any], dict[str, float]]:
    """Parity of the raw-frame graph with both host paths, and the host and inference times."""
    from rpol_edge.core.geometry import resize_crop
    from rpol_edge.core.prepare import prepare
    from rpol_edge.evaluate.compare import agreement
    from rpol_edge.runtimes.ort_runtime import OrtRuntime

    with OrtRuntime(plain) as rt_plain, OrtRuntime(raw) as rt_raw:
        meta_p, meta_r = rt_plain.meta, rt_raw.meta
        host_in = [prepare(f, meta_p, is_rgb=False)[0] for f in frames]
        linear_in = [host_linear(f, meta_p.resize_size, meta_p.input_size) for f in frames]
        graph_in = [prepare(f, meta_r, is_rgb=False)[0] for f in frames]
        run_each(rt_plain, host_in[:3])  # warm-up
        run_each(rt_raw, graph_in[:3])
        out_host, ms_plain = run_each(rt_plain, host_in)
        out_linear, _ = run_each(rt_plain, linear_in)
        out_graph, ms_raw = run_each(rt_raw, graph_in)
        # The same frames again, through the shared transform: boxes in frame pixels must agree too.
        _, t = resize_crop(frames[0], meta_p.resize_size, meta_p.input_size)
        _, t_raw = prepare(frames[0], meta_r, is_rgb=False)
        assert t == t_raw, (t, t_raw)
        buf = np.empty_like(frames[0])
        timing = {
            "host_path_pre_ms": host_ms(frames, lambda f: prepare(f, meta_p, is_rgb=False), repeats),
            "graph_path_pre_ms": host_ms(frames, lambda f: prepare(f, meta_r, is_rgb=False), repeats),
            "frame_memcpy_ms": host_ms(frames, lambda f: np.copyto(buf, f), repeats),
            "infer_plain_ms_p50": statistics.median(ms_plain),
            "infer_raw_ms_p50": statistics.median(ms_raw),
        }
    pixels = [
        float(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())
        for a, b in zip(linear_in, [np.ascontiguousarray(g) for g in host_in], strict=True)
    ]
    parity = {
        "graph_vs_host": agreement(out_host, out_graph).to_dict(),
        "graph_vs_host_linear": agreement(out_linear, out_graph).to_dict(),
        "host_area_vs_linear_max_pixel_diff": max(pixels),
    }
    return parity, timing


def print_summary(parity: dict[str, Any], tm: dict[str, float], w: int, h: int) -> None:
    for name, key in (
        ("graph vs host (INTER_AREA)", "graph_vs_host"),
        ("graph vs host INTER_LINEAR", "graph_vs_host_linear"),
    ):
        a = parity[key]
        print(
            f"{name:28s} mean |d| {a['mean_abs_map']:.5f}  max |d| {a['max_abs_map']:.4f}  "
            f"boxes identical {a['boxes_identical']}/{a['n']}  IoU>=0.9 {a['boxes_iou_090']}/{a['n']}"
        )
    print(
        f"host ms per {w}x{h} frame: host path {tm['host_path_pre_ms']:.3f}, graph path "
        f"{tm['graph_path_pre_ms']:.4f} (a full frame memcpy {tm['frame_memcpy_ms']:.3f}); infer p50 "
        f"plain {tm['infer_plain_ms_p50']:.1f}, raw-frame graph {tm['infer_raw_ms_p50']:.1f}"
    )


if __name__ == "__main__":
    main()
