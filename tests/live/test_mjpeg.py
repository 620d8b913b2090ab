"""An HTTP MJPEG stream from a real server on 127.0.0.1: reconnects, garbage, bounded parts.

No OpenCV or socket is mocked (see live_support.py); every wait is bounded by a deadline."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from live_support import JunkServer, frames_bgr, read_jsonl, rpol_edge_process, wait_for_lines

from benchmarks.product.mjpeg_server import MjpegServer
from rpol_edge.live.mjpeg import MjpegSource
from rpol_edge.live.sources import StreamDropped

# --- 2. an MJPEG stream that goes away and comes back ------------------------------------------


def test_mjpeg_stream_reconnects(model: Path, tmp_path: Path) -> None:
    deadline = time.monotonic() + 60  # watchdog for the whole test
    server = MjpegServer(frames_bgr(8), fps=15, corrupt_at=3)
    server.start()
    jsonl, summary, log = tmp_path / "s.jsonl", tmp_path / "summary.json", tmp_path / "log.txt"
    proc = rpol_edge_process(
        "run", model, "--source", server.url, "--jsonl", jsonl, "--summary", summary,
        "--max-frames", 40, "--max-reconnects", 5, "--open-timeout", 20, log=log,
    )  # fmt: skip
    try:
        wait_for_lines(jsonl, 8, deadline, proc)
        server.stop()  # mid-stream: the client sees the connection close
        time.sleep(1.0)
        restarted = time.time()
        server.start()  # same port
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
        server.stop()
    text = log.read_text()
    assert proc.returncode == 0, text
    assert "stream dropped" in text and "reconnected" in text

    records = read_jsonl(jsonl)
    assert len(records) == 40
    assert any(r["timestamp"] > restarted for r in records), "no frame after the reconnect"
    s = json.loads(summary.read_text())
    assert s["frames"] == 40 and s["stop_reason"] == "max frames"
    assert s["stream_drops"] == 1 and s["reconnects"] == 1 and s["reconnect_attempts"] >= 1
    assert s["corrupt_frames"] == 1
    assert server.connections == 2


def test_garbage_stream_is_dropped_then_given_up(model: Path, tmp_path: Path) -> None:
    """A server that answers 200 multipart and then sends ``garbage line`` forever: the part
    deadline drops it, the reopen gets the same, and `run` gives up after --max-reconnects with
    exit code 1. READ_TIMEOUT_S is cut to 1 s in the child so the test stays short."""
    deadline = time.monotonic() + 45
    server = JunkServer(b"garbage line\r\n" * 50)
    summary, log = tmp_path / "summary.json", tmp_path / "log.txt"
    code = (
        "import rpol_edge.live.mjpeg as m; m.READ_TIMEOUT_S = 1.0; from rpol_edge.cli.app import main; main()"
    )
    cmd = [sys.executable, "-c", code, "run", str(model), "--source", server.url, "--summary", str(summary)]
    cmd += ["--max-reconnects", "1", "--open-timeout", "5"]
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
        server.stop()
    text = log.read_text()
    assert proc.returncode == 1, text
    assert "no complete part within 1 s" in text and "giving up after 1 reconnect attempt" in text
    s = json.loads(summary.read_text())
    assert (s["stop_reason"], s["frames"], s["stream_drops"]) == ("source lost", 0, 1)
    assert (s["reconnect_attempts"], s["reconnects"]) == (1, 0)  # reopened, but no frame: no reconnect
    assert server.connections == 2


@pytest.mark.parametrize(
    ("junk", "head", "message"),
    [
        (b"garbage line\r\n" * 20, b"", "no complete part within 0.5 s"),
        (b"X-Junk: yes\r\n" * 50, b"--frame\r\n", "part headers longer than 100 lines"),
        (b"\xff", b"--frame\r\nContent-Type: image/jpeg\r\n\r\n", "no complete part within 0.5 s"),
    ],
    ids=["garbage lines", "endless headers", "trickle without delimiter"],
)
def test_mjpeg_part_is_bounded(
    junk: bytes, head: bytes, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each read ends within its deadline (or at the header limit) however the server paces bytes."""
    import rpol_edge.live.mjpeg as mjpeg

    monkeypatch.setattr(mjpeg, "READ_TIMEOUT_S", 0.5)
    server = JunkServer(junk, head, pause=0.01)
    source = MjpegSource(server.url)
    try:
        source.open(5.0)
        t0 = time.monotonic()
        with pytest.raises(StreamDropped, match=message):
            source.read()
        assert time.monotonic() - t0 < 0.5 + 0.5
    finally:
        source.close()
        server.stop()


def test_mjpeg_parts_without_content_length() -> None:
    """Parts delimited only by the boundary (some IP cameras): each body ends before ``\\r\\n--frame``."""
    jpegs = [cv2.imencode(".jpg", f)[1].tobytes() for f in frames_bgr(3)]
    parts = b"".join(b"--frame\r\nContent-Type: image/jpeg\r\n\r\n" + j + b"\r\n" for j in jpegs)
    server = JunkServer(parts, head=b"a preamble line\r\n", pause=0.05)
    source = MjpegSource(server.url)
    try:
        source.open(5.0)
        got = [source.read() for _ in range(4)]
    finally:
        source.close()
        server.stop()
    for captured, jpeg in zip(got, jpegs + jpegs[:1], strict=True):
        assert captured is not None
        expected = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert expected is not None and np.array_equal(captured.image, expected)
