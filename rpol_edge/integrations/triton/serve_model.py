"""The Python-backend model of ``rpol-edge serve`` (copied as ``model.py`` into the repository).

It runs in Triton's Python-backend stub, in the server environment (numpy < 2, no rpol-edge), and
only moves frames: each model instance starts one `rpol_edge.integrations.triton.worker` in rpol-edge's own
environment and hands it every batch Triton formed, over a pipe. Requests are checked here first
(an empty frame, one larger than ``max_frame_pixels``), so a bad request is answered with its own
error (HTTP 400 / gRPC INVALID_ARGUMENT: the client's fault) and the batch's other requests go on.
A worker that died is started again for the next batch (its requests get 500: the server's fault).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np

try:  # inside the package (tests, type checks) or beside model.py in a repository
    from rpol_edge.integrations.triton import wire
except ImportError:  # pragma: no cover - the server environment has no rpol-edge
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import wire  # type: ignore[no-redef]

WORKER_ENV = "RPOL_EDGE_WORKER_ENV"
"""JSON of the variables the worker gets back (PATH, LD_LIBRARY_PATH as rpol-edge had them): the
stub runs with the server environment activated, which must not leak into rpol-edge's."""


class Worker:
    def __init__(self, command: list[str], name: str) -> None:
        self.command = command
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None
        self.lock = threading.Lock()

    def start(self) -> dict[str, Any]:
        env = dict(os.environ)
        for key in ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH"):
            env.pop(key, None)
        for key, value in json.loads(os.environ.get(WORKER_ENV, "{}")).items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        # The server's pid: the worker watches it (a stub whose server died may never run Python again).
        command = [*self.command, "--server-pid", str(os.getppid())]
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        try:
            hello = wire.receive_header(self.proc.stdout)  # type: ignore[arg-type]
        except wire.WireClosed:
            self.close()
            raise RuntimeError(f"{self.name}: the rpol-edge worker exited while loading the model") from None
        if "error" in hello:
            self.close()
            raise RuntimeError(hello["error"])
        return hello

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def call(
        self, frames: list[np.ndarray], maps: bool
    ) -> tuple[list[dict[str, Any]], list[np.ndarray], int]:
        if not self.alive():
            self.start()
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        try:
            wire.send(self.proc.stdin, {"shapes": [list(f.shape) for f in frames], "maps": maps}, frames)  # type: ignore[arg-type]
            reply = wire.receive_header(self.proc.stdout)  # type: ignore[arg-type]
            results = reply["results"]
            k = int(reply.get("k", 0))
            arrays = []
            if maps:
                for r in results:
                    if "error" not in r:
                        arrays.append(wire.receive_array(self.proc.stdout, [k, k], "float32"))  # type: ignore[arg-type]
        except (wire.WireClosed, BrokenPipeError, OSError):
            self.close()
            raise RuntimeError(
                "the rpol-edge worker exited during the batch; it is restarted for the next"
            ) from None
        return results, arrays, k

    def close(self) -> None:
        if self.proc is None:
            return
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream:
                    stream.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def triton_error(pb_utils: Any, failed: dict[str, Any]) -> Any:
    """A request's error with its code: a frame the request got wrong (``invalid``) is
    INVALID_ARG, which Triton answers as HTTP 400 / gRPC INVALID_ARGUMENT; anything else is the
    server's own fault, INTERNAL (500)."""
    kind = pb_utils.TritonError.INVALID_ARG if failed.get("invalid") else pb_utils.TritonError.INTERNAL
    return pb_utils.TritonError(failed["error"], code=kind)


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.max_pixels = int(params["max_frame_pixels"])
        self.worker = Worker(json.loads(params["worker_command"]), config["name"])
        hello = self.worker.start()
        # Triton 2.51's stubs outlive a server that was killed (SIGKILL, a crash): reparented, they
        # and their workers would hold their memory for good. The stub leaves when its parent does.
        self.parent = os.getppid()
        threading.Thread(target=self._watch_parent, daemon=True).start()
        print(
            f"{config['name']} instance {args['model_instance_name']}: {hello['description']} "
            f"(worker pid {hello['pid']})",
            flush=True,
        )

    def _watch_parent(self) -> None:
        while os.getppid() == self.parent:
            time.sleep(0.5)
        self.worker.close()
        os._exit(0)

    def check(self, frames: np.ndarray) -> str:
        h, w = frames.shape[1:3]
        if h == 0 or w == 0 or frames.shape[0] == 0:
            return f"empty frame: shape {list(frames.shape)}"
        if h * w > self.max_pixels:
            return (
                f"frame {w}x{h} ({w * h / 1e6:.1f} MP) is larger than this server takes "
                f"({self.max_pixels / 1e6:.1f} MP): resize it first"
            )
        return ""

    def execute(self, requests: list[Any]) -> list[Any]:
        import triton_python_backend_utils as pb_utils

        batch: list[np.ndarray] = []
        owners: list[int] = []
        errors: dict[int, dict[str, Any]] = {}
        maps = False
        for i, request in enumerate(requests):
            frames = pb_utils.get_input_tensor_by_name(request, "frames").as_numpy()
            problem = self.check(frames)
            if problem:
                errors[i] = {"error": problem, "invalid": True}
                continue
            maps = maps or "score_map" in request.requested_output_names()
            batch.extend(np.ascontiguousarray(f) for f in frames)
            owners.extend([i] * len(frames))
        results: list[dict[str, Any]] = []
        arrays: list[np.ndarray] = []
        if batch:
            try:
                results, arrays, _ = self.worker.call(batch, maps)
            except RuntimeError as exc:
                for i in set(owners):
                    errors[i] = {"error": str(exc)}
        per: dict[int, list[tuple[dict[str, Any], np.ndarray | None]]] = {}
        it = iter(arrays)
        for owner, r in zip(owners, results, strict=False):
            per.setdefault(owner, []).append((r, next(it) if maps and "error" not in r else None))
        responses = []
        for i in range(len(requests)):
            got = per.get(i, [])
            failed = errors.get(i) or next((r for r, _ in got if "error" in r), None)
            if failed:
                responses.append(pb_utils.InferenceResponse(error=triton_error(pb_utils, failed)))
                continue
            boxes = np.array([r["box"] if r["box"] else [-1, -1, -1, -1] for r, _ in got], np.int32)
            scores = np.array([[r["score"]] for r, _ in got], np.float32)
            out = [
                pb_utils.Tensor("box", boxes),
                pb_utils.Tensor("box_score", scores),
                pb_utils.Tensor("boxes", np.array([r["boxes"] for r, _ in got], np.int32)),
                pb_utils.Tensor("boxes_score", np.array([r["boxes_score"] for r, _ in got], np.float32)),
            ]
            if maps:
                out.append(pb_utils.Tensor("score_map", np.stack([m for _, m in got if m is not None])))
            responses.append(pb_utils.InferenceResponse(out))
        return responses

    def finalize(self) -> None:
        self.worker.close()
