"""Export the Localizer (normalization, backbone, folded head, min-max, upsampling, threshold) as
one ONNX graph, with every metadata field in ``metadata_props``.

Input ``frames`` uint8 NHWC (batch fixed or dynamic); outputs ``score`` float32 (N, M, K, K) and
``mask`` uint8 (N, M, K, K). Host code is left with the contour step and the mapping to frame pixels.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rpol_edge.artifact import ModelArtifact, atomic_write
from rpol_edge.export.onnx_props import input_dims, metadata_props, read_buffer
from rpol_edge.extras import require_torch
from rpol_edge.metadata import MetadataError, ModelMeta

if TYPE_CHECKING:
    import torch

# torch is imported inside the export functions only: the runtimes read this module's constants
# and metadata helpers, and running an exported graph must not load torch.

META_KEY = "rpol_edge"
INPUT = "frames"
OUTPUTS = ("score", "mask")
EXPORTERS = ("legacy", "dynamo")
"""legacy (TorchScript) is the default while torch ships it: it writes opset 17 exactly, which TensorRT
10.3 on JetPack 6 parses; dynamo (torch >= 2.9's default) writes opset 18 for this graph."""
DEFAULT_OPSET = {"legacy": 17, "dynamo": 18}
"""The dynamo exporter cannot down-convert this graph (its Pad) to 17, so it defaults to 18."""


class ExportError(RuntimeError):
    """The graph could not be exported, checked, or read back."""


def _onnx():  # type: ignore[no-untyped-def]
    try:
        import onnx
    except ImportError:
        raise ExportError("ONNX export needs onnx: pip install 'rpol-edge[onnx]'") from None
    return onnx


def _trace(
    module: torch.nn.Module, dummy: torch.Tensor, path: Path, opset: int, dynamic: bool, exporter: str
) -> None:
    import torch

    inputs, outputs = [INPUT], list(OUTPUTS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "legacy":
            axes = {INPUT: {0: "batch"}, **{o: {0: "batch"} for o in OUTPUTS}} if dynamic else None
            torch.onnx.export(
                module,
                (dummy,),
                str(path),
                opset_version=opset,
                dynamic_axes=axes,
                dynamo=False,
                input_names=inputs,
                output_names=outputs,
            )
            return
        shapes = ({0: torch.export.Dim("batch", min=1, max=1024)},) if dynamic else None
        program = torch.onnx.export(
            module,
            (dummy,),
            dynamo=True,
            opset_version=opset,
            dynamic_shapes=shapes,
            optimize=True,
            verbose=False,
            input_names=inputs,
            output_names=outputs,
        )
        if program is None:
            raise ExportError("the dynamo exporter returned no program")
        program.save(str(path))


def export_onnx(
    model_path: Path,
    out_path: Path,
    opset: int | None = None,
    batch: tuple[int, int, int] | None = None,
    precision: str = "fp32",
    exporter: str = "legacy",
    simplify: bool = True,
    weights: Path | None = None,
    frame: tuple[int, int, str] | None = None,
    trt_targets: Sequence[str] | None = None,
) -> ModelMeta:
    """Write the fused graph to ``out_path``; ``batch`` (min, opt, max) with min == max fixes the
    batch dimension, anything else (or None) makes it dynamic. ``frame`` (W, H, bgr|rgb) makes the
    graph take raw W x H frames and resize, crop and reorder them itself (`FrameInput`).
    Returns the metadata written.

    The graph must pass the static TensorRT check (:mod:`rpol_edge.export.trt_compat`) for
    ``trt_targets`` (None: every claimed TensorRT version whose opset range holds the graph's
    opset) or nothing is written. ``simplify`` (onnxslim) folds the shape arithmetic of
    TF-"same" padding (INT64 ConstantOfShape, which TensorRT 8.6's matrix does not list) into
    constants."""
    require_torch("ONNX export")
    import torch

    from rpol_edge.build import build_localizer

    onnx = _onnx()
    if exporter not in EXPORTERS:
        raise ExportError(f"unknown exporter {exporter!r}; choose {', '.join(EXPORTERS)}")
    if precision not in ("fp32", "fp16"):
        raise ExportError(f"ONNX precision {precision!r}: choose fp32 or fp16 (INT8 is a separate export)")
    if opset is None:
        opset = DEFAULT_OPSET[exporter]
    artifact = ModelArtifact.load(model_path)
    meta = artifact.meta.replace(opset=opset, precision=precision)
    if meta.n_heads != 1:
        raise ExportError("class-wise models need the class at inference; export a class-agnostic fit")
    localizer = build_localizer(artifact, weights).eval()
    if precision == "fp16":
        localizer.half_backbone()
    module: torch.nn.Module = localizer
    if frame is not None:
        from rpol_edge.export.frame_input import FrameInput

        width, height, fmt = frame
        try:
            module = FrameInput(localizer, width, height, meta.resize_size, fmt).eval()
        except ValueError as exc:
            raise ExportError(str(exc)) from None
        meta = meta.replace(frame_width=width, frame_height=height, frame_format=fmt)
    lo, opt, hi = batch or (1, 1, 0)
    dynamic = batch is None or lo != hi
    # torch.export specializes a dimension traced at size 1, so a dynamic batch is traced at 2.
    dummy = torch.zeros((max(opt, 2) if dynamic else lo, *meta.input_shape()), dtype=torch.uint8)
    written = meta

    def write(tmp: Path) -> None:
        nonlocal written
        _trace(module, dummy, tmp, opset, dynamic, exporter)
        model = onnx.load(str(tmp))
        if simplify:
            model = _simplify(model)
        # The dynamo exporter may keep a newer opset when it cannot down-convert (e.g. Pad to 17):
        # record the opset the file really has.
        actual = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        targets = tuple(trt_targets) if trt_targets is not None else targets_for_opset(int(actual))
        require_compatible(model, targets, f"{out_path.name} (opset {actual})")
        extra = {**meta.extra, "trt_targets": ",".join(targets)}
        written = meta.replace(opset=int(actual), extra=extra)
        _set_metadata(model, written)
        try:
            onnx.checker.check_model(model, full_check=True)
        except Exception as exc:
            raise ExportError(f"exported graph fails onnx.checker: {exc}") from None
        onnx.save(model, str(tmp))

    atomic_write(out_path, write)
    return written


def targets_for_opset(opset: int) -> tuple[str, ...]:
    """The claimed TensorRT versions whose parsers take this opset (dynamo's 18 excludes 8.6)."""
    from rpol_edge.export.trt_compat import TARGETS

    found = tuple(v for v, t in TARGETS.items() if t.opset_min <= opset <= t.opset_max)
    if not found:
        raise ExportError(f"opset {opset} is outside every claimed TensorRT version's range")
    return found


def recorded_targets(meta: ModelMeta) -> tuple[str, ...]:
    """The TensorRT versions a file was checked for at export (``trt_targets``), or, for files
    written before that was recorded, every claimed version that takes its opset."""
    from rpol_edge.export.trt_compat import parse_targets

    recorded = meta.extra.get("trt_targets", "")
    return parse_targets(recorded) if recorded else targets_for_opset(meta.opset)


def require_compatible(model, targets: Sequence[str], what: str) -> None:  # type: ignore[no-untyped-def]
    from rpol_edge.export.trt_compat import require_compatible as check

    check(model, targets, what)


def _simplify(model):  # type: ignore[no-untyped-def]
    try:
        import onnxslim
    except ImportError:
        raise ExportError("--simplify needs onnxslim: pip install 'rpol-edge[onnx]'") from None
    return onnxslim.slim(model)


def _set_metadata(model, meta: ModelMeta) -> None:  # type: ignore[no-untyped-def]
    del model.metadata_props[:]
    entries = {META_KEY: meta.to_json(), **{k: str(v) for k, v in meta.to_dict().items()}}
    for key, value in entries.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    model.producer_name = "rpol-edge"
    model.producer_version = meta.package_version


def read_onnx_meta(path: Path, buf: memoryview | None = None) -> ModelMeta:
    """The metadata record stored in an ONNX file, read without loading the graph (or ``onnx``);
    ``buf``: the file's bytes when the caller reads more from it (:func:`read_onnx_header`)."""
    try:
        props = metadata_props(path if buf is None else buf)
    except (OSError, ValueError) as exc:
        raise MetadataError(f"{path}: not a readable ONNX file ({exc.__class__.__name__})") from None
    if META_KEY not in props:
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
