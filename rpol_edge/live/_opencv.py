"""OpenCV for the live package, imported through here so that OpenCV and FFMPEG stay quiet.

A camera index that does not exist, a truncated MP4 or a refused RTSP connection otherwise print
their own lines (``[ WARN:0@2.1] ... can't open camera by index``, ``moov atom not found``,
``Connection refused``) around the one-line error `run` gives, several per retry. FFMPEG reads
``OPENCV_FFMPEG_LOGLEVEL`` when its first capture or writer is created, so setting it here, before
any live module uses OpenCV, is early enough even when cv2 itself was imported before. Both are
defaults only: a user who exports ``OPENCV_FFMPEG_LOGLEVEL`` or ``OPENCV_LOG_LEVEL`` to debug a
camera gets their own setting.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET

import cv2  # noqa: E402 - after the environment variable, on purpose

if "OPENCV_LOG_LEVEL" not in os.environ:
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

__all__ = ["cv2"]
