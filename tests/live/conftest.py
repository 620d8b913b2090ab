"""Fixtures of the live tests: the session's model, an MJPEG server, a server that never answers."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from live_support import frames_bgr

from benchmarks.product.mjpeg_server import MjpegServer


@pytest.fixture(scope="module")
def model(sample_model: Path) -> Path:
    """The session's lite0 model (conftest: fitted once on the sample's train split at input 224)."""
    return sample_model


@pytest.fixture
def mjpeg_server() -> Iterator[MjpegServer]:
    server = MjpegServer(frames_bgr(8))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A port that accepts connections (the kernel backlog) but never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield f"http://127.0.0.1:{s.getsockname()[1]}/"
