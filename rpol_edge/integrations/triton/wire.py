"""The framing between the Triton Python-backend model and its rpol-edge worker: one message is an
8-byte little-endian header length, a JSON header, then raw array bytes.

Standard library and numpy only: the same file is imported by the worker (rpol-edge's environment)
and copied beside the server's ``model.py`` (the server environment, numpy < 2), so both ends read
one definition. Arrays travel as their raw bytes with shapes in the header: no pickling, so neither
side runs code the other sent.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from typing import Any, BinaryIO

import numpy as np

HEADER = struct.Struct("<Q")
MAX_HEADER = 1 << 24
"""A header larger than this is a broken stream, not a message."""


class WireClosed(EOFError):
    """The other end closed the pipe (it exited or was killed)."""


def send(stream: BinaryIO, header: dict[str, Any], arrays: Sequence[np.ndarray] = ()) -> None:
    text = json.dumps(header).encode()
    stream.write(HEADER.pack(len(text)))
    stream.write(text)
    for a in arrays:
        stream.write(np.ascontiguousarray(a).data)
    stream.flush()


def read_exact(stream: BinaryIO, n: int) -> bytes:
    chunks = []
    left = n
    while left:
        chunk = stream.read(left)
        if not chunk:
            raise WireClosed(f"pipe closed with {left} of {n} bytes unread")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def receive_header(stream: BinaryIO) -> dict[str, Any]:
    (n,) = HEADER.unpack(read_exact(stream, HEADER.size))
    if n > MAX_HEADER:
        raise WireClosed(f"header of {n} bytes: the stream is out of step")
    header = json.loads(read_exact(stream, n))
    if not isinstance(header, dict):
        raise WireClosed("header is not a JSON object")
    return header


def receive_array(stream: BinaryIO, shape: list[int], dtype: str) -> np.ndarray:
    dt = np.dtype(dtype)
    count = int(np.prod(shape)) if shape else 1
    return np.frombuffer(read_exact(stream, count * dt.itemsize), dt).reshape(shape)
