"""Several sources in one run: batched inference, per-stream outputs and counters, one stream's
faults leaving the others alone. Real video files, real MJPEG servers on 127.0.0.1, real runtimes."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from live_support import (
    FRAME_H,
    FRAME_W,
    cli,
    decode_video,
    frames_bgr,
    read_jsonl,
    write_video,
)

from benchmarks.product.mjpeg_server import MjpegServer
from rpol_edge.live.batching import Batcher
from rpol_edge.live.launch import run_live
from rpol_edge.live.mosaic import MosaicSink, grid, letterbox, tile_size
from rpol_edge.live.outputs import Sink
from rpol_edge.live.source_registry import parse_source
from rpol_edge.runtimes import open_runtime

LENGTHS = (9, 5, 7)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three files of different lengths and content (each a different slice of the sample)."""
    folder = tmp_path_factory.mktemp("videos")
    frames = frames_bgr(max(LENGTHS) + len(LENGTHS))
    paths = []
    for i, n in enumerate(LENGTHS):
        path = folder / f"v{i}.mp4"
        write_video(path, frames[i : i + n])
        paths.append(path)
    return paths


def _boxes(records: list[dict[str, object]]) -> dict[tuple[object, object], tuple[object, object]]:
    return {(r["stream"], r["frame"]): (r["box"], r["score"]) for r in records}


@pytest.fixture(scope="module")
def fixed_batch_onnx(model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnx", reason="ONNX export needs the onnx extra")
    from rpol_edge.exporters.onnx_export import export_onnx

    path = tmp_path_factory.mktemp("fixed") / "model.b2.onnx"
    export_onnx(model, path, batch=(2, 2, 2))
    return path


@pytest.mark.parametrize("kind", ["rpol", "onnx-batch-2"])
def test_every_file_frame_once_with_the_single_stream_boxes(
    kind: str, model: Path, fixed_batch_onnx: Path, videos: list[Path], tmp_path: Path
) -> None:
    """Batched (torch: any batch; ONNX exported at a fixed batch of 2: two of the three streams a
    call, a lone frame padded), every frame of every file appears exactly once, in order, with the
    box a run of that file alone gives."""
    path = model if kind == "rpol" else fixed_batch_onnx
    together = tmp_path / "all.jsonl"
    args = [a for v in videos for a in ("--source", v)]
    res = cli("run", path, *args, "--jsonl", together, "--summary", tmp_path / "s.json")
    assert res.exit_code == 0, res.output
    records = read_jsonl(together)
    for i, n in enumerate(LENGTHS):
        assert [r["frame"] for r in records if r["stream"] == i] == list(range(n))
    alone: dict[tuple[object, object], tuple[object, object]] = {}
    for i, v in enumerate(videos):
        one = tmp_path / f"one{i}.jsonl"
        assert cli("run", path, "--source", v, "--jsonl", one).exit_code == 0
        alone |= {(i, f): b for (_, f), b in _boxes(read_jsonl(one)).items()}
    got = _boxes(records)
    assert {k: box for k, (box, _) in got.items()} == {k: box for k, (box, _) in alone.items()}
    # Scores: the batched convolution may round differently in the last digit, never more.
    assert all(abs(got[k][1] - alone[k][1]) < 1e-5 for k in got)  # type: ignore[operator]
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["frames"] == sum(LENGTHS) and [p["frames"] for p in s["streams"]] == list(LENGTHS)
    assert [p["ended_by"] for p in s["streams"]] == ["end of stream"] * 3
    batches = {r["batch"] for r in records}
    if kind == "rpol":  # three files read as fast as they decode: frames meet in batches
        assert s["batch_size"]["max"] == 3 and max(batches) == 3, s["batch_size"]
    else:  # the graph takes two frames a call: never more than two streams together
        assert max(batches) == 2 and s["batch_size"]["max"] == 2, s["batch_size"]


def test_per_stream_videos_mosaic_and_frames(model: Path, videos: list[Path], tmp_path: Path) -> None:
    """{stream} gives one video per stream; without it the video is a mosaic of the streams."""
    args = [a for v in videos[:2] for a in ("--source", v)]
    res = cli(
        "run", model, *args, "--save", tmp_path / "out_{stream}.mp4", "--save-frames", tmp_path / "frames",
        "--max-frames", 4,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    for i in range(2):
        assert len(decode_video(tmp_path / f"out_{i}.mp4")) == 4
        assert decode_video(tmp_path / f"out_{i}.mp4")[0].shape == (FRAME_H, FRAME_W, 3)
    names = sorted(p.name for p in (tmp_path / "frames").iterdir())
    assert names == [f"s{i}_frame_{k:06d}.jpg" for i in range(2) for k in range(4)]
    res = cli("run", model, *args, "--save", tmp_path / "mosaic.mp4")
    assert res.exit_code == 0, res.output
    mosaic = decode_video(tmp_path / "mosaic.mp4")
    w, h = tile_size(2)
    assert mosaic[0].shape == (h, 2 * w, 3)
    # One picture per round: as many as the longer file has frames (the shorter one's last stays).
    assert len(mosaic) == max(LENGTHS[:2])


def test_sources_file(model: Path, videos: list[Path], tmp_path: Path) -> None:
    listing = tmp_path / "cams.txt"
    listing.write_text(f"# two files\n{videos[0]}\n\n  {videos[1]}  \n")
    res = cli("run", model, "--sources", listing, "--jsonl", tmp_path / "r.jsonl")
    assert res.exit_code == 0, res.output
    assert {r["stream"] for r in read_jsonl(tmp_path / "r.jsonl")} == {0, 1}
    empty = tmp_path / "none.txt"
    empty.write_text("# nothing\n")
    for arg, message in ((empty, "no source in it"), (tmp_path / "missing.txt", "cannot read it")):
        res = cli("run", model, "--sources", arg)
        assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output, res.output


class Recording(Sink):
    needs_image = False

    def __init__(self) -> None:
        self.times: dict[int, list[float]] = {}

    def write(self, result: object, image: np.ndarray | None) -> None:
        frame = result.frame  # type: ignore[attr-defined]
        self.times.setdefault(frame.stream, []).append(time.monotonic())


def test_a_killed_stream_reconnects_and_the_other_keeps_its_pace(model: Path) -> None:
    """Two 15 FPS MJPEG servers; one is stopped for 2 s and started again on its port. The other
    stream's frames keep arriving through the gap; the killed one reconnects; the summary counts it."""
    steady, flaky = MjpegServer(frames_bgr(8)), MjpegServer(frames_bgr(8))
    steady.start()
    flaky.start()
    sink = Recording()
    gap: list[float] = []

    def outage() -> None:
        time.sleep(2.0)
        gap.append(time.monotonic())
        flaky.stop()
        time.sleep(2.0)
        flaky.start()  # same port
        gap.append(time.monotonic())

    killer = threading.Thread(target=outage, daemon=True)
    try:
        with open_runtime(model, "torch") as rt:
            killer.start()
            s = run_live(
                rt,
                [parse_source(steady.url), parse_source(flaky.url)],
                [sink],
                max_frames=90,
                open_timeout=10,
            )
    finally:
        steady.stop()
        flaky.stop()
    steady_part, flaky_part = s.streams
    assert steady_part.stream_drops == 0 and steady_part.ended_by == "max frames"
    assert flaky_part.stream_drops == 1 and flaky_part.reconnects == 1, flaky_part
    assert s.stream_drops == 1 and s.reconnects == 1
    during = [t for t in sink.times[0] if gap[0] + 0.5 < t < gap[1]]
    assert len(during) >= 0.5 * steady.fps * (gap[1] - gap[0] - 0.5), len(during)  # kept its pace
    assert any(t > gap[1] for t in sink.times[1])  # frames again after the restart


class _Fake:
    """A stream for the batcher: frames become ready at set times."""

    def __init__(self, ready_at: list[float], t0: float, wake: threading.Event) -> None:
        self.ready_at, self.t0, self.wake, self.taken = ready_at, t0, wake, 0

    @property
    def finished(self) -> bool:
        return self.taken == len(self.ready_at)

    def take(self) -> int | None:
        if self.taken < len(self.ready_at) and time.perf_counter() >= self.t0 + self.ready_at[self.taken]:
            self.taken += 1
            return self.taken
        return None


def test_batcher_waits_a_bounded_time_for_a_slow_stream() -> None:
    wake, stop = threading.Event(), threading.Event()
    t0 = time.perf_counter()
    fast, slow = _Fake([0.0, 0.0], t0, wake), _Fake([5.0], t0, wake)
    batcher = Batcher([fast, slow], max_items=2, wait_s=0.05, wake=wake)
    batch = batcher.gather(stop)
    took = time.perf_counter() - t0
    assert batch == [1] and 0.04 <= took < 1.0  # waited for the slow one, but only 50 ms
    assert batcher.gather(stop) == [2]


def test_batcher_round_robin_over_more_streams_than_the_batch() -> None:
    wake, stop = threading.Event(), threading.Event()
    t0 = time.perf_counter()
    streams = [_Fake([0.0] * 4, t0, wake) for _ in range(3)]
    batcher = Batcher(streams, max_items=2, wait_s=0.0, wake=wake)
    batches = [batcher.gather(stop) for _ in range(6)]
    assert [len(b or []) for b in batches] == [2] * 6
    assert [s.taken for s in streams] == [4, 4, 4]  # every stream got its turn
    assert batcher.gather(stop) is None  # all finished


def test_mosaic_layout() -> None:
    assert [grid(n) for n in (1, 2, 3, 4, 5, 8, 9)] == [
        (1, 1),
        (2, 1),
        (2, 2),
        (2, 2),
        (3, 2),
        (3, 3),
        (3, 3),
    ]
    assert tile_size(4) == (640, 480) and tile_size(9) == (640, 480) and tile_size(16) == (480, 360)
    tall = np.full((200, 100, 3), 255, np.uint8)
    boxed = letterbox(tall, (400, 300))
    assert boxed.shape == (300, 400, 3)
    cols = np.flatnonzero(boxed[150, :, 0] > 0)
    assert (cols[0], cols[-1]) == (125, 274)  # 150 wide, centred


def test_mosaic_emits_once_per_round() -> None:
    class Count(Sink):
        def __init__(self) -> None:
            self.shapes: list[tuple[int, ...]] = []

        def write(self, result: object, image: np.ndarray | None) -> None:
            assert image is not None
            self.shapes.append(image.shape)

    inner = Count()
    mosaic = MosaicSink(3, [inner])
    frame = np.zeros((240, 320, 3), np.uint8)

    def result(stream: int) -> object:
        return type("R", (), {"frame": type("F", (), {"stream": stream})()})()

    for stream in (0, 1, 2, 0, 0, 1):  # a full round, then stream 0 twice: the second starts a round
        mosaic.write(result(stream), frame)  # type: ignore[arg-type]
    assert len(inner.shapes) == 2 and inner.shapes[0] == (960, 1280, 3)
    mosaic.close()  # what is pending is shown
    assert len(inner.shapes) == 3


def test_a_source_that_never_opens_leaves_the_others_running(
    model: Path, videos: list[Path], tmp_path: Path
) -> None:
    """Of two sources, a network one nobody serves: the file runs to its end, the dead one is
    retried on its own, counted and given up; the run says a source was lost (exit 1). Alone, the
    same dead source is the one-line error it always was (exit 2)."""
    from live_support import free_port

    dead = f"http://127.0.0.1:{free_port()}/stream.mjpg"
    summary = tmp_path / "s.json"
    res = cli(
        "run", model, "--source", videos[0], "--source", dead, "--open-timeout", 1, "--max-reconnects", 1,
        "--jsonl", tmp_path / "r.jsonl", "--summary", summary,
    )  # fmt: skip
    assert res.exit_code == 1, res.output
    s = json.loads(summary.read_text())
    assert s["stop_reason"] == "source lost" and s["frames"] == LENGTHS[0]
    file_part, dead_part = s["streams"]
    assert (file_part["ended_by"], file_part["frames"]) == ("end of stream", LENGTHS[0])
    assert dead_part["ended_by"] == "source lost" and dead_part["stream_drops"] == 1
    assert dead_part["reconnect_attempts"] == 1 and dead_part["frames"] == 0
    res = cli("run", model, "--source", dead, "--open-timeout", 1)
    assert res.exit_code == 2 and "cannot open" in res.output and "Traceback" not in res.output
