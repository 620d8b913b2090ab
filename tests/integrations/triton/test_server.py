"""A real Triton server (``rpol-edge serve``'s: tritonserver from nvidia-pytriton, Python backend,
the model run by rpol-edge's own runtime in a worker) on 127.0.0.1: health, the boxes of a local
run over HTTP and gRPC, the files ``predict`` writes, errors for malformed requests while the server
goes on serving, and a drain on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tritonclient.http", reason="the serving tests need the serve extra (tritonclient)")

import rpol_edge  # noqa: E402
from rpol_edge.data.images import load_rgb  # noqa: E402
from rpol_edge.integrations.triton.remote_model import RemoteModel, binary_infer_body  # noqa: E402
from rpol_edge.integrations.triton.server import ServeConfig, TritonServer, free_ports  # noqa: E402
from rpol_edge.integrations.triton.server_env import ServeError  # noqa: E402
from rpol_edge.results.detection import detect_images, predict_files  # noqa: E402
from rpol_edge.runtimes import open_runtime  # noqa: E402

PHOTOS = sorted((rpol_edge.SAMPLE_ROOT / "JPEGImages").glob("*.jpg"))


def _status(url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def test_health_and_readiness_endpoints(server: TritonServer) -> None:
    url = server.cfg.http_url
    assert _status(url + "/v2/health/live")[0] == 200
    assert _status(url + "/v2/health/ready")[0] == 200
    assert _status(url + "/v2/models/rpol/ready")[0] == 200
    assert _status(url + "/v2/models/nope/ready")[0] != 200
    assert RemoteModel(url).ready() and RemoteModel(server.cfg.grpc_url).ready()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_served_boxes_and_maps_are_the_local_ones(
    server: TritonServer, sample_onnx: Path, protocol: str
) -> None:
    url = server.cfg.http_url if protocol == "http" else server.cfg.grpc_url
    images = [load_rgb(p) for p in PHOTOS]
    with open_runtime(sample_onnx, device="cpu") as rt, RemoteModel(url) as remote:
        local = detect_images(rt, images)
        served = remote.detect_maps(images, maps=True)
    assert len(served) == len(local) == len(PHOTOS) > 0
    for (d, t, score_map), (rd, rt_, rmap) in zip(local, served, strict=True):
        assert rd.box == d.box and rd.score == d.score
        assert rd.boxes == d.boxes  # the model's mode (largest): its one box
        assert rt_ == t
        np.testing.assert_array_equal(rmap, score_map)  # bit-identical: the same runtime and code


def test_serve_boxes_all_answers_every_box_of_a_local_run(sample_onnx: Path) -> None:
    """``serve --boxes all``: the padded ``boxes`` list is the local ``--boxes all`` list, on
    photos and on tiles of four (several animals)."""
    from tests.multi_canvas import tiled

    http, grpc, metrics = free_ports(3)
    cfg = ServeConfig(
        sample_onnx, http_port=http, grpc_port=grpc, metrics_port=metrics, device="cpu", boxes="all"
    )
    images = [load_rgb(p) for p in PHOTOS[:4]] + [tiled(first)[..., ::-1].copy() for first in (2, 8)]
    with TritonServer(cfg) as srv, open_runtime(sample_onnx, device="cpu") as rt:
        with RemoteModel(srv.cfg.http_url) as remote:
            served = remote.detect_maps(images)
        local = detect_images(rt, images, boxes="all")
    assert max(len(d.boxes) for d, _, _ in local) >= 2
    for (d, _, _), (rd, _, _) in zip(local, served, strict=True):
        assert rd.box == d.box
        assert [b for b, _ in rd.boxes] == [b for b, _ in d.boxes]
        assert np.allclose([s for _, s in rd.boxes], [s for _, s in d.boxes], atol=1e-6)


def test_client_writes_what_predict_writes(server: TritonServer, sample_onnx: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from rpol_edge.cli.app import app

    empty = tmp_path / "in" / "empty.jpg"  # a 0-byte image: a counted skip, as predict does
    empty.parent.mkdir()
    empty.write_bytes(b"")
    files = PHOTOS[:3] + [empty]
    with open_runtime(sample_onnx, device="cpu") as rt:
        local, skipped = predict_files(rt, files, tmp_path / "local")
    assert [p for p, _ in skipped] == [empty]
    res = CliRunner().invoke(
        app, ["client", server.cfg.grpc_url, *map(str, files), "-o", str(tmp_path / "remote")]
    )
    assert res.exit_code == 0, res.output
    assert "skipped 1 unreadable image" in res.output
    a, b = tmp_path / "local", tmp_path / "remote"
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    for path in a.iterdir():
        assert path.read_bytes() == (b / path.name).read_bytes(), path.name


def _binary_infer(
    url: str, shape: list[int], payload: bytes, datatype: str = "UINT8", size: int | None = None
) -> tuple[int, str]:
    body, headers = binary_infer_body(shape, payload, datatype, size)
    headers["Content-Type"] = "application/octet-stream"
    return _status(url + "/v2/models/rpol/infer", body, headers)


def test_malformed_requests_get_errors_and_the_server_goes_on(server: TritonServer) -> None:
    url = server.cfg.http_url
    frame = np.zeros((1, 48, 64, 3), np.uint8)
    ok = _binary_infer(url, [1, 48, 64, 3], frame.tobytes())
    assert ok[0] == 200, ok
    bad = {
        "wrong dtype": _binary_infer(url, [1, 48, 64, 3], frame.astype(np.float32).tobytes(), "FP32"),
        "wrong shape": _binary_infer(url, [1, 48, 64, 4], np.zeros((1, 48, 64, 4), np.uint8).tobytes()),
        "wrong rank": _binary_infer(url, [48, 64, 3], frame[0].tobytes()),
        "truncated body": _binary_infer(url, [1, 48, 64, 3], frame.tobytes()[:1000], size=frame.nbytes),
        "0-byte frame": _binary_infer(url, [1, 0, 0, 3], b""),
    }
    for what, (code, body) in bad.items():
        assert code >= 400 and "error" in body, (what, code, body)
    assert "empty frame" in bad["0-byte frame"][1]
    with RemoteModel(server.cfg.grpc_url) as remote:
        big = np.zeros((5773, 8661, 3), np.uint8)  # 50 MP
        with pytest.raises(ServeError, match="larger than this server takes"):
            remote.detect(big)
        assert remote.detect(np.full((480, 640, 3), 128, np.uint8)) is not None
    assert _binary_infer(url, [1, 48, 64, 3], frame.tobytes()) == ok


def test_sigterm_drains_requests_in_flight(sample_onnx: Path, tmp_path: Path) -> None:
    http, grpc, metrics = free_ports(3)
    cmd = [
        sys.executable,
        "-m",
        "rpol_edge",
        "serve",
        str(sample_onnx),
        "--http-port",
        str(http),
        "--grpc-port",
        str(grpc),
        "--metrics-port",
        str(metrics),
        "--max-batch",
        "1",
        "--device",
        "cpu",
    ]
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{http}"
        deadline = time.monotonic() + 120
        while _ready(url) is False:
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.2)
        image = load_rgb(PHOTOS[0])
        results: list[object] = []

        def one() -> None:
            with RemoteModel(url, timeout_s=60) as remote:
                try:
                    results.append(remote.detect(image).box)
                except ServeError as exc:
                    results.append(exc)

        threads = [threading.Thread(target=one) for _ in range(6)]
        for t in threads:
            t.start()
        time.sleep(0.3)  # all six sent; one batch of one runs at a time, the rest wait in Triton's queue
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(90)
        assert proc.wait(60) == 0, (tmp_path / "serve.log").read_text()
        assert len(results) == 6 and all(isinstance(r, tuple) for r in results), results
        assert _ready(url) is False  # stopped: nothing listens any more
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/v2/health/ready", timeout=1) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def test_a_killed_server_leaves_no_workers_and_a_restart_serves(sample_onnx: Path) -> None:
    http, grpc, metrics = free_ports(3)
    cfg = ServeConfig(sample_onnx, http_port=http, grpc_port=grpc, metrics_port=metrics, device="cpu")
    server = TritonServer(cfg).start()
    with RemoteModel(cfg.http_url, timeout_s=10) as remote:
        assert remote.detect(load_rgb(PHOTOS[0])).box is not None
        assert server.proc is not None
        stub_pids = subprocess.run(
            ["pgrep", "-P", str(server.proc.pid)], capture_output=True, text=True
        ).stdout.split()
        workers = [
            w
            for p in stub_pids
            for w in subprocess.run(["pgrep", "-P", p], capture_output=True, text=True).stdout.split()
        ]
        assert workers, "the model instance's worker process"
        server.kill()  # SIGKILL
        with pytest.raises(ServeError):
            remote.detect(load_rgb(PHOTOS[0]))  # an error, not a hang
    deadline = time.monotonic() + 15
    while any(Path(f"/proc/{pid}").exists() for pid in stub_pids + workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(Path(f"/proc/{pid}").exists() for pid in stub_pids + workers), "orphaned stub or worker"
    with TritonServer(cfg) as again, RemoteModel(again.cfg.grpc_url) as remote:
        assert remote.detect(load_rgb(PHOTOS[0])).box is not None
