"""Many streams on one device: `rpol-edge run` with N sources, each run in its own process.

Three measurements, each a bounded run that stops by itself (``--max-frames`` per stream, and a
hard timeout), every `rpol-edge run` a fresh process of the CLI as a user starts it:

* ``mjpeg``: N = 1, 2, 4, 8 loopback MJPEG servers (``benchmarks/product/mjpeg_server.py``, one process
  each, 640x480 at 15 FPS): per-stream FPS, drops, latency p50/p95/p99, the batch sizes formed,
  and whether N was *held* (no frame dropped and every stream at >= 95 % of the servers' rate);
* ``files``: 1 and 4 video files (640x480) read as fast as they decode, interleaved rounds:
  aggregate throughput and the paired ratio 4 streams / 1 stream;
* ``kill``: ``--kill-streams`` servers (3), one killed with SIGKILL after ``--kill-at`` s and
  restarted ``--down`` s later on its port: the other streams' FPS before, during and after the
  gap (from the JSONL timestamps), the killed stream's drop and reconnect counts.

Also written: the stage model for each run (``model``): FPS per stream and in total that one frame
per slowest thread predicts, where the shared threads are inference (per batch, divided by the
frames in it), post + render and write, and each stream's own thread pair is capture and pre.

Usage: python -m benchmarks.product.multi_stream MODEL --images DIR [--runtime auto] [--threads 2]
       [--streams 1,2,4,8] [--seconds 20] [--rounds 3] [--only mjpeg,files,kill] --out FILE.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import cv2

from benchmarks.launch import module_command, repo_env

SIZE = (640, 480)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(images: Path, port: int, fps: float) -> subprocess.Popen[bytes]:
    cmd = module_command("benchmarks.product.mjpeg_server", "--images", str(images), "--port", str(port))
    proc = subprocess.Popen(
        [*cmd, "--fps", str(fps)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=repo_env()
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()  # printed once it listens
    if "serving" not in line:
        raise RuntimeError(f"MJPEG server on port {port} did not start: {line!r}")
    return proc


@contextlib.contextmanager
def servers(images: Path, n: int, fps: float) -> Iterator[list[tuple[int, subprocess.Popen[bytes]]]]:
    procs = []
    try:
        for _ in range(n):
            port = free_port()
            procs.append((port, start_server(images, port, fps)))
        yield procs
    finally:
        for _, p in procs:
            if p.poll() is None:
                p.terminate()
        for _, p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5)


def url(port: int) -> str:
    return f"http://127.0.0.1:{port}/stream.mjpg"


def run_cli(
    model: Path,
    sources: list[str],
    args: argparse.Namespace,
    tmp: Path,
    max_frames: int | None,
    timeout: float,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    summary, jsonl = tmp / "summary.json", tmp / "run.jsonl"
    cmd = [sys.executable, "-m", "rpol_edge", "run", str(model), "--runtime", args.runtime, "--device", "cpu"]
    cmd += [a for s in sources for a in ("--source", s)]
    cmd += ["--summary", str(summary), "--jsonl", str(jsonl), "--open-timeout", "20"]
    if max_frames:
        cmd += ["--max-frames", str(max_frames)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # a bounded run: stop it the way a user would
        _, err = proc.communicate(timeout=30)
    if not summary.exists():
        raise RuntimeError(f"run failed ({proc.returncode}): {err.decode()[-2000:]}")
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    return json.loads(summary.read_text()), records


def stage_model(s: dict[str, Any]) -> dict[str, float]:
    """One frame per slowest thread: total FPS is bounded by the shared threads, and each stream's
    FPS by its own capture + pre thread."""
    ms = {k: v["mean"] for k, v in s["stage_ms"].items()}
    batch = max(s["batch_size"].get("mean", 1.0), 1.0)
    shared = {"infer": ms["infer"] / batch, "render": ms["post"] + ms["render"], "write": ms["write"]}
    slowest = max(shared.values())
    per_stream = 1e3 / max(ms["capture"] + ms["pre"], 1e-6)
    n = len(s["streams"])
    total = min(1e3 / slowest if slowest else float("inf"), n * per_stream)
    return {
        "infer_ms_per_frame": round(shared["infer"], 3),
        "fps_total_if_overlapped": round(total, 2),
        "fps_per_stream_if_overlapped": round(total / n, 2),
    }


def brief(s: dict[str, Any]) -> dict[str, Any]:
    return {
        "frames": s["frames"],
        "mean_fps_total": s["mean_fps"],
        "dropped_frames": s["dropped_frames"],
        "batch_size": s["batch_size"],
        "latency_ms": s["latency_ms"],
        "stage_ms_mean": {k: v["mean"] for k, v in s["stage_ms"].items()},
        "streams": [
            {k: p[k] for k in ("stream", "ended_by", "frames", "dropped_frames", "mean_fps", "latency_ms")}
            for p in s["streams"]
        ],
        "model": stage_model(s),
        "runtime": s["runtime"],
    }


def measure_mjpeg(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for n in args.streams:
        with servers(args.images, n, args.fps) as procs, tempfile.TemporaryDirectory() as tmp:
            frames = int(args.fps * args.seconds)
            s, _ = run_cli(
                args.model, [url(p) for p, _ in procs], args, Path(tmp), frames, args.seconds * 3 + 60
            )
        row = {"streams": n, **brief(s)}
        worst = min(p["mean_fps"] for p in s["streams"])
        row["held"] = s["dropped_frames"] == 0 and worst >= 0.95 * args.fps
        rows.append(row)
        print(
            json.dumps(
                {
                    "mjpeg": n,
                    "held": row["held"],
                    "fps_total": s["mean_fps"],
                    "worst_stream_fps": worst,
                    "drops": s["dropped_frames"],
                    "batch": s["batch_size"],
                    "p50/p95": s["latency_ms"],
                }
            )
        )
    return rows


def write_video(images: Path, path: Path, frames: int, offset: int) -> None:
    paths = sorted(p for p in images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    read = [cv2.imread(str(p)) for p in paths[offset : offset + 40]]
    decoded = [cv2.resize(img, SIZE, interpolation=cv2.INTER_AREA) for img in read if img is not None]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 25.0, SIZE)
    for i in range(frames):
        writer.write(decoded[i % len(decoded)])
    writer.release()


def measure_files(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        videos = []
        for i in range(4):
            videos.append(Path(tmp) / f"v{i}.mp4")
            write_video(args.images, videos[-1], args.file_frames, 40 * i)
        rounds = []
        for r in range(args.rounds):
            row: dict[str, Any] = {"round": r}
            for n in (1, 4):  # interleaved: the VM's drift hits both alike
                out = Path(tmp) / f"r{r}n{n}"
                out.mkdir()
                s, records = run_cli(args.model, [str(v) for v in videos[:n]], args, out, None, 1200)
                assert len(records) == n * args.file_frames, (n, len(records))
                row[f"n{n}"] = brief(s)
            row["ratio_4_over_1"] = round(row["n4"]["mean_fps_total"] / row["n1"]["mean_fps_total"], 3)
            rounds.append(row)
            print(
                json.dumps(
                    {
                        "files_round": r,
                        "fps_1": row["n1"]["mean_fps_total"],
                        "fps_4": row["n4"]["mean_fps_total"],
                        "ratio": row["ratio_4_over_1"],
                    }
                )
            )
    ratios = sorted(r["ratio_4_over_1"] for r in rounds)
    return {
        "frames_per_file": args.file_frames,
        "rounds": rounds,
        "ratio_median": ratios[len(ratios) // 2],
        "ratio_min": ratios[0],
        "ratio_max": ratios[-1],
    }


def measure_kill(args: argparse.Namespace) -> dict[str, Any]:
    n, fps = args.kill_streams, args.fps
    with servers(args.images, n, fps) as procs, tempfile.TemporaryDirectory() as tmp:
        import threading

        marks: dict[str, float] = {}

        def outage() -> None:
            time.sleep(args.kill_at)
            port, proc = procs[1]
            marks["killed"] = time.time()
            proc.kill()  # SIGKILL: no goodbye on the socket
            proc.wait()
            time.sleep(args.down)
            procs[1] = (port, start_server(args.images, port, fps))
            marks["restarted"] = time.time()

        killer = threading.Thread(target=outage, daemon=True)
        killer.start()
        s, records = run_cli(args.model, [url(p) for p, _ in procs], args, Path(tmp), None, args.kill_seconds)
        killer.join()
    t_kill, t_back = marks["killed"], marks["restarted"]
    windows = {
        "before": (t_kill - 6, t_kill),
        "during": (t_kill + 0.5, t_back),
        "after": (t_back + 3, t_back + 9),
    }
    fps_by_window = {}
    for name, (a, b) in windows.items():
        per = {}
        for i in range(n):
            count = sum(1 for r in records if r["stream"] == i and a <= r["timestamp"] < b)
            per[i] = round(count / (b - a), 2)
        fps_by_window[name] = per
    killed = s["streams"][1]
    return {
        "kill_at_s": args.kill_at,
        "down_s": args.down,
        "fps_by_window": fps_by_window,
        "killed_stream": {
            k: killed[k] for k in ("stream_drops", "reconnects", "reconnect_attempts", "frames")
        },
        "others_dropped_frames": [p["dropped_frames"] for i, p in enumerate(s["streams"]) if i != 1],
        "others_stream_drops": [p["stream_drops"] for i, p in enumerate(s["streams"]) if i != 1],
        **brief(s),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--runtime", default="auto")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--streams", type=lambda t: [int(x) for x in t.split(",")], default=[1, 2, 4, 8])
    ap.add_argument("--fps", type=float, default=15.0)
    ap.add_argument("--seconds", type=float, default=20.0, help="mjpeg: seconds of frames per stream")
    ap.add_argument("--file-frames", type=int, default=120)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--kill-streams", type=int, default=3, help="kill: streams (one is killed)")
    ap.add_argument("--kill-at", type=float, default=8.0)
    ap.add_argument("--down", type=float, default=4.0)
    ap.add_argument("--kill-seconds", type=float, default=24.0)
    ap.add_argument("--only", default="mjpeg,files,kill")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    from rpol_edge.bench.runner import cpu_record

    rec: dict[str, Any] = {
        "date": date.today().isoformat(),
        "time": time.strftime("%H:%M UTC", time.gmtime()),
        "machine": cpu_record(),
        "cores": os.cpu_count(),
        "load_1min_start": os.getloadavg()[0],
        "command": " ".join(sys.argv),
        "model": str(args.model),
        "runtime": args.runtime,
        "threads": args.threads,
        "fps": args.fps,
    }
    parts = args.only.split(",")
    if "mjpeg" in parts:
        rec["mjpeg"] = measure_mjpeg(args)
    if "files" in parts:
        rec["files"] = measure_files(args)
    if "kill" in parts:
        rec["kill"] = measure_kill(args)
    rec["load_1min_end"] = os.getloadavg()[0]
    rec["load_1min_end"] = os.getloadavg()[0]
    args.out.write_text(json.dumps(rec, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
