"""`rpol-edge run` on files, folders and bad sources: a real MP4 whose boxes equal `predict`,
unknown schemes, sources that never open, unwritable outputs, corrupt images.

No OpenCV or socket is mocked (see live_support.py); every wait is bounded by a deadline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
from live_support import (
    FRAME_H,
    FRAME_W,
    cli,
    decode_video,
    frames_bgr,
    free_port,
    read_jsonl,
    sample_images,
    write_video,
)

from rpol_edge.live.source_registry import SCHEMES, parse_source
from rpol_edge.live.sources import SourceError, open_source

# --- 1. a video file: one line per frame, boxes equal to `predict`, a readable output video -----


def test_video_file_matches_predict(model: Path, tmp_path: Path) -> None:
    video = tmp_path / "in.mp4"
    write_video(video, frames_bgr(12))
    out_video, jsonl, summary = tmp_path / "out.mp4", tmp_path / "out.jsonl", tmp_path / "summary.json"

    res = cli("run", model, "--source", video, "--jsonl", jsonl, "--save", out_video, "--summary", summary)
    assert res.exit_code == 0, res.output
    assert "runtime: torch" in res.stderr

    decoded = decode_video(video)  # mp4 is lossy: compare against what the decoder gives back
    assert len(decoded) == 12
    records = read_jsonl(jsonl)
    assert [r["frame"] for r in records] == list(range(12))
    for r in records:
        assert (r["width"], r["height"]) == (FRAME_W, FRAME_H)
        assert set(r["ms"]) == {"capture", "pre", "infer", "post", "render", "write"}
        assert r["ms"]["infer"] > 0 and r["latency_ms"] > 0

    pngs = []
    for i, frame in enumerate(decoded):
        pngs.append(tmp_path / "frames" / f"f{i:02d}.png")
        pngs[-1].parent.mkdir(exist_ok=True)
        assert cv2.imwrite(str(pngs[-1]), frame)
    res = cli("predict", model, *pngs, "-o", tmp_path / "pred")
    assert res.exit_code == 0, res.output
    for r, png in zip(records, pngs, strict=True):
        expected = json.loads((tmp_path / "pred" / f"{png.stem}.json").read_text())
        assert r["box"] == expected["box"], png.name
        assert r["score"] == pytest.approx(expected["score"], abs=1e-4)

    written = decode_video(out_video)
    assert len(written) == 12 and written[0].shape == (FRAME_H, FRAME_W, 3)
    assert not list(tmp_path.glob(".out.mp4.*"))  # the temporary name is gone

    s = json.loads(summary.read_text())
    assert (s["frames"], s["dropped_frames"], s["corrupt_frames"], s["stop_reason"]) == (
        12,
        0,
        0,
        "end of stream",
    )
    assert s["mean_fps"] > 0 and s["latency_ms"]["p95"] >= s["latency_ms"]["p50"] > 0


# --- 3. bad input ---------------------------------------------------------------------------------


def test_unknown_scheme_lists_accepted(model: Path) -> None:
    res = cli("run", model, "--source", "ftp://example.com/cam")
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    assert "unknown source scheme 'ftp'" in lines[0]
    for scheme in ("csi://", "v4l2://", "rtsp://", "http://", "https://"):
        assert scheme in lines[0]
    assert set(SCHEMES) >= {"csi", "v4l2", "rtsp", "http", "https"}


def test_csi_without_gstreamer_says_why() -> None:
    from rpol_edge.live.opencv_sources import has_gstreamer

    if has_gstreamer():
        pytest.skip("this OpenCV has GStreamer; the CSI pipeline would be tried for real")
    with pytest.raises(SourceError, match="GStreamer") as exc:
        parse_source("csi://0")
    assert "--system-site-packages" in str(exc.value)


@pytest.mark.parametrize("kind", ["closed port", "silent server"])
def test_source_that_never_opens_fails_in_time(kind: str, request: pytest.FixtureRequest) -> None:
    url = (
        f"http://127.0.0.1:{free_port()}/"
        if kind == "closed port"
        else request.getfixturevalue("silent_server")
    )
    t0 = time.monotonic()
    with pytest.raises(SourceError) as exc:
        open_source(parse_source(url), timeout=2.0)
    elapsed = time.monotonic() - t0
    assert 1.0 <= elapsed <= 4.0, elapsed
    message = str(exc.value)
    assert url in message and "within 2 s" in message and "\n" not in message


def test_cli_source_that_never_opens(model: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    t0 = time.monotonic()
    res = cli("run", model, "--source", url, "--open-timeout", 1.5)
    assert time.monotonic() - t0 < 20  # 1.5 s for the source plus loading the model
    assert res.exit_code == 2, res.output
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and url in errors[0] and "connection refused" in errors[0], res.stderr


@pytest.mark.parametrize(
    "url", ["http://[::1", "http://127.0.0.1:99999/x", "https:///no-host", "rtsp://127.0.0.1:70000/s"]
)
def test_malformed_network_uri_names_it(model: Path, url: str) -> None:
    res = cli("run", model, "--source", url)
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and url in lines[0], res.stderr


def test_opencv_and_ffmpeg_stay_quiet(tmp_path: Path) -> None:
    """A missing camera, a broken MP4, a refused RTSP port: only our one line each, no [ WARN...],
    no 'moov atom not found' (both print on file descriptor 2, so a child process is checked)."""
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 100)
    code = (
        "import sys\n"
        "from rpol_edge.live.source_registry import parse_source\n"
        "from rpol_edge.live.sources import SourceError, open_source\n"
        "for uri in sys.argv[1:]:\n"
        "    try:\n"
        "        open_source(parse_source(uri), 1.0)\n"
        "    except SourceError as exc:\n"
        "        print('error:', exc, file=sys.stderr)\n"
    )
    uris = ["camera://99", str(bad), f"rtsp://127.0.0.1:{free_port()}/x"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")}
    res = subprocess.run(
        [sys.executable, "-c", code, *uris], capture_output=True, text=True, timeout=60, env=env
    )
    assert res.returncode == 0, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 3 and all(ln.startswith("error: cannot open") for ln in lines), res.stderr
    assert [u in ln for u, ln in zip(uris, lines, strict=True)] == [True] * 3


@pytest.mark.parametrize("where", ["a folder", "under /proc"])
def test_unwritable_output_fails_before_any_frame(model: Path, tmp_path: Path, where: str) -> None:
    video = tmp_path / "in.mp4"
    write_video(video, frames_bgr(3))
    summary = tmp_path if where == "a folder" else Path("/proc/nope/x.json")
    jsonl = tmp_path / "out.jsonl"
    t0 = time.monotonic()
    res = cli("run", model, "--source", video, "--jsonl", jsonl, "--summary", summary)
    assert time.monotonic() - t0 < 5  # refused before the model loads
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --summary"), res.stderr
    assert not jsonl.exists()


def test_corrupt_images_in_folder_are_skipped(model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    good = sample_images()[:3]
    for p in good:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "zz_garbage.jpg").write_bytes(b"not an image at all" * 10)
    data = good[0].read_bytes()
    (folder / "zz_truncated.jpg").write_bytes(data[: len(data) // 3])
    jsonl, summary = tmp_path / "f.jsonl", tmp_path / "summary.json"

    res = cli("run", model, "--source", folder, "--jsonl", jsonl, "--summary", summary)
    assert res.exit_code == 0, res.output
    records = read_jsonl(jsonl)
    assert [Path(r["image"]).name for r in records] == [p.name for p in good]
    s = json.loads(summary.read_text())
    assert s["frames"] == 3 and s["corrupt_frames"] == 2 and s["stop_reason"] == "end of stream"
    assert res.stderr.count("corrupt frame skipped") == 2
