"""The process that runs the model for ``rpol-edge serve``: rpol-edge's own runtimes, pre- and
post-processing, in rpol-edge's environment.

Why a separate process: Triton's Python backend needs numpy < 2 in the interpreter it embeds, and
rpol-edge's environment has numpy 2 with the OpenCV, ONNX Runtime and OpenVINO built for it. The
server's ``model.py`` (numpy < 2, standard library) starts one worker per model instance and hands
it batches of raw frames over a pipe (`rpol_edge.integrations.triton.wire`); the worker answers with boxes in
original pixels from `rpol_edge.results.detection.detect_images`, the code ``predict`` runs, so a
served box is the box a local run gives.

Started as ``python -m rpol_edge.integrations.triton.worker --model FILE ...``; it ends when its input pipe
closes (the server's model instance ended or was killed), so no worker outlives its server.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from rpol_edge.core.metadata import BOX_MODES
from rpol_edge.integrations.triton.wire import WireClosed, receive_array, receive_header, send


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or exc.__class__.__name__
    return text[:500]


def serve_batch(
    runtime: Any, frames: list[np.ndarray], min_area: float, maps: bool, boxes: str | None = None
) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """Boxes (and score maps when asked) for a batch of RGB frames; a frame that cannot be
    prepared gets its own error and the rest of the batch is still answered. ``boxes``: the box
    mode (None: the model's recorded one).

    An error is marked ``invalid`` when the frame itself is refused by the shared pre-processing
    (`rpol_edge.core.prepare.prepare`, e.g. the wrong size for a ``--frame-size`` graph): the
    request's fault, answered as such (HTTP 400); any other is the server's (500)."""
    from rpol_edge.core.prepare import prepare
    from rpol_edge.integrations.triton.repository import padded_boxes
    from rpol_edge.results.detection import detect_images

    try:
        found: list[Any] = detect_images(runtime, frames, min_area, boxes)
    except Exception:  # noqa: BLE001 - find which frame it was, answer the others
        found = []
        for frame in frames:
            try:
                prepare(frame, runtime.meta, is_rgb=True)
            except ValueError as exc:
                found.append({"error": one_line(exc), "invalid": True})
                continue
            try:
                found.extend(detect_images(runtime, [frame], min_area, boxes))
            except Exception as exc:  # noqa: BLE001
                found.append({"error": one_line(exc)})
    results: list[dict[str, Any]] = []
    arrays: list[np.ndarray] = []
    for item in found:
        if isinstance(item, dict):
            results.append(item)
            continue
        d, _, score_map = item
        every, every_score = padded_boxes(d.boxes)
        results.append(
            {
                "box": list(d.box) if d.box else None,
                "score": float(d.score),
                "boxes": every,
                "boxes_score": every_score,
            }
        )
        if maps:
            arrays.append(np.ascontiguousarray(score_map, np.float32))
    return results, arrays


def run(args: argparse.Namespace, inp: BinaryIO, out: BinaryIO) -> int:
    from rpol_edge.runtimes import open_runtime

    options: dict[str, Any] = {"device": args.device}
    if args.threads:
        options["threads"] = args.threads
    try:
        runtime = open_runtime(Path(args.model), args.runtime, **options)
        runtime.__enter__()
        if runtime.meta.n_heads != 1:
            raise ValueError(
                "serving needs a class-agnostic model (a class-wise fit localizes a known class)"
            )
    except Exception as exc:  # noqa: BLE001 - reported to the server as the model's load error
        send(out, {"error": f"{args.model}: {one_line(exc)}"})
        return 2
    send(
        out,
        {
            "ready": True,
            "meta": runtime.meta.to_json(),
            "description": runtime.description,
            "pid": os.getpid(),
        },
    )
    while True:
        try:
            header = receive_header(inp)
            frames = [receive_array(inp, list(s), "uint8") for s in header["shapes"]]
        except WireClosed:
            break
        results, arrays = serve_batch(runtime, frames, args.min_area, bool(header.get("maps")), args.boxes)
        send(out, {"results": results, "k": runtime.meta.input_size}, arrays)
    runtime.__exit__(None, None, None)
    return 0


def running(pid: int) -> bool:
    """Whether a process exists and is not a zombie (a killed server its parent has not reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def watch_server(pid: int) -> None:
    """End this worker and its backend stub when the server is gone: Triton 2.51's stubs outlive a
    killed or crashed server (reparented, holding their shared memory), and a stub blocked in the
    backend's C++ code never runs a Python watchdog of its own."""
    while running(pid):
        time.sleep(0.5)
    stub = os.getppid()
    if stub not in (1, pid):
        try:
            os.kill(stub, signal.SIGKILL)
        except OSError:
            pass
    os._exit(0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rpol_edge.integrations.triton.worker")
    p.add_argument("--model", required=True)
    p.add_argument("--runtime", default="auto")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--min-area", type=float, default=0.0)
    p.add_argument("--boxes", choices=BOX_MODES, default=None)
    p.add_argument("--server-pid", type=int, default=0)
    args = p.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server drains on SIGINT; the worker ends on EOF
    if args.server_pid:
        threading.Thread(target=watch_server, args=(args.server_pid,), daemon=True).start()
    # The pipe on fd 1 carries only messages: anything a library prints goes to stderr instead.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return run(args, sys.stdin.buffer, out)


if __name__ == "__main__":
    raise SystemExit(main())
