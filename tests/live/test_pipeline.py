"""The live pipeline: signals, stops, hand-offs between its threads, overlap of its stages.

No OpenCV or socket is mocked (see live_support.py); every wait is bounded by a deadline."""

from __future__ import annotations

import json
import os
import queue
import signal
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from live_support import (
    FRAME_H,
    FRAME_W,
    decode_video,
    frames_bgr,
    rpol_edge_process,
    sample_images,
    wait_for_lines,
    write_video,
)

from benchmarks.product.mjpeg_server import MjpegServer
from rpol_edge.core.geometry import resize_crop
from rpol_edge.live.frames import FrameResult
from rpol_edge.live.handoff import LatestSlot
from rpol_edge.live.launch import run_live
from rpol_edge.live.outputs import Sink
from rpol_edge.live.source_registry import parse_source
from rpol_edge.runtimes import Output, open_runtime


def test_interrupt_while_opening_ends_with_a_summary(silent_server: str) -> None:
    """Ctrl-C while the source is still opening ends like one during the run: a summary, no error."""
    meta = SimpleNamespace(
        n_heads=1, raw_frames=False, resize_size=480, input_size=448, boxes="largest", feature_stride=32,
        input_shape=lambda: (448, 448, 3),
    )  # fmt: skip

    def infer(x: np.ndarray) -> Output:  # the warm-up's calls, before the source opens
        return Output(np.zeros((len(x), 1, 448, 448), np.float32), np.zeros((len(x), 1, 448, 448), np.uint8))

    stub = SimpleNamespace(meta=meta, description="unused", max_batch=None, min_batch=1, infer=infer)
    previous = signal.getsignal(signal.SIGINT)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    t0 = time.monotonic()
    timer.start()
    try:
        s = run_live(stub, parse_source(silent_server), open_timeout=30)  # type: ignore[arg-type]
    finally:
        timer.cancel()
    assert time.monotonic() - t0 < 5
    assert (s.stop_reason, s.frames, s.captured) == ("interrupted", 0, 0)
    assert signal.getsignal(signal.SIGINT) is previous


def test_class_wise_model_is_refused(tmp_path: Path) -> None:
    stub = SimpleNamespace(meta=SimpleNamespace(n_heads=3))
    source = parse_source(str(sample_images()[0]))
    with pytest.raises(ValueError, match="needs a class-agnostic model"):
        run_live(stub, source)  # type: ignore[arg-type]
    assert not source.is_open


@pytest.mark.parametrize(
    ("h", "w", "resize", "crop"), [(240, 320, 224, 224), (720, 1280, 256, 224), (97, 61, 160, 128)]
)
def test_crop_then_convert_is_bit_identical(h: int, w: int, resize: int, crop: int) -> None:
    """The pipeline converts only the K x K crop to RGB: resizing is per channel, so the order of
    the two steps cannot change a single value (shrinking and enlarging both checked)."""
    bgr = np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    whole_first, _ = resize_crop(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), resize, crop)
    crop_first, _ = resize_crop(bgr, resize, crop)
    assert np.array_equal(whole_first, cv2.cvtColor(crop_first, cv2.COLOR_BGR2RGB))


@pytest.mark.parametrize(
    ("signals", "reason"),
    [((signal.SIGTERM,), "SIGTERM"), ((signal.SIGINT, signal.SIGINT), "interrupted")],
    ids=["SIGTERM", "SIGINT twice"],
)
def test_sigterm_flushes_outputs(
    model: Path,
    tmp_path: Path,
    mjpeg_server: MjpegServer,
    signals: tuple[signal.Signals, ...],
    reason: str,
) -> None:
    """SIGTERM, and Ctrl-C pressed twice (the second lands while the first is still finishing):
    exit 0, whole JSONL lines, a readable video, a summary."""
    deadline = time.monotonic() + 60
    jsonl, video, summary, log = (
        tmp_path / "t.jsonl",
        tmp_path / "t.mp4",
        tmp_path / "s.json",
        tmp_path / "log",
    )
    proc = rpol_edge_process(
        "run",
        model,
        "--source",
        mjpeg_server.url,
        "--jsonl",
        jsonl,
        "--save",
        video,
        "--summary",
        summary,
        log=log,
    )
    try:
        wait_for_lines(jsonl, 5, deadline, proc)
        for sig in signals:
            proc.send_signal(sig)
            time.sleep(0.05)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, log.read_text()
    s = json.loads(summary.read_text())
    assert s["stop_reason"] == reason
    lines = jsonl.read_text().splitlines()
    assert jsonl.read_text().endswith("\n") and len(lines) == s["frames"] >= 5
    assert [json.loads(ln)["frame"] for ln in lines] == sorted(json.loads(ln)["frame"] for ln in lines)
    # A live recording follows capture time (25 fps here: MJPEG declares none), so frames repeat.
    assert len(decode_video(video)) >= s["frames"]
    assert not list(tmp_path.glob(".t.mp4.*"))


def test_latest_slot_keeps_newest_and_counts_drops() -> None:
    slot: LatestSlot[int] = LatestSlot()
    assert slot.put(1) is None
    assert slot.put(2) == 1  # 1 was never read: dropped
    assert slot.get(timeout=0.1) == 2
    assert slot.empty()
    t0 = time.monotonic()
    with pytest.raises(queue.Empty):
        slot.get(timeout=0.05)
    assert time.monotonic() - t0 < 1.0


class SlowSink(Sink):
    """A real sink that takes its time, like a slow disk or display."""

    needs_image = True

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.written = 0

    def write(self, result: FrameResult, image: np.ndarray | None) -> None:
        assert image is not None and image.shape == (FRAME_H, FRAME_W, 3)
        time.sleep(self.seconds)
        self.written += 1


def test_slow_output_never_stalls_live_capture(model: Path, mjpeg_server: MjpegServer) -> None:
    """Output at 4 frames/s against a 15 frames/s stream: capture keeps pace, the excess is dropped."""
    sink = SlowSink(0.25)
    with open_runtime(model, "torch") as rt:
        s = run_live(rt, parse_source(mjpeg_server.url), [sink], max_frames=12, open_timeout=10)
    assert s.frames == sink.written == 12 and s.stop_reason == "max frames"
    assert s.elapsed_s >= 12 * 0.25
    assert s.captured >= 0.5 * mjpeg_server.fps * s.elapsed_s, s  # capture ran at the stream's pace
    assert s.dropped_frames >= s.captured - s.frames - 6 > 0  # at most a slot and two queues in flight


class AsSlowAsInference(SlowSink):
    """Writes each frame in as long as its inference took: write and infer are equal stages,
    however fast or loaded this machine is."""

    def write(self, result: FrameResult, image: np.ndarray | None) -> None:
        self.seconds = result.frame.ms["infer"] / 1e3
        super().write(result, image)


def test_stages_overlap_throughput_follows_the_slowest(model: Path, tmp_path: Path) -> None:
    """Overlapped, a run takes about the slowest stage per frame, not the sum of the stages (a
    serial loop would need about twice as long here)."""
    video = tmp_path / "in.mp4"
    write_video(video, frames_bgr(16))
    sink = AsSlowAsInference(0.0)
    with open_runtime(model, "torch") as rt:
        s = run_live(rt, parse_source(str(video)), [sink])
    assert s.frames == sink.written == 16
    serial_s = s.frames * sum(v["mean"] for v in s.stage_ms.values()) / 1e3
    assert s.elapsed_s < 0.8 * serial_s, (s.elapsed_s, serial_s, s.stage_ms)
