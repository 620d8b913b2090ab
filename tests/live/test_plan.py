"""The output plan of a live run: files per stream or shared, the mosaic choice, the sink layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from rpol_edge.live.mosaic import MosaicSink
from rpol_edge.live.outputs import FramesSink, JsonlSink, VideoSink, WindowSink
from rpol_edge.live.plan import OutputPlan, SinkPlan, pattern_root, per_stream


def test_stream_field_names_one_file_per_stream() -> None:
    plan = OutputPlan(2, save=Path("out/v_{stream}.mp4"), jsonl=Path("all.jsonl"), summary=Path("s.json"))
    assert plan.files() == {
        ("save", 0): Path("out/v_0.mp4"),
        ("save", 1): Path("out/v_1.mp4"),
        ("jsonl", None): Path("all.jsonl"),
        ("summary", None): Path("s.json"),
    }
    assert per_stream(Path("a/{stream}/b.jsonl"), 3) == Path("a/3/b.jsonl")


def test_frame_folders_and_what_sources_must_not_read() -> None:
    assert OutputPlan(3, save_frames=Path("f/{stream}")).frame_folders() == [
        Path("f/0"),
        Path("f/1"),
        Path("f/2"),
    ]
    assert OutputPlan(3, save_frames=Path("frames")).frame_folders() == [Path("frames")]
    assert OutputPlan(2, save_frames=Path("out/s{stream}/x")).written() == [Path("out")]
    assert pattern_root(Path("frames")) == Path("frames")
    assert OutputPlan(2).written() == [] and OutputPlan(2).files() == {}


def test_several_streams_share_one_video_and_window_as_a_mosaic() -> None:
    plan = OutputPlan(2, show=True, save=Path("m.mp4"), save_frames=Path("frames"), jsonl=Path("r.jsonl"))
    shared, own = plan.layout()
    assert shared == [SinkPlan("window"), SinkPlan("video", Path("m.mp4"))]
    # a frames folder the streams share names its files by stream
    assert own == [SinkPlan("frames", Path("frames"), None, True), SinkPlan("jsonl", Path("r.jsonl"))]
    assert plan.mosaic


def test_per_stream_videos_are_not_tiled() -> None:
    plan = OutputPlan(2, save=Path("v{stream}.mp4"), save_frames=Path("f{stream}"))
    shared, own = plan.layout()
    assert shared == [] and not plan.mosaic
    assert own == [
        SinkPlan("video", Path("v0.mp4"), 0),
        SinkPlan("video", Path("v1.mp4"), 1),
        SinkPlan("frames", Path("f0"), 0),
        SinkPlan("frames", Path("f1"), 1),
    ]


def test_one_stream_never_tiles() -> None:
    plan = OutputPlan(1, show=True, save=Path("v{stream}.mp4"))
    assert plan.layout()[0] == [SinkPlan("window"), SinkPlan("video", Path("v0.mp4"), 0)]
    assert not plan.mosaic


def test_save_must_be_mp4() -> None:
    with pytest.raises(ValueError, match=r"save=out.avi: give an .mp4 file name"):
        OutputPlan(1, save=Path("out.avi")).layout()


def test_sinks_built_from_the_layout(tmp_path: Path) -> None:
    plan = OutputPlan(
        2,
        save=tmp_path / "m.mp4",
        save_fps=12.0,
        save_frames=tmp_path / "f{stream}",
        jsonl=tmp_path / "r.jsonl",
    )
    sinks = plan.sinks()
    assert [type(s) for s in sinks] == [MosaicSink, FramesSink, FramesSink, JsonlSink]
    assert [s.stream for s in sinks] == [None, 0, 1, None]
    inner = sinks[0].inner  # type: ignore[attr-defined]
    assert [type(s) for s in inner] == [VideoSink] and inner[0].fps == 12.0
    one = OutputPlan(1, show=True).sinks()
    assert [type(s) for s in one] == [WindowSink]
    for sink in sinks + one:
        sink.close()
