"""Sources read through ``cv2.VideoCapture``: V4L2 cameras, Jetson CSI cameras, RTSP, video files.

One class covers them all because VideoCapture already is the abstraction; what differs is the
target string, the backend, and whether the source is live or reconnectable, decided by the
factories below. The FFMPEG backend gets explicit open/read timeouts (it otherwise waits ~30 s on
a dead RTSP host); the others are bounded by ``call_within``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from rpol_edge.live._opencv import cv2
from rpol_edge.live.sources import (
    Captured,
    CorruptFrame,
    OpenFailed,
    Source,
    SourceError,
    StreamDropped,
    call_within,
)

READ_TIMEOUT_S = 5.0
"""A live FFMPEG stream that delivers nothing this long counts as dropped (then reconnects)."""


class CaptureSource(Source):
    def __init__(
        self,
        uri: str,
        target: str | int,
        api: int,
        kind: str,
        is_live: bool,
        can_reconnect: bool = False,
    ) -> None:
        super().__init__(uri, is_live, can_reconnect)
        self.target = target
        self.api = api
        self.kind = kind
        self._cap: cv2.VideoCapture | None = None

    def open(self, timeout: float) -> None:
        self.close()
        params: list[int] = []
        if self.api == cv2.CAP_FFMPEG:
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                int(timeout * 1000),
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                int(READ_TIMEOUT_S * 1000),
            ]

        def attempt() -> cv2.VideoCapture | None:
            try:
                cap = cv2.VideoCapture(self.target, self.api, params)
            except cv2.error:
                return None
            if cap.isOpened():
                return cap
            cap.release()
            return None

        cap = call_within(attempt, timeout + 1.0, self.uri)
        if cap is None:
            raise OpenFailed(f"OpenCV could not open it as a {self.kind}")
        self._cap = cap
        self.is_open = True

    def read(self) -> Captured | None:
        if self._cap is None:
            raise StreamDropped("not open")
        # grab() waits for the next frame, retrieve() decodes it: split so a live frame's
        # latency starts when it arrived, not when we started waiting for it.
        ok = self._cap.grab()
        arrived = time.perf_counter() if self.is_live else None
        frame = self._cap.retrieve()[1] if ok else None
        if not ok:
            if self.is_live:
                raise StreamDropped("no frame (stream lost or read timeout)")
            return None
        if frame is None or frame.ndim != 3 or frame.shape[2] != 3 or frame.size == 0:
            raise CorruptFrame(f"frame of unexpected shape {getattr(frame, 'shape', None)}")
        position = None if self.is_live else round(float(self._cap.get(cv2.CAP_PROP_POS_MSEC)) / 1e3, 6)
        return Captured(frame, arrived=arrived, position_s=position)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        self.is_open = False

    @property
    def fps(self) -> float | None:
        if self._cap is None:
            return None
        fps = float(self._cap.get(cv2.CAP_PROP_FPS))
        return fps if 0.5 <= fps <= 1000 else None

    @property
    def length(self) -> int | None:
        if self._cap is None or self.is_live:
            return None
        n = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        return n if n > 0 else None


def _device_api() -> int:
    return cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY


def camera_source(uri: str) -> Source:
    """camera://N: a local camera by index (V4L2 on Linux, the platform default elsewhere)."""
    text = uri.split("://", 1)[1]
    if not text.isdigit():
        raise SourceError(f"{uri}: expected camera://N with N a camera index")
    return CaptureSource(uri, int(text), _device_api(), "camera", is_live=True)


def v4l2_source(uri: str) -> Source:
    """v4l2:///dev/videoN: a V4L2 device node."""
    path = uri.split("://", 1)[1]
    if not path.startswith("/dev/"):
        raise SourceError(f"{uri}: expected v4l2:///dev/videoN")
    return CaptureSource(uri, path, cv2.CAP_V4L2, "V4L2 camera", is_live=True)


def stream_source(uri: str) -> Source:
    """rtsp(s)://...: decoded by FFMPEG, live and reconnectable."""
    return CaptureSource(uri, uri, cv2.CAP_FFMPEG, "network stream", is_live=True, can_reconnect=True)


def video_file_source(path: Path) -> Source:
    """A local video file: every frame is processed, in order."""
    return CaptureSource(str(path), str(path), cv2.CAP_ANY, "video file", is_live=False)


def has_gstreamer() -> bool:
    """True when this cv2 was built with GStreamer (PyPI wheels are not; JetPack's OpenCV is)."""
    for line in cv2.getBuildInformation().splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "GStreamer":
            return value.strip().upper().startswith("YES")
    return False


def csi_pipeline(sensor: int, width: int = 1280, height: int = 720, fps: int = 30, flip: int = 0) -> str:
    """The nvarguscamerasrc -> BGR appsink pipeline; appsink keeps one buffer so frames are never stale."""
    return (
        f"nvarguscamerasrc sensor-id={sensor} ! "
        f"video/x-raw(memory:NVMM), width={width}, height={height}, framerate={fps}/1, format=NV12 ! "
        f"nvvidconv flip-method={flip} ! video/x-raw, format=BGRx ! videoconvert ! "
        "video/x-raw, format=BGR ! appsink drop=true max-buffers=1 sync=false"
    )


def csi_source(uri: str) -> Source:
    """csi://N?width=&height=&fps=&flip=: a Jetson CSI camera through GStreamer."""
    parts = urlsplit(uri)
    if not parts.netloc.isdigit():
        raise SourceError(f"{uri}: expected csi://N with N the sensor id")
    if not has_gstreamer():
        raise SourceError(
            f"{uri}: this OpenCV ({cv2.__version__}, {Path(cv2.__file__).parent}) has no GStreamer support, "
            "which the nvarguscamerasrc pipeline needs. On a Jetson use JetPack's OpenCV: "
            "apt install python3-opencv, create the venv with --system-site-packages, "
            "and pip uninstall opencv-python opencv-python-headless from it"
        )
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    try:
        opts = {k: int(query[k]) for k in ("width", "height", "fps", "flip") if k in query}
    except ValueError:
        raise SourceError(f"{uri}: width, height, fps and flip must be integers") from None
    unknown = sorted(set(query) - {"width", "height", "fps", "flip"})
    if unknown:
        raise SourceError(
            f"{uri}: unknown option(s) {', '.join(unknown)}; accepted: width, height, fps, flip"
        )
    return CaptureSource(
        uri, csi_pipeline(int(parts.netloc), **opts), cv2.CAP_GSTREAMER, "CSI camera", is_live=True
    )
