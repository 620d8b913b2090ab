"""Read an ONNX file's metadata_props and its input shapes without the ``onnx`` package.

The runtimes need two facts from an exported graph before they run it: the metadata record (in
``ModelProto.metadata_props``) and the batch dimension of the input. Importing ``onnx`` for that
costs a few hundred milliseconds and tens of MB at every start, and ``onnx.load`` parses every
weight; on a Jetson that is start-up time and shared memory taken from the model. Both facts are a
few small protobuf fields, so they are read straight from the wire format here, skipping the
weights by their length prefix.

Field numbers are from onnx/onnx.proto (stable since IR version 3): ModelProto graph = 7,
metadata_props = 14; GraphProto input = 11; ValueInfoProto name = 1, type = 2; TypeProto
tensor_type = 1; TypeProto.Tensor shape = 2; TensorShapeProto dim = 1; Dimension dim_value = 1,
dim_param = 2; StringStringEntryProto key = 1, value = 2.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class OnnxFormatError(ValueError):
    """The bytes are not a well-formed ONNX (protobuf) message."""


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise OnnxFormatError("truncated or malformed varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(buf: memoryview) -> Iterator[tuple[int, int | memoryview]]:
    """(field number, value) of one message level: ints for varints, views for length-delimited."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
            yield number, value
        elif wire == _LEN:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise OnnxFormatError("a field runs past the end of the file")
            yield number, buf[pos : pos + size]
            pos += size
        elif wire in (_I64, _I32):
            pos += 8 if wire == _I64 else 4
        else:
            raise OnnxFormatError(f"unsupported protobuf wire type {wire}")
    if pos != len(buf):
        raise OnnxFormatError("a field runs past the end of the file")


def _sub(fields: Iterator[tuple[int, int | memoryview]], number: int) -> Iterator[memoryview]:
    for n, value in fields:
        if n == number and isinstance(value, memoryview):
            yield value


def _text(view: memoryview) -> str:
    return bytes(view).decode("utf-8")


def read_buffer(path: Path) -> memoryview:
    """The file's bytes, to read several facts from one read (a graph file is tens of MB)."""
    return memoryview(Path(path).read_bytes())


def _read(src: Path | memoryview) -> memoryview:
    return src if isinstance(src, memoryview) else read_buffer(src)


def metadata_props(src: Path | memoryview) -> dict[str, str]:
    """``ModelProto.metadata_props`` as a dict (``src``: a path, or its :func:`read_buffer`)."""
    props: dict[str, str] = {}
    for entry in _sub(_fields(_read(src)), 14):
        kv = {n: _text(v) for n, v in _fields(entry) if isinstance(v, memoryview)}
        props[kv.get(1, "")] = kv.get(2, "")
    return props


def input_dims(src: Path | memoryview, name: str) -> list[int | str]:
    """The declared shape of graph input ``name``: ints for fixed sizes, names for symbolic ones
    (an empty string for a dimension with neither)."""
    for graph in _sub(_fields(_read(src)), 7):
        for info in _sub(_fields(graph), 11):
            fields = list(_fields(info))
            if next((_text(v) for n, v in fields if n == 1 and isinstance(v, memoryview)), None) != name:
                continue
            dims: list[int | str] = []
            for type_proto in _sub(iter(fields), 2):
                for tensor in _sub(_fields(type_proto), 1):
                    for shape in _sub(_fields(tensor), 2):
                        for dim in _sub(_fields(shape), 1):
                            entry = dict(_fields(dim))
                            value = entry.get(1, entry.get(2, ""))
                            dims.append(_text(value) if isinstance(value, memoryview) else int(value))
            return dims
    raise OnnxFormatError(f"the graph has no input named {name!r}")
