"""End-to-end FPS of the live pipeline on a video file made from real photos, against its stages.

Writes a 640x480 MP4 (one photo per frame, cycled), runs the pipeline on it headless (``--save``:
also an annotated MP4 and a JSONL, so drawing and video encoding are real work) and prints one JSON
line: the run's summary (mean FPS, latency, per-stage ms) and what the stages predict:
``fps_if_serial`` = 1000 / (sum of the stage means), ``fps_if_overlapped`` = 1000 / (the slowest
thread's mean), where the threads are the pipeline's (capture | pre | infer | post+render | write),
and ``fps_if_three_threads`` for the earlier layout (capture | pre+infer+post | render+write).
``--subprocess`` runs the `rpol-edge run` CLI instead of the library (same pipeline, plus startup).

Usage: python -m benchmarks.product.live_fps MODEL --images DIR [--frames 150] [--size 640x480] [--save]
       [--runtime auto] [--device auto] [--threads N] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import cv2

from rpol_edge.core.model_file import read_meta
from rpol_edge.data.images import is_image_path, load_rgb
from rpol_edge.runtimes import Runtime

THREAD_STAGES = {
    "capture": ("capture",),
    "pre": ("pre",),
    "infer": ("infer",),
    "render": ("post", "render"),
    "write": ("write",),
}
"""The pipeline's threads and the per-frame stages each one runs (rpol_edge/live/stages.py)."""

THREE_THREADS = {"capture": ("capture",), "infer": ("pre", "infer", "post"), "output": ("render", "write")}
"""The layout before (for comparison): pre/post on the inference thread, drawing with the writing."""


def write_video(images: list[Path], path: Path, frames: int, size: tuple[int, int] = (640, 480)) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 25.0, size)
    decoded = [cv2.resize(cv2.cvtColor(load_rgb(p), cv2.COLOR_RGB2BGR), size) for p in images[:50]]
    for i in range(frames):
        writer.write(decoded[i % len(decoded)])
    writer.release()


def stage_model(stage_ms: dict[str, dict[str, float]]) -> dict[str, Any]:
    """FPS the stage means predict for a serial pipeline and for a fully overlapped one."""
    means = {s: v["mean"] for s, v in stage_ms.items()}
    per_thread = {t: round(sum(means.get(s, 0.0) for s in stages), 3) for t, stages in THREAD_STAGES.items()}
    total = sum(means.values())
    slowest = max(per_thread, key=lambda t: per_thread[t])
    old = max(sum(means.get(s, 0.0) for s in stages) for stages in THREE_THREADS.values())
    return {
        "thread_ms_mean": per_thread,
        "slowest_thread": slowest,
        "fps_if_serial": round(1e3 / total, 2) if total else 0.0,
        "fps_if_overlapped": round(1e3 / per_thread[slowest], 2) if per_thread[slowest] else 0.0,
        "fps_if_three_threads": round(1e3 / old, 2) if old else 0.0,
    }


def measure_in_process(
    rt: Runtime, images: list[Path], frames: int, save: bool, size: tuple[int, int] = (640, 480)
) -> dict[str, Any]:
    """Run the pipeline on a fresh MP4 with ``rt`` (not yet entered); the summary and the stage model."""
    from rpol_edge.live.launch import run_live
    from rpol_edge.live.outputs import JsonlSink, Sink, VideoSink
    from rpol_edge.live.source_registry import parse_source

    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "in.mp4"
        write_video(images, video, frames, size)
        sinks: list[Sink] = []
        if save:
            sinks = [VideoSink(Path(tmp) / "out.mp4"), JsonlSink(Path(tmp) / "out.jsonl")]
        with rt:
            summary = run_live(rt, parse_source(str(video)), sinks).to_dict()
    return record(summary, save)


def record(summary: dict[str, Any], save: bool) -> dict[str, Any]:
    keep = ("runtime", "frames", "mean_fps", "latency_ms", "stage_ms")
    return {"save": save, **{k: summary[k] for k in keep}, **stage_model(summary["stage_ms"])}


def measure_cli(args: argparse.Namespace, images: list[Path]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        video, summary = Path(tmp) / "in.mp4", Path(tmp) / "summary.json"
        write_video(images, video, args.frames, args.size)
        cmd = [
            sys.executable,
            "-m",
            "rpol_edge",
            "run",
            str(args.model),
            "--source",
            str(video),
            "--runtime",
            args.runtime,
            "--device",
            args.device,
            "--summary",
            str(summary),
        ]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        if args.save:
            cmd += ["--save", str(Path(tmp) / "out.mp4"), "--jsonl", str(Path(tmp) / "out.jsonl")]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return record(json.loads(summary.read_text()), args.save)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--size", type=parse_size, default=(640, 480), help="video frame size WxH")
    ap.add_argument("--runtime", default="auto")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--save", action="store_true", help="also write the annotated video and JSONL")
    ap.add_argument("--threads", type=int, default=None, help="inference threads (CPU runtimes)")
    ap.add_argument("--subprocess", action="store_true", help="run the rpol-edge CLI, not the library")
    ap.add_argument("--json-out", type=Path, help="append the record here as one JSON line")
    args = ap.parse_args()
    images = sorted(p for p in args.images.iterdir() if is_image_path(p))
    if args.subprocess:
        rec = measure_cli(args, images)
    else:
        from rpol_edge.runtimes import open_runtime

        rt = open_runtime(args.model, args.runtime, device=args.device, threads=args.threads)
        rec = measure_in_process(rt, images, args.frames, args.save, args.size)
    where = {
        "machine": machine(),
        "input_size": read_meta(args.model).input_size,
        "threads": args.threads,
        "frame_size": "x".join(map(str, args.size)),
    }
    line = json.dumps({"model": str(args.model), **where, **rec})
    print(line)
    if args.json_out:
        with open(args.json_out, "a") as fh:
            fh.write(line + "\n")


def parse_size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    if not (w.isdigit() and h.isdigit()) or int(w) < 16 or int(h) < 16:
        raise argparse.ArgumentTypeError(f"frame size {text!r}: expected WxH, e.g. 1280x720")
    return int(w), int(h)


def machine() -> str:
    """The GPU's name when torch sees one, else the CPU count and architecture."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return f"{os.cpu_count()} CPU cores, {platform.machine()}"


if __name__ == "__main__":
    main()
