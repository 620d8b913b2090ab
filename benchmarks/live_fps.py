"""End-to-end FPS of `rpol-edge run` on a video file made from real photos.

Writes a 640x480 MP4 (one photo per frame, cycled), runs the CLI on it headless and prints the
run's summary record (mean FPS, p50/p95 latency, per-stage ms) as one JSON line.
Usage: python benchmarks/live_fps.py MODEL --images DIR [--frames 150] [--runtime auto] [--save]
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

import cv2

from rpol_edge.images import is_image_path, load_rgb
from rpol_edge.inspect import read_meta


def write_video(images: list[Path], path: Path, frames: int, size: tuple[int, int] = (640, 480)) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, size)
    decoded = [cv2.resize(cv2.cvtColor(load_rgb(p), cv2.COLOR_RGB2BGR), size) for p in images[:50]]
    for i in range(frames):
        writer.write(decoded[i % len(decoded)])
    writer.release()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--runtime", default="auto")
    ap.add_argument("--save", action="store_true", help="also write the annotated video and JSONL")
    ap.add_argument("--threads", type=int, default=None, help="inference threads (CPU runtimes)")
    args = ap.parse_args()
    images = sorted(p for p in args.images.iterdir() if is_image_path(p))
    with tempfile.TemporaryDirectory() as tmp:
        video, summary = Path(tmp) / "in.mp4", Path(tmp) / "summary.json"
        write_video(images, video, args.frames)
        cmd = [sys.executable, "-m", "rpol_edge.cli", "run", str(args.model), "--source", str(video),
               "--runtime", args.runtime, "--summary", str(summary)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        if args.save:
            cmd += ["--save", str(Path(tmp) / "out.mp4"), "--jsonl", str(Path(tmp) / "out.jsonl")]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rec = json.loads(summary.read_text())
    keep = ("runtime", "frames", "mean_fps", "latency_ms", "stage_ms")
    where = {"machine": machine(), "input_size": read_meta(args.model).input_size, "threads": args.threads}
    print(json.dumps({"model": str(args.model), "save": args.save, **where, **{k: rec[k] for k in keep}}))


def machine() -> str:
    """The GPU's name when torch sees one, else the CPU count and architecture."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"{os.cpu_count()} CPU cores, {platform.machine()}"


if __name__ == "__main__":
    main()
