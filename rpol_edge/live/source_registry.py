"""Which source a URI or path means: a registry keyed by URI scheme, then what is on disk.

A new kind of source is one entry in ``SCHEMES``; an unknown scheme is answered with the accepted
ones. The OpenCV and MJPEG implementations are imported only when their scheme is chosen, so the
CLI's help text (``accepted_sources``) does not load OpenCV.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rpol_edge.data import DatasetError
from rpol_edge.data.folder import GLOB_CHARS, expand_images
from rpol_edge.data.images import is_image_path
from rpol_edge.live.image_sources import ImageFilesSource
from rpol_edge.live.sources import Source, SourceError, check_network_uri


@dataclass(frozen=True)
class SourceKind:
    scheme: str
    example: str
    factory: Callable[[str], Source]
    """Builds the (unopened) source from the full URI; raises SourceError on a malformed one."""


def _camera(uri: str) -> Source:
    from rpol_edge.live.opencv_sources import camera_source

    return camera_source(uri)


def _v4l2(uri: str) -> Source:
    from rpol_edge.live.opencv_sources import v4l2_source

    return v4l2_source(uri)


def _csi(uri: str) -> Source:
    from rpol_edge.live.opencv_sources import csi_source

    return csi_source(uri)


def _rtsp(uri: str) -> Source:
    from rpol_edge.live.opencv_sources import stream_source

    check_network_uri(uri)
    return stream_source(uri)


def _http(uri: str) -> Source:
    from rpol_edge.live.mjpeg import MjpegSource

    return MjpegSource(uri)


def _file(uri: str) -> Source:
    return path_source(uri[len("file://") :])


SCHEMES: dict[str, SourceKind] = {
    k.scheme: k
    for k in (
        SourceKind("camera", "camera://N (same as --camera N)", _camera),
        SourceKind("csi", "csi://N (Jetson CSI camera; options ?width=&height=&fps=&flip=)", _csi),
        SourceKind("v4l2", "v4l2:///dev/videoN", _v4l2),
        SourceKind("rtsp", "rtsp://host/stream", _rtsp),
        SourceKind("rtsps", "rtsps://host/stream", _rtsp),
        SourceKind("http", "http://host/stream (MJPEG)", _http),
        SourceKind("https", "https://host/stream (MJPEG)", _http),
        SourceKind("file", "file:///path", _file),
    )
}

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")


def accepted_sources() -> str:
    """The accepted forms in one line, for error messages."""
    return ", ".join(k.example for k in SCHEMES.values()) + ", or a video file, image file, folder or glob"


def parse_source(uri: str, exclude: Sequence[Path] = ()) -> Source:
    """A URI or path -> an unopened source; raises SourceError naming the accepted forms."""
    m = _SCHEME.match(uri)
    if m is None:
        return path_source(uri, exclude)
    scheme = m.group(1).lower()
    if scheme not in SCHEMES:
        raise SourceError(f"{uri}: unknown source scheme {scheme!r}; accepted: {accepted_sources()}")
    return SCHEMES[scheme].factory(uri)


def path_source(text: str, exclude: Sequence[Path] = ()) -> Source:
    """Glob, folder, image file or video file, decided by what is on disk."""
    path = Path(text).expanduser()
    if path.is_dir() or (not path.exists() and any(c in text for c in GLOB_CHARS)):
        try:  # the one rule for folders (recursive) and patterns, shared with predict and explain
            paths = expand_images([text], exclude)
        except DatasetError as exc:
            raise SourceError(str(exc)) from None
        return ImageFilesSource(text, paths, "image folder" if path.is_dir() else "image glob")
    if not path.is_file():
        raise SourceError(f"{text}: no such file or folder (accepted sources: {accepted_sources()})")
    if is_image_path(path):
        return ImageFilesSource(text, [path], "image file")
    from rpol_edge.live.opencv_sources import video_file_source

    return video_file_source(path)
