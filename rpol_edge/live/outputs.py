"""Where results go: JSONL records, an annotated video, annotated frames, a window. Any combination.

Every sink runs on the pipeline's output thread, after inference, so a slow disk or display only
ever backs up the output queue, never capture. Sinks that need the overlay say so
(``needs_image``); when none does, the overlay is not drawn at all. Files and folders are created
at the first frame, so a run that fails before one (an unreadable source) leaves none, empty.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TextIO

import numpy as np

from rpol_edge.live._opencv import cv2
from rpol_edge.live.frames import FrameResult, frame_record

log = logging.getLogger("rpol_edge.live")


class Sink(ABC):
    needs_image: bool = True
    stop_requested: bool = False
    """Set by a sink that wants the run to end (window closed, q pressed)."""
    stream: int | None = None
    """The one source whose frames this sink gets (None: every source's)."""

    def start(self, live: bool, fps: float | None) -> None:  # noqa: B027 - optional hook
        """Called once before the first frame, when the sources are open: whether what this sink
        gets is live (on the sources' clock) and its declared frame rate, if any."""

    @abstractmethod
    def write(self, result: FrameResult, image: np.ndarray | None) -> None:
        """``image`` is the BGR overlay when any sink needs one, else None."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and finalize; called exactly once, also after Ctrl-C, SIGTERM or an error."""


class JsonlSink(Sink):
    """One JSON object per line, flushed per line so a killed run still leaves whole, readable lines."""

    needs_image = False

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fh: TextIO | None = None

    def write(self, result: FrameResult, image: np.ndarray | None) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("w", encoding="utf-8")
        self._fh.write(json.dumps(frame_record(result)) + "\n")
        self._fh.flush()

    def close(self) -> None:
        fh = self._fh
        if fh is not None and not fh.closed:
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()


class VideoSink(Sink):
    """Annotated MP4 (mp4v), written under a hidden temporary name and renamed when complete.

    A reader never sees a half-written file under the final name; a killed run leaves only the
    hidden ``.NAME.PID.partial.mp4``. Files and folders get one video frame per processed frame.
    A live source is processed at whatever rate inference allows, so its frames are repeated to
    follow their capture timestamps and the video plays in real time at its frame rate (a frozen
    picture over an outage, at most ``MAX_REPEAT_S``); the timeline is the frames' monotonic
    capture times, never the wall clock. Frames whose size differs from the first one (image
    folders) are resized to it, since a video has one frame size.
    """

    FOURCC = "mp4v"
    MAX_REPEAT_S = 5.0

    def __init__(self, path: Path, fps: float | None = None) -> None:
        self.path = Path(path)
        self.fps = fps
        self.frames = 0
        self.live = False
        # The real suffix stays last: VideoWriter picks the container from it.
        self.partial = self.path.with_name(
            f".{self.path.name}.{os.getpid()}.partial{self.path.suffix or '.mp4'}"
        )
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self._t0 = 0.0

    def start(self, live: bool, fps: float | None) -> None:
        self.live = live
        if self.fps is None:
            self.fps = fps or 25.0

    def write(self, result: FrameResult, image: np.ndarray | None) -> None:
        assert image is not None and self.fps is not None
        if self._writer is None:
            h, w = image.shape[:2]
            self._size = (w, h)
            fourcc = cv2.VideoWriter.fourcc(*self.FOURCC)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            writer = cv2.VideoWriter(str(self.partial), fourcc, self.fps, (w, h))
            if not writer.isOpened():
                raise OSError(f"{self.path}: OpenCV cannot write {self.FOURCC} video here")
            self._writer = writer
            self._t0 = result.frame.started
        assert self._size is not None
        if (image.shape[1], image.shape[0]) != self._size:
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        copies = 1
        if self.live:
            # Frames the timeline needs by now, on the monotonic capture clock: wall-clock time
            # jumps (NTP sync on a Jetson) would freeze or fast-forward the recording.
            due = int((result.frame.started - self._t0) * self.fps) + 1
            copies = min(max(1, due - self.frames), int(self.fps * self.MAX_REPEAT_S))
        for _ in range(copies):
            self._writer.write(image)
        self.frames += copies

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            os.replace(self.partial, self.path)
            log.info("wrote %s (%d frames at %.3g fps)", self.path, self.frames, self.fps)
        self.partial.unlink(missing_ok=True)


class FramesSink(Sink):
    """One annotated JPEG per frame, named by the capture index (and the stream, for a folder that
    several streams share: ``s1_frame_000042.jpg``)."""

    def __init__(self, folder: Path, name_streams: bool = False) -> None:
        self.folder = Path(folder)
        self.name_streams = name_streams
        self._made = False

    def write(self, result: FrameResult, image: np.ndarray | None) -> None:
        assert image is not None
        if not self._made:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._made = True
        prefix = f"s{result.frame.stream}_" if self.name_streams else ""
        path = self.folder / f"{prefix}frame_{result.frame.index:06d}.jpg"
        if not cv2.imwrite(str(path), image):
            raise OSError(f"{path}: could not write the frame")


GUI_HINT = (
    "for a window, replace it with a GUI build: pip uninstall -y opencv-python-headless && "
    "pip install opencv-python (on a Jetson: JetPack's python3-opencv, in a venv made with "
    "--system-site-packages; docs/jetson.md)"
)


class WindowSink(Sink):
    """An OpenCV window; q or Esc or closing it ends the run.

    Optional by design: headless OpenCV builds (the default wheel) have no GUI, and a GUI build
    without a display can abort the process inside Qt, so both are checked and reported once, and
    the run goes on without a window.
    """

    def __init__(self, title: str = "rpol-edge") -> None:
        self.title = title
        self.enabled = True
        self._shown = False

    def write(self, result: FrameResult, image: np.ndarray | None) -> None:
        if not self.enabled:
            return
        assert image is not None
        if not self._shown and sys.platform.startswith("linux"):
            if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
                self._disable("no display (DISPLAY and WAYLAND_DISPLAY are unset)")
                return
        try:
            cv2.imshow(self.title, image)
            key = cv2.waitKey(1) & 0xFF
        except cv2.error:
            self._disable(f"this OpenCV has no GUI support (opencv-python-headless?); {GUI_HINT}")
            return
        self._shown = True
        if key in (27, ord("q")):
            self.stop_requested = True
        elif cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            self.stop_requested = True

    def _disable(self, why: str) -> None:
        self.enabled = False
        log.warning("--show: %s; going on without a window", why)

    def close(self) -> None:
        if self._shown:
            try:
                cv2.destroyWindow(self.title)
                cv2.waitKey(1)
            except cv2.error:
                pass
