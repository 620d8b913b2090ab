"""What a live run writes and shows, decided from its options alone: one output per stream where a
path holds ``{stream}``, else one output that every stream shares (a tiled mosaic for a video and
the window when there are several streams).

`OutputPlan` is a plain record: its files, folders and sink layout are pure functions of the
options, so `rpol-edge run` and a Python caller of `run_live` plan outputs the same way, and a
command can check every file before the model loads. `OutputPlan.sinks` builds the sinks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from rpol_edge.live.outputs import Sink

STREAM_FIELD = "{stream}"
"""In ``save``, ``jsonl`` and ``save_frames``, replaced by each source's number (0, 1, ...): one
output per stream. Without it, several streams share one output (a tiled mosaic for ``save`` and
``show``)."""

SinkKind = Literal["window", "video", "frames", "jsonl"]


def per_stream(path: Path, stream: int) -> Path:
    """``path`` with ``{stream}`` replaced by the stream's number."""
    return Path(str(path).replace(STREAM_FIELD, str(stream)))


def templated(path: Path | None) -> bool:
    """Whether ``path`` names one output per stream."""
    return path is not None and STREAM_FIELD in str(path)


def pattern_root(path: Path) -> Path:
    """The part of an output path before any ``{stream}``: what the sources must not read from."""
    text = str(path)
    return Path(text[: text.index(STREAM_FIELD)]).parent if STREAM_FIELD in text else path


@dataclass(frozen=True)
class SinkPlan:
    """One output to build: its kind, its file or folder, and the stream it gets."""

    kind: SinkKind
    path: Path | None = None
    stream: int | None = None
    """The one stream whose frames it gets (None: every stream's)."""
    name_streams: bool = False
    """A frames folder that several streams share names its files by stream."""


@dataclass(frozen=True)
class OutputPlan:
    """The outputs of a run of ``n_streams`` sources (the parameters of `rpol-edge run`)."""

    n_streams: int
    show: bool = False
    save: Path | None = None
    """Annotated video (.mp4)."""
    save_fps: float | None = None
    jsonl: Path | None = None
    save_frames: Path | None = None
    """Folder for annotated JPEG frames."""
    summary: Path | None = None
    """End-of-run summary (JSON)."""

    def files(self) -> dict[tuple[str, int | None], Path]:
        """Every file the run writes, keyed by (parameter, stream; None where streams share it)."""
        out: dict[tuple[str, int | None], Path] = {}
        for name in ("save", "jsonl"):
            path = getattr(self, name)
            if templated(path):
                out |= {(name, i): per_stream(path, i) for i in range(self.n_streams)}
            elif path is not None:
                out[name, None] = path
        if self.summary is not None:
            out["summary", None] = self.summary
        return out

    def frame_folders(self) -> list[Path]:
        """The folders of ``save_frames``: one per stream, or one for all."""
        frames = self.save_frames
        if frames is None:
            return []
        return [per_stream(frames, i) for i in range(self.n_streams)] if templated(frames) else [frames]

    def written(self) -> list[Path]:
        """Where this run writes images that a folder or glob source must not read back."""
        return [pattern_root(self.save_frames)] if self.save_frames is not None else []

    def layout(self) -> tuple[list[SinkPlan], list[SinkPlan]]:
        """``(shared, own)``: the image outputs every stream draws into (tiled in one mosaic when
        there are several streams), and the others (per stream where the path holds ``{stream}``)."""
        if self.save is not None and self.save.suffix.lower() != ".mp4":
            raise ValueError(f"save={self.save}: give an .mp4 file name (mp4v codec)")
        shared = [SinkPlan("window")] if self.show else []
        videos = self._each("video", self.save)
        own = videos if len(videos) > 1 else []
        shared += videos if len(videos) == 1 else []
        name_streams = self.n_streams > 1 and not templated(self.save_frames)
        own += self._each("frames", self.save_frames, name_streams)
        own += self._each("jsonl", self.jsonl)
        return shared, own

    @property
    def mosaic(self) -> bool:
        """Whether the shared image outputs tile several streams into one picture."""
        return self.n_streams > 1 and bool(self.layout()[0])

    def sinks(self) -> list[Sink]:
        """The sinks of this plan, in the order the run feeds them."""
        from rpol_edge.live.mosaic import MosaicSink

        shared, own = self.layout()
        built = [self._build(s) for s in shared]
        tiled: list[Sink] = [MosaicSink(self.n_streams, built)] if self.mosaic else built
        return tiled + [self._build(s) for s in own]

    def _each(self, kind: SinkKind, path: Path | None, name_streams: bool = False) -> list[SinkPlan]:
        if path is None:
            return []
        if not templated(path):
            return [SinkPlan(kind, path, None, name_streams)]
        return [SinkPlan(kind, per_stream(path, i), i) for i in range(self.n_streams)]

    def _build(self, plan: SinkPlan) -> Sink:
        from rpol_edge.live.outputs import FramesSink, JsonlSink, VideoSink, WindowSink

        sink: Sink
        if plan.kind == "window":
            sink = WindowSink()
        elif plan.kind == "video":
            assert plan.path is not None
            sink = VideoSink(plan.path, self.save_fps)
        elif plan.kind == "frames":
            assert plan.path is not None
            sink = FramesSink(plan.path, name_streams=plan.name_streams)
        else:
            assert plan.path is not None
            sink = JsonlSink(plan.path)
        if plan.stream is not None:
            sink.stream = plan.stream
        return sink
