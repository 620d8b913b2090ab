"""Serving on Triton (``rpol-edge serve``) measured on loopback: correctness, load, faults.

    python -m benchmarks.product.serve_load MODEL.onnx --root DATA/raccoon \
        --out benchmarks/results/serve_load.json

MODEL.onnx: a graph exported with a batch range (``rpol-edge export M.rpol --batch 1:4:8``).

* correctness: the boxes of the served model against a local run of the same file (the same
  runtime), on the VOC ``test`` split, over HTTP and gRPC;
* load: 1, 4 and 16 concurrent HTTP clients sending 640x480 frames, a fixed total count, with
  dynamic batching on (``--max-batch 8``) and off (``--max-batch 1``): throughput, p50/p99 latency,
  and the batch sizes Triton formed (its statistics endpoint, before/after difference);
* faults: malformed requests, clients killed mid-request, and the server SIGKILLed under load
  (every request must end within its timeout; sent = answered + failed), then a restart.

Every loop is bounded in count and time and stops by itself; only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rpol_edge.bench.runner import machine_record
from rpol_edge.core.files import write_text_atomic
from rpol_edge.data.images import load_rgb
from rpol_edge.integrations.triton.remote_model import RemoteModel, binary_infer_body
from rpol_edge.integrations.triton.server import ServeConfig, TritonServer, free_ports
from rpol_edge.integrations.triton.server_env import ServeError
from rpol_edge.results.detection import detect_images
from rpol_edge.runtimes import open_runtime


def config(model: Path, ports: list[int], max_batch: int) -> ServeConfig:
    return ServeConfig(
        model,
        http_port=ports[0],
        grpc_port=ports[1],
        metrics_port=ports[2],
        max_batch=max_batch,
        device="cpu",
        exit_timeout_s=10,
    )


def test_photos(root: Path) -> list[Path]:
    names = (root / "ImageSets" / "Main" / "test.txt").read_text().split()
    return [root / "JPEGImages" / f"{n}.jpg" for n in names]


def correctness(model: Path, server: TritonServer, photos: list[Path]) -> dict[str, Any]:
    images = [load_rgb(p) for p in photos]
    with open_runtime(model, device="cpu") as rt:
        local = [d for d, _, _ in detect_images(rt, images)]
    out: dict[str, Any] = {"images": len(images)}
    for url in (server.cfg.http_url, server.cfg.grpc_url):
        with RemoteModel(url) as remote:
            served = [remote.detect(im) for im in images]
        same = sum(a.box == b.box and a.score == b.score for a, b in zip(local, served, strict=True))
        out[url.split(":")[0]] = {"identical": same, "different": len(images) - same}
    return out


def batch_counts(server: TritonServer) -> dict[int, int]:
    stats = server.statistics()["model_stats"][0]
    return {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in stats.get("batch_stats", [])}


def load(
    server: TritonServer, frame: np.ndarray, clients: int, total: int, timeout_s: float
) -> dict[str, Any]:
    per = total // clients
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    start_gate = threading.Barrier(clients + 1)

    def run() -> None:
        with RemoteModel(server.cfg.http_url, timeout_s=timeout_s) as remote:
            remote.detect(frame)  # connection and warm-up, outside the timed part
            start_gate.wait()
            for _ in range(per):
                t0 = time.perf_counter()
                try:
                    remote.detect(frame)
                    with lock:
                        latencies.append(time.perf_counter() - t0)
                except ServeError as exc:
                    with lock:
                        failures.append(str(exc))

    before = batch_counts(server)
    threads = [threading.Thread(target=run) for _ in range(clients)]
    for t in threads:
        t.start()
    start_gate.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    after = batch_counts(server)
    formed = {
        k: after.get(k, 0) - before.get(k, 0) for k in sorted(after) if after.get(k, 0) - before.get(k, 0)
    }
    ms = np.array(latencies) * 1000
    return {
        "clients": clients,
        "requests": per * clients,
        "answered": len(latencies),
        "failed": len(failures),
        "wall_s": round(wall, 3),
        "throughput_fps": round(len(latencies) / wall, 2),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "batches_formed": formed,  # batch size -> executions (warm-up requests included)
    }


def malformed_post(server: TritonServer) -> Any:
    return malformed(server, probe_only=True)


def malformed(server: TritonServer, probe_only: bool = False) -> Any:
    import urllib.error
    import urllib.request

    url = server.cfg.http_url + "/v2/models/rpol/infer"

    def post(
        shape: list[int],
        payload: bytes,
        dtype: str = "UINT8",
        size: int | None = None,
        ctype: str = "application/octet-stream",
    ) -> int:
        body, headers = binary_infer_body(shape, payload, dtype, size)
        req = urllib.request.Request(url, body, headers | {"Content-Type": ctype})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except (urllib.error.URLError, ConnectionError):
            return -1  # the server closed the connection (Triton's HTTP request size limit)

    if probe_only:
        return post
    f = np.zeros((1, 480, 640, 3), np.uint8)
    big = np.zeros((1, 5773, 8661, 3), np.uint8)
    cases = {
        "wrong dtype": post([1, 480, 640, 3], f.astype(np.float32).tobytes(), "FP32"),
        "wrong shape": post([1, 480, 640, 4], np.zeros((1, 480, 640, 4), np.uint8).tobytes()),
        "truncated body": post([1, 480, 640, 3], f.tobytes()[:5000], size=f.nbytes),
        "0-byte frame": post([1, 0, 0, 3], b""),
        "50 MP frame": post(list(big.shape), big.tobytes()),
        "good after all": post([1, 480, 640, 3], f.tobytes()),
    }
    with RemoteModel(server.cfg.grpc_url, timeout_s=60) as remote:
        try:
            remote.detect(big[0])
            grpc_50mp = "answered"
        except ServeError as exc:
            grpc_50mp = str(exc)
        served = remote.detect(f[0]) is not None
    return {
        "http_status": cases,
        "grpc_50mp": grpc_50mp,
        "errors": sum(c >= 400 or c == -1 for k, c in cases.items() if k != "good after all"),
        "served_after": cases["good after all"] == 200 and served,
    }


KILLED_CLIENT = r"""
import json, os, signal, socket, sys
port, mode = int(sys.argv[1]), sys.argv[2]
body = bytes(480 * 640 * 3)
head = json.dumps({"inputs": [{"name": "frames", "shape": [1, 480, 640, 3], "datatype": "UINT8",
                               "parameters": {"binary_data_size": len(body)}}]}).encode()
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"POST /v2/models/rpol/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
          b"Inference-Header-Content-Length: %d\r\n\r\n" % (len(head) + len(body), len(head)))
s.sendall(head + (body[: len(body) // 2] if mode == "half" else body))
os.kill(os.getpid(), signal.SIGKILL)
"""


def killed_clients(server: TritonServer, frame: np.ndarray) -> dict[str, Any]:
    codes = []
    for mode in ["half", "full"] * 4:  # killed while sending the body / while waiting for the answer
        p = subprocess.run([sys.executable, "-c", KILLED_CLIENT, str(server.cfg.http_port), mode], timeout=30)
        codes.append(p.returncode)
    with RemoteModel(server.cfg.http_url, timeout_s=10) as remote:
        t0 = time.perf_counter()
        answered = sum(remote.detect(frame) is not None for _ in range(8))
        after_s = time.perf_counter() - t0
    return {
        "killed": len(codes),
        "killed_with": sorted(set(codes)),
        "answered_after": answered,
        "after_8_requests_s": round(after_s, 3),
    }


def sigkill_under_load(
    cfg: ServeConfig, frame: np.ndarray, clients: int = 8, per: int = 30, timeout_s: float = 10.0
) -> dict[str, Any]:
    server = TritonServer(cfg).start()
    answered = [0] * clients
    failed = [0] * clients
    longest = [0.0] * clients

    def run(i: int) -> None:
        with RemoteModel(cfg.http_url, timeout_s=timeout_s) as remote:
            for _ in range(per):
                t0 = time.perf_counter()
                try:
                    remote.detect(frame)
                    answered[i] += 1
                except ServeError:
                    failed[i] += 1
                    time.sleep(0.05)
                longest[i] = max(longest[i], time.perf_counter() - t0)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    assert server.proc is not None
    pid = server.proc.pid
    os.kill(pid, signal.SIGKILL)
    killed_at = time.perf_counter()
    for t in threads:
        t.join(per * (timeout_s + 1))
    hung = sum(t.is_alive() for t in threads)
    server.kill()
    # The backend stubs notice their parent is gone and exit; their workers then see the pipe close.
    pattern = f"rpol_edge.integrations.triton.worker --model {Path(cfg.model).resolve()}"
    t_gone = time.perf_counter()
    while time.perf_counter() - t_gone < 30:
        left = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
        if not left:
            break
        time.sleep(0.25)
    workers_gone_s = time.perf_counter() - t_gone
    t0 = time.perf_counter()
    restarted = TritonServer(cfg).start()
    try:
        with RemoteModel(cfg.http_url, timeout_s=timeout_s) as remote:
            served = remote.detect(frame) is not None
    finally:
        restarted.stop()
    return {
        "clients": clients,
        "sent": clients * per,
        "answered": sum(answered),
        "failed": sum(failed),
        "adds_up": sum(answered) + sum(failed) == clients * per,
        "hung_clients": hung,
        "longest_request_s": round(max(longest), 3),
        "request_timeout_s": timeout_s,
        "workers_left_after_kill": len(left),
        "workers_gone_after_s": round(workers_gone_s, 2),
        "restart_s": round(time.perf_counter() - t0, 2),
        "served_after_restart": served,
        "killed_after_s": 2.0,
        "drain_s": round(time.perf_counter() - killed_at, 2),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("model", type=Path)
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--total", type=int, default=96, help="requests per load row")
    args = p.parse_args()
    photos = test_photos(args.root)
    frame = np.ascontiguousarray(cv2.resize(load_rgb(photos[0]), (640, 480), interpolation=cv2.INTER_AREA))
    ports = free_ports(3)
    record: dict[str, Any] = {
        "command": "python " + " ".join(sys.argv),
        "time": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_record(with_torch=False),
        "model": str(args.model),
    }
    rows = []
    for max_batch in (8, 1):
        t0 = time.perf_counter()
        with TritonServer(config(args.model, ports, max_batch)) as server:
            startup = time.perf_counter() - t0
            if max_batch == 8:
                record["startup_s"] = round(startup, 2)
                record["correctness"] = correctness(args.model, server, photos)
                record["malformed"] = malformed(server)
                record["killed_clients"] = killed_clients(server, frame)
            for clients in (1, 4, 16):
                row = {
                    "dynamic_batching": max_batch > 1,
                    "max_batch": max_batch,
                    **load(server, frame, clients, args.total, 60.0),
                }
                print(json.dumps(row), flush=True)
                rows.append(row)
    record["load"] = rows
    with open_runtime(args.model, device="cpu") as rt:  # the local pipeline for the same frame
        times = []
        for _ in range(30):
            t0 = time.perf_counter()
            detect_images(rt, [frame])
            times.append(time.perf_counter() - t0)
    record["local_pipeline_ms_p50"] = round(float(np.median(times[5:])) * 1000, 2)
    record["sigkill_under_load"] = sigkill_under_load(config(args.model, ports, 8), frame)
    # Seen here: Triton 2.51's HTTP server crashes (SIGSEGV) on a large body sent as a form (urllib's
    # default Content-Type); recorded so a newer server can be checked against it.
    with TritonServer(config(args.model, ports, 8)) as server:
        post = malformed_post(server)
        code = post([1, 3000, 4000, 3], bytes(3000 * 4000 * 3), ctype="application/x-www-form-urlencoded")
        time.sleep(1.0)
        record["form_body_36mb"] = {"http_status": code, "server_alive_after": server.alive()}
    print(json.dumps({k: v for k, v in record.items() if k != "load"}, indent=1))
    write_text_atomic(args.out, json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
