"""`rpol-edge export --deepstream DIR`: the hand-off for NVIDIA DeepStream's Gst-nvinfer.

nvinfer feeds a TensorRT engine float32 planar RGB, ``net-scale-factor * (x - offsets[c])`` of the
frame it scaled to the network size itself, and its tensor meta has no UINT8 type. So the graph
written here differs from ``model.onnx`` at both ends: input float32 (N, 3, S, S) as nvinfer writes
it (S: the model's resize size; the graph takes the center K x K, so the geometry is rpol-edge's
own resize-then-crop), and the mask leaves as float32 0/1. Everything between is the same
Localizer, so the maps are the uint8 graph's (measured: benchmarks/fidelity/deepstream_fidelity.py).

Where the normalization goes (:func:`split_normalization`): one ``net-scale-factor`` cannot hold a
per-channel std, so by default the config is the identity (``net-scale-factor=1``, offsets 0) and
mean and std stay in the graph, bit for bit the uint8 graph's arithmetic. The two folded variants
(mean in ``offsets``; mean in ``offsets`` and the std's average in ``net-scale-factor`` with the
per-channel rest in the graph) exist to be measured against it.

Written beside the graph: the nvinfer config, a JSON record (the model's metadata and what the
config assumes, read back and checked by `rpol_edge.integrations.deepstream.decode`) and a README.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rpol_edge.core.artifact import ModelArtifact
from rpol_edge.core.export_formats import DEEPSTREAM_INT8, ExportError
from rpol_edge.core.extras import require_torch
from rpol_edge.core.files import atomic_write, file_sha256, write_text_atomic
from rpol_edge.core.metadata import ModelMeta
from rpol_edge.core.onnx_meta import MAP_OUTPUTS as OUTPUTS
from rpol_edge.exporters.onnx_export import DEFAULT_OPSET, EXPORTERS, _simplify, _trace
from rpol_edge.exporters.onnx_finish import finish_graph, require_onnx
from rpol_edge.integrations.deepstream.decode import (
    CONFIG_NAME,
    DS_META_KEY,
    NETWORK_MODES,
    ONNX_NAME,
    README_NAME,
    SIDECAR_NAME,
    NvinferSettings,
    engine_file_name,
    handoff_record,
)
from rpol_edge.integrations.deepstream.nvinfer_config import assumptions, config_text, readme_text

NORMALIZATIONS = ("graph", "offsets", "config")


@dataclass(frozen=True)
class Normalization:
    """``(x - 255 mean) / (255 std)`` split between nvinfer (``y = net_scale_factor * (x - offsets)``)
    and the graph (``(y - graph_mean) / graph_std``); all in pixel units, float32 values."""

    net_scale_factor: float
    offsets: tuple[float, float, float]
    graph_mean: tuple[float, float, float]
    graph_std: tuple[float, float, float]


def split_normalization(mean: Sequence[float], std: Sequence[float], where: str = "graph") -> Normalization:
    """``graph``: the config is the identity, the graph normalizes (exact, the default);
    ``offsets``: the mean in ``offsets``, the std in the graph; ``config``: the mean in ``offsets``,
    the std's average in ``net-scale-factor``, the per-channel remainder std / average in the graph.

    255 * mean and 255 * std are computed in float32 as the Localizer's buffers are, so the
    ``offsets`` values nvinfer reads back are the very numbers the uint8 graph subtracts."""
    m = _triple(np.asarray(mean, np.float32) * np.float32(255.0))
    s = _triple(np.asarray(std, np.float32) * np.float32(255.0))
    zero, one = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    if where == "graph":
        return Normalization(1.0, zero, m, s)
    if where == "offsets":
        return Normalization(1.0, m, zero, s)
    if where == "config":
        avg = np.float32(np.mean(np.asarray(s, np.float32)))
        rest = _triple(np.asarray(s, np.float32) / avg)
        return Normalization(float(np.float32(1.0) / avg), m, zero, one if set(rest) == {1.0} else rest)
    raise ExportError(f"normalization {where!r}: choose {', '.join(NORMALIZATIONS)}")


def _triple(values: np.ndarray) -> tuple[float, float, float]:
    a, b, c = (float(v) for v in values)
    return a, b, c


def _constant(values: tuple[float, float, float]) -> torch.Tensor:
    """A scalar when the three are equal, else (1, 3, 1, 1), as the Localizer's own buffers."""
    t = torch.tensor(values, dtype=torch.float32)
    return t[0].clone() if bool((t == t[0]).all()) else t.view(1, 3, 1, 1)


class NvinferInput(nn.Module):
    """x (N, 3, S, S) float32, nvinfer's planar RGB -> center K x K -> the Localizer's (score, mask)."""

    def __init__(self, localizer: nn.Module, resize: int) -> None:
        super().__init__()
        self.localizer = localizer
        self.crop = int(localizer.input_size)  # type: ignore[arg-type]
        self.offset = int(round((resize - self.crop) / 2.0))  # CropTransform.offset's rounding

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        o, k = self.offset, self.crop
        x = x[:, :, o : o + k, o : o + k]
        # The Localizer reads NHWC and transposes back: the two Transposes cancel in onnxslim.
        # Score and mask only: the probe draws the one box of largest, which needs no peak.
        score, mask, _ = self.localizer(x.permute(0, 2, 3, 1))
        return score, mask


def export_deepstream(
    model_path: Path,
    out_dir: Path,
    batch: tuple[int, int, int] = (1, 1, 1),
    precision: str = "fp32",
    opset: int | None = None,
    exporter: str = "legacy",
    simplify: bool = True,
    weights: Path | None = None,
    trt_targets: Sequence[str] | None = None,
    workspace_mb: int = 1024,
    normalization: str = "graph",
) -> dict[str, Path]:
    """Write the nvinfer graph, config, record and README into ``out_dir``; returns them by role.

    ``batch`` (min, opt, max): a fixed batch when min == max, else a dynamic one; ``batch-size`` is
    max. ``precision`` fp32 or fp16 sets ``network-mode`` (the graph stays FP32: nvinfer builds FP16
    with TensorRT's FP16 flag). The graph must pass the static TensorRT check for ``trt_targets``."""
    require_torch("rpol-edge export --deepstream")
    from rpol_edge.modeling.factory import build_localizer

    _check_options(precision, exporter)
    onnx = require_onnx()
    opset = opset or DEFAULT_OPSET[exporter]
    artifact = ModelArtifact.load(model_path)
    meta = artifact.meta.replace(opset=opset, precision="fp32")
    if meta.n_heads != 1:
        raise ExportError("class-wise models need the class at inference; export a class-agnostic fit")
    norm = split_normalization(meta.mean, meta.std, normalization)
    localizer = build_localizer(artifact, weights).eval()
    module = _nvinfer_module(localizer, norm, normalization, meta.resize_size)
    lo, opt, hi = batch
    dynamic = lo != hi
    s = meta.resize_size
    dummy = torch.zeros((max(opt, 2) if dynamic else lo, 3, s, s), dtype=torch.float32)
    onnx_path = Path(out_dir) / ONNX_NAME
    written = meta

    def write(tmp: Path) -> None:
        nonlocal written
        with torch.no_grad():
            _trace(module, dummy, tmp, opset, dynamic, exporter, OUTPUTS)
        model = onnx.load(str(tmp))
        if simplify:
            model = _simplify(model)
        _nvinfer_outputs(model, onnx, (meta.n_heads, meta.input_size, meta.input_size))
        # Its record under its own key: rpol-edge's runtimes (uint8 NHWC in) refuse this graph.
        written = finish_graph(
            model, meta, trt_targets, ONNX_NAME, DS_META_KEY, deepstream_normalization=normalization
        )
        onnx.save(model, str(tmp))

    atomic_write(onnx_path, write)
    settings = NvinferSettings(
        onnx_file=ONNX_NAME,
        model_engine_file=engine_file_name(ONNX_NAME, hi, precision),
        batch_size=hi,
        network_mode=NETWORK_MODES[precision],
        net_scale_factor=norm.net_scale_factor,
        offsets=norm.offsets,
        workspace_size=workspace_mb,
    )
    return _write_handoff(Path(out_dir), written, settings, (lo, hi), normalization)


def _check_options(precision: str, exporter: str) -> None:
    if precision == "int8":
        raise ExportError(DEEPSTREAM_INT8)
    if precision not in NETWORK_MODES:
        raise ExportError(f"precision {precision!r}: choose fp32 or fp16")
    if exporter not in EXPORTERS:
        raise ExportError(f"unknown exporter {exporter!r}; choose {', '.join(EXPORTERS)}")


def _nvinfer_module(localizer: nn.Module, norm: Normalization, normalization: str, resize: int) -> nn.Module:
    """The Localizer behind nvinfer's input, with the normalization the graph keeps."""
    if normalization != "graph":  # "graph" keeps the Localizer's own buffers, exactly model.onnx's
        localizer.pixel_mean = _constant(norm.graph_mean)
        localizer.pixel_std = _constant(norm.graph_std)
    return NvinferInput(localizer, resize).eval()


def _write_handoff(
    out_dir: Path, written: ModelMeta, settings: NvinferSettings, batch: tuple[int, int], normalization: str
) -> dict[str, Path]:
    """The nvinfer config, the hand-off record and the README beside the written graph, by role."""
    onnx_path = out_dir / ONNX_NAME
    files = {
        "nvinfer-onnx": onnx_path,
        "nvinfer-config": out_dir / CONFIG_NAME,
        "nvinfer-record": out_dir / SIDECAR_NAME,
        "nvinfer-readme": out_dir / README_NAME,
    }
    write_text_atomic(files["nvinfer-config"], config_text(settings, written))
    notes = assumptions(written, settings, batch, normalization)
    write_text_atomic(
        files["nvinfer-record"], handoff_record(written, settings, file_sha256(onnx_path), notes)
    )
    write_text_atomic(files["nvinfer-readme"], readme_text(written, settings, batch))
    return files


def _nvinfer_outputs(model: Any, onnx: Any, dims: tuple[int, int, int]) -> None:
    """Retarget the Cast that writes ``mask`` from UINT8 to FLOAT: nvinfer's tensor types are FP32,
    FP16, INT8 and INT32 (NvDsInferDataType), and a UINT8 binding stops it ("Unknown data type").
    Both outputs are declared (batch, M, K, K): a dynamic-batch trace leaves the rest symbolic."""
    producer = next((n for n in model.graph.node if OUTPUTS[1] in n.output), None)
    if producer is None or producer.op_type != "Cast":
        raise ExportError(f"the graph's {OUTPUTS[1]!r} is not written by a Cast; cannot make it float32")
    for a in producer.attribute:
        if a.name == "to":
            a.i = onnx.TensorProto.FLOAT
    for vi in model.graph.output:
        if vi.name == OUTPUTS[1]:
            vi.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
        for d, size in zip(vi.type.tensor_type.shape.dim[1:], dims, strict=True):
            d.Clear()
            d.dim_value = size
    kept = [vi for vi in model.graph.value_info if vi.name != OUTPUTS[1]]
    del model.graph.value_info[:]
    model.graph.value_info.extend(kept)
