"""Faults around a real Triton server (``rpol-edge serve``) on 127.0.0.1: a port another server
holds, the errors ``serve`` and ``client`` print, a client with no server or a server that stops
mid-run, and a request the client got wrong answered as such (HTTP 400 / gRPC INVALID_ARGUMENT)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tritonclient.http", reason="the serving tests need the serve extra (tritonclient)")

import rpol_edge  # noqa: E402
from rpol_edge.core.model_file import read_meta  # noqa: E402
from rpol_edge.data.images import load_rgb  # noqa: E402
from rpol_edge.integrations.triton import server as server_module  # noqa: E402
from rpol_edge.integrations.triton.remote_model import RemoteModel, binary_infer_body, predict_remote  # noqa: E402
from rpol_edge.integrations.triton.server import ServeConfig, TritonServer, free_ports  # noqa: E402
from rpol_edge.integrations.triton.server_env import ServeError  # noqa: E402

PHOTOS = sorted((rpol_edge.SAMPLE_ROOT / "JPEGImages").glob("*.jpg"))


def _cli(*args: object, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "rpol_edge", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _one_error_line(res: subprocess.CompletedProcess[str]) -> str:
    """The command failed with exit 2 and said why in one line, with nothing on stdout."""
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert res.stdout == "", res.stdout  # never "serving ..." first
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


def test_a_port_in_use_is_named_and_two_servers_run_side_by_side(
    server: TritonServer, sample_onnx: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second server on any one port of a running one (HTTP, gRPC, or only metrics) is refused
    in one line naming that port and its holder; it never reports the other server's readiness
    as its own. With other ports (0: free ones) both serve."""
    cfg = server.cfg
    held = {"--http-port": cfg.http_port, "--grpc-port": cfg.grpc_port, "--metrics-port": cfg.metrics_port}
    for flag, port in held.items():
        others = iter(free_ports(2))
        args = [a for f, p in held.items() for a in (f, p if f == flag else next(others))]
        line = _one_error_line(_cli("serve", sample_onnx, *args, "--device", "cpu"))
        assert f"port {port} ({flag}) is in use on 127.0.0.1 by tritonserver" in line, line

    # The proof behind it, without the port check in front: a server that could not take its
    # metrics port (Triton binds it last, after HTTP already answers) is not taken for ready.
    monkeypatch.setattr(server_module, "check_free", lambda host, ports: "")
    late = ServeConfig(sample_onnx, http_port=0, grpc_port=0, metrics_port=cfg.metrics_port, device="cpu")
    with pytest.raises(ServeError, match=f"port {cfg.metrics_port} \\(--metrics-port\\) is in use"):
        TritonServer(late).start()

    proc = subprocess.Popen(
        [sys.executable, "-m", "rpol_edge", "serve", str(sample_onnx), "--device", "cpu"]
        + ["--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        shown = [proc.stdout.readline() for _ in range(4)]  # "serving ...", HTTP, gRPC, metrics
        assert shown[0].startswith("serving rpol"), shown
        http, grpc, metrics = (re.search(r"(\w+://\S+)", ln)[1] for ln in shown[1:4])  # type: ignore[index]
        mine = {int(u.split(":")[2].split("/")[0]) for u in (http, grpc, metrics)}
        assert len(mine) == 3 and not mine & set(held.values())
        for url in (http, grpc, server.cfg.http_url):
            with RemoteModel(url) as remote:
                assert remote.detect(load_rgb(PHOTOS[0])).box is not None
        with urllib.request.urlopen(metrics, timeout=10) as r:
            assert b'nv_inference_request_success{model="rpol"' in r.read()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)


def test_serve_errors_are_one_line(sample_onnx: Path, tmp_path: Path) -> None:
    """Wrong input and a port held by another program: exit 2 and the one line that says what is
    wrong (no traceback, no GPU-driver lines from the server's log)."""
    ports = free_ports(3)
    line = _one_error_line(_cli("serve", tmp_path / "nope.onnx"))
    assert "nope.onnx: no such model file" in line
    line = _one_error_line(_cli("serve", sample_onnx, "--boxes", "foo"))
    assert "--boxes 'foo': choose largest, peak, all or objects" in line
    line = _one_error_line(_cli("serve", sample_onnx, "--http-port", ports[0], "--grpc-port", ports[0]))
    assert "three different ports" in line
    with socket.socket() as other:  # any program, not a server of ours
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        args = ["--http-port", ports[0], "--grpc-port", port, "--metrics-port", ports[2]]
        line = _one_error_line(_cli("serve", sample_onnx, *args, "--device", "cpu"))
    assert f"port {port} (--grpc-port) is in use on 127.0.0.1 by python" in line, line
    # A server that starts and then fails to load its model: the log's reason, without its GPU
    # lines (NVML, CUDA driver, DCGM on a machine without a GPU) or the model step's traceback.
    line = _one_error_line(
        _cli(
            "serve", sample_onnx, "--http-port", 0, "--grpc-port", 0, "--metrics-port", 0, "--runtime", "trt"
        )
    )
    assert "failed to load 'rpol'" in line and "runtime trt runs .engine/.plan files" in line, line
    assert not any(word in line for word in ("NVML", "CUDA", "DCGM", "At:", "model.py")), line


def test_client_without_a_server_writes_nothing_and_keeps_what_a_dying_server_answered(
    sample_onnx: Path, tmp_path: Path
) -> None:
    (port,) = free_ports(1)
    for url, what in ((f"http://127.0.0.1:{port}", PHOTOS[:2]), (f"grpc://127.0.0.1:{port}", None)):
        out = tmp_path / url.split(":")[0]
        given = [*what] if what else ["--source", PHOTOS[0].parent]
        line = _one_error_line(_cli("client", url, *given, "-o", out))
        flag = "--grpc-port" if url.startswith("grpc") else "--http-port"
        assert line == f"error: no server at {url}: start one with rpol-edge serve MODEL {flag} {port}"
        assert not out.exists()

    # A server killed after the second answer: both answers stay written and listed, the error
    # counts the rest, and nothing else was written.
    cfg = ServeConfig(sample_onnx, http_port=0, grpc_port=0, metrics_port=0, device="cpu")
    srv = TritonServer(cfg).start()
    out = tmp_path / "partial"

    def kill_after_two(done: int, total: int) -> None:
        if done == 2:
            srv.kill()

    try:
        with RemoteModel(srv.cfg.http_url, timeout_s=10) as remote:
            with pytest.raises(ServeError, match=r"stopped answering.*2 of 6 image\(s\) answered") as exc:
                predict_remote(remote, PHOTOS[:6], out, kill_after_two)
    finally:
        srv.kill()
    assert "\n" not in str(exc.value)
    names = sorted(p.name for p in out.iterdir())
    stems = [p.stem for p in PHOTOS[:2]]
    assert names == sorted([f"{s}.json" for s in stems] + [f"{s}.png" for s in stems] + ["predictions.jsonl"])
    listed = [json.loads(ln) for ln in (out / "predictions.jsonl").read_text().splitlines()]
    assert listed == [json.loads((out / f"{s}.json").read_text()) for s in stems]


def _http_status(url: str, shape: list[int], payload: bytes) -> tuple[int, str]:
    body, headers = binary_infer_body(shape, payload)
    headers["Content-Type"] = "application/octet-stream"
    req = urllib.request.Request(url + "/v2/models/rpol/infer", data=body, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def test_client_mistakes_are_bad_requests_server_faults_stay_internal(
    server: TritonServer, sample_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    from rpol_edge.exporters.onnx_export import export_onnx
    from rpol_edge.integrations.triton.worker import serve_batch
    from rpol_edge.runtimes import open_runtime
    from tests.integrations.triton.test_triton_step import _step, _Tensor, standin_pb_utils

    # The server (serve's model step): an empty frame is HTTP 400 and gRPC INVALID_ARGUMENT, with
    # the same message; so is a frame larger than the server takes.
    code, body = _http_status(server.cfg.http_url, [1, 0, 0, 3], b"")
    assert (code, json.loads(body)) == (400, {"error": "empty frame: shape [1, 0, 0, 3]"})
    assert _http_status(server.cfg.http_url, [1, 48, 64, 3], bytes(48 * 64 * 3))[0] == 200
    client = grpcclient.InferenceServerClient(server.cfg.grpc_url.removeprefix("grpc://"))
    for shape, says in (((1, 0, 0, 3), "empty frame: shape [1, 0, 0, 3]"), ((1, 5773, 8661, 3), "50.0 MP")):
        frames = grpcclient.InferInput("frames", list(shape), "UINT8")
        frames.set_data_from_numpy(np.zeros(shape, np.uint8))
        with pytest.raises(InferenceServerException) as exc:
            client.infer("rpol", [frames])
        assert exc.value.status() == "StatusCode.INVALID_ARGUMENT" and says in exc.value.message()
    client.close()

    # The worker behind it: a frame its model refuses (the wrong size for a --frame-size graph) is
    # marked the request's fault, while the batch's good frame is answered.
    raw = tmp_path / "raw.onnx"
    export_onnx(sample_model, raw, batch=(1, 2, 4), frame=(320, 240, "rgb"))
    with open_runtime(raw, "ort", device="cpu") as rt:
        good, wrong = np.zeros((240, 320, 3), np.uint8), np.zeros((480, 640, 3), np.uint8)
        results, _ = serve_batch(rt, [good, wrong], 0.0, False)
    assert "error" not in results[0] and results[1]["invalid"] is True
    assert "--frame-size 640x480" in results[1]["error"]
    from rpol_edge.integrations.triton.serve_model import triton_error

    pb = standin_pb_utils()
    assert triton_error(pb, results[1]).code == pb.TritonError.INVALID_ARG
    worker_gone = {"error": "the rpol-edge worker exited during the batch; it is restarted for the next"}
    assert triton_error(pb, worker_gone).code == pb.TritonError.INTERNAL  # the server's fault

    # The exported ensemble's Python steps: the pre step's refusal is INVALID_ARG; the post step's
    # inputs come from the graph, so its errors are the server's.
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", pb)
    meta_json = read_meta(server.cfg.model).to_json()
    (pre,) = _step("pre", meta_json).execute(
        [{"frames": _Tensor("frames", np.zeros((1, 0, 0, 3), np.uint8))}]
    )
    assert (pre.error.code, pre.error.message()) == (
        pb.TritonError.INVALID_ARG,
        "empty frame: shape [1, 0, 0, 3]",
    )
    (post,) = _step("post", meta_json).execute(
        [{"score": _Tensor("score", np.zeros((1, 1, 3, 3), np.float32))}]
    )
    assert post.error.code == pb.TritonError.INTERNAL
