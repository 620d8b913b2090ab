"""The ONNX contract (input and output names) and the metadata record of an exported graph, read
from the file without loading the graph and without the ``onnx`` package: runtimes and
``info`` need it where PyTorch and onnx are not installed."""

from __future__ import annotations

from pathlib import Path

from rpol_edge.core.metadata import MetadataError, ModelMeta
from rpol_edge.core.onnx_props import input_dims, metadata_props, read_buffer

META_KEY = "rpol_edge"
DEEPSTREAM_KEY = "rpol_edge_deepstream"
"""The key of the DeepStream hand-off graph's record (``evaluate.deepstream_decode`` reads it)."""


INPUT = "frames"


OUTPUTS = ("score", "mask", "peak")
"""score (N, M, K, K) float32, mask (N, M, K, K) uint8, peak (N, M) float32 (core/localizer.py)."""

MAP_OUTPUTS = OUTPUTS[:2]
"""The outputs of graphs exported before ``peak`` was added: they run, and ``--boxes all`` ranks
their boxes by the score map alone."""


def recorded_outputs(meta: ModelMeta) -> tuple[str, ...]:
    """The outputs of the graph ``meta`` was exported with (its record's ``outputs``; graphs
    exported before the record had them have `MAP_OUTPUTS`)."""
    return OUTPUTS if meta.extra.get("outputs") == ",".join(OUTPUTS) else MAP_OUTPUTS


def graph_outputs(names: list[str] | tuple[str, ...]) -> tuple[str, ...] | None:
    """The outputs a runtime fetches from a graph whose outputs are ``names`` (in order):
    `OUTPUTS`, `MAP_OUTPUTS` for an older graph, None for a graph rpol-edge did not export."""
    return tuple(names) if tuple(names) in (OUTPUTS, MAP_OUTPUTS) else None


def read_onnx_meta(path: Path, buf: memoryview | None = None) -> ModelMeta:
    """The metadata record stored in an ONNX file, read without loading the graph (or ``onnx``);
    ``buf``: the file's bytes when the caller reads more from it (:func:`read_onnx_header`)."""
    try:
        props = metadata_props(path if buf is None else buf)
    except (OSError, ValueError) as exc:
        raise MetadataError(f"{path}: not a readable ONNX file ({exc.__class__.__name__})") from None
    if META_KEY not in props:
        if DEEPSTREAM_KEY in props:  # the float-input graph of export --deepstream: nvinfer's, not ours
            raise MetadataError(
                f"{path}: the DeepStream hand-off graph (float NCHW input for nvinfer); rpol-edge runs "
                "the model.onnx exported beside it"
            )
        raise MetadataError(f"{path}: no rpol-edge metadata (not exported by rpol-edge export?)")
    return ModelMeta.from_json(props[META_KEY], str(path))


def onnx_batch_range(path: Path, buf: memoryview | None = None) -> tuple[int, int | None]:
    """(min, max) batch the graph accepts: a fixed first dimension, or (1, None) when symbolic."""
    try:
        first = input_dims(path if buf is None else buf, INPUT)[0]
    except (OSError, ValueError, IndexError) as exc:
        raise MetadataError(f"{path}: cannot read the shape of input {INPUT!r} ({exc})") from None
    return (first, first) if isinstance(first, int) and first > 0 else (1, None)


def read_onnx_header(path: Path) -> tuple[ModelMeta, tuple[int, int | None]]:
    """Metadata and batch range from one read of the file (a runtime needs both before it opens)."""
    try:
        buf = read_buffer(path)
    except OSError as exc:
        raise MetadataError(f"{path}: not a readable ONNX file ({exc.__class__.__name__})") from None
    return read_onnx_meta(path, buf), onnx_batch_range(path, buf)
