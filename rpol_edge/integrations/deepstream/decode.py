"""The DeepStream hand-off, runtime side: read it back, check it, and turn nvinfer's output tensors
into the same boxes as rpol-edge. NumPy and OpenCV only (no torch, onnx or pyds), so it runs in a
DeepStream container with rpol-edge's base install; the pyds glue is `deepstream_probe`.

What nvinfer does to a frame before the graph sees it (Gst-nvinfer, DeepStream 6.2 sources,
``gstnvinfer.cpp`` ``get_converted_buffer`` and ``nvdsinfer_conversion.cu``), with the keys
``rpol-edge export --deepstream`` writes:

* primary mode (``process-mode=1``) scales the whole batched surface, its width and height first
  rounded down to even (``GST_ROUND_DOWN_2``), to the network's W x H; with
  ``maintain-aspect-ratio=0`` that is a plain stretch (the default filter is nearest neighbour:
  the config asks for bilinear, ``scaling-filter=1``, on the GPU, ``scaling-compute-hw=1``);
* the low-level library then writes float planar RGB (``model-color-format=0``) as
  ``y = net-scale-factor * (x - offsets[c])`` in float32, x the uint8 pixel.

The exported network input is S x S (the model's resize size) and the graph takes the center
K x K itself, so the geometry is rpol-edge's own resize-then-crop (`CropTransform`) over the
even-rounded frame, and boxes come from the shared `detect`.
"""

from __future__ import annotations

import configparser
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rpol_edge.core.files import file_sha256
from rpol_edge.core.geometry import CropTransform
from rpol_edge.core.metadata import MetadataError, ModelMeta, json_object, same_model
from rpol_edge.core.onnx_meta import DEEPSTREAM_KEY, INPUT
from rpol_edge.core.onnx_meta import MAP_OUTPUTS as OUTPUTS
from rpol_edge.core.onnx_props import OnnxFormatError, input_dims, metadata_props
from rpol_edge.results.detection import Detection, detect

HANDOFF_FORMAT = "rpol-edge-deepstream"
HANDOFF_VERSION = 1
DS_META_KEY = DEEPSTREAM_KEY
"""The metadata_props key of the nvinfer graph's record. Not rpol-edge's usual key: the graph takes
float NCHW, so rpol-edge's runtimes (uint8 NHWC) find no record in it and refuse it."""
ONNX_NAME = "model.nvinfer.onnx"
CONFIG_NAME = "config_infer_primary_rpol.txt"
SIDECAR_NAME = "rpol_deepstream.json"
README_NAME = "README.txt"

NETWORK_MODES = {"fp32": 0, "int8": 1, "fp16": 2}
"""nvinfer's ``network-mode`` (NvDsInferNetworkMode) per precision."""
MODE_NAMES = {0: "fp32", 1: "int8", 2: "fp16"}
NETWORK_TYPE_OTHER = 100
"""``network-type=100``: nvinfer parses nothing and, with ``output-tensor-meta=1``, attaches the raw
output tensors to each frame for a probe."""

DECISIVE = (
    "onnx-file", "process-mode", "network-type", "output-tensor-meta", "output-blob-names",
    "model-color-format", "net-scale-factor", "offsets", "maintain-aspect-ratio",
)  # fmt: skip
"""Keys that change what the graph is fed or how its boxes map back: a config edited there no longer
matches the graph, so the hand-off refuses it. The others (batch-size, network-mode, gie-unique-id,
scaling filter and hardware, workspace) may be edited; the decode stays exact for the input nvinfer
makes, whatever its scaler's filter."""


@dataclass(frozen=True)
class NvinferSettings:
    """The ``[property]`` keys of the nvinfer config the hand-off writes, as values."""

    onnx_file: str
    model_engine_file: str
    batch_size: int
    network_mode: int
    net_scale_factor: float
    offsets: tuple[float, float, float]
    workspace_size: int = 1024
    """MB, as ``rpol-edge export --workspace-mb``."""
    gie_unique_id: int = 1
    gpu_id: int = 0
    process_mode: int = 1
    """1: primary, the whole frame."""
    network_type: int = NETWORK_TYPE_OTHER
    output_tensor_meta: int = 1
    output_blob_names: tuple[str, ...] = OUTPUTS
    model_color_format: int = 0
    """0: RGB."""
    maintain_aspect_ratio: int = 0
    symmetric_padding: int = 0
    scaling_filter: int = 1
    """1: bilinear (NvBufSurfTransformInter_Bilinear); nvinfer's default is nearest."""
    scaling_compute_hw: int = 1
    """1: GPU; 0 lets nvinfer choose (VIC on Jetson), 2 is VIC."""
    interval: int = 0

    def properties(self) -> dict[str, str]:
        """Key -> value as written in the file (GKeyFile syntax: lists separated by ';')."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                text = ";".join(_number(v) if isinstance(v, float) else str(v) for v in value)
            else:
                text = _number(value) if isinstance(value, float) else str(value)
            out[f.name.replace("_", "-")] = text
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str) -> NvinferSettings:
        try:
            kept = {f.name: data[f.name] for f in fields(cls) if f.name in data}
            for key in ("offsets", "output_blob_names"):
                kept[key] = tuple(kept[key])
            return cls(**kept)
        except (KeyError, TypeError) as exc:
            raise MetadataError(f"{source}: malformed nvinfer settings ({exc})") from None


def _number(value: float) -> str:
    """The shortest text that reads back as the same float32 (nvinfer stores these as float)."""
    return repr(float(np.float32(value)))


def engine_file_name(onnx_file: str, batch_size: int, precision: str, gpu_id: int = 0) -> str:
    """The engine nvinfer builds from ``onnx_file`` and serializes beside it, named as
    ``TrtModelBuilder::buildModel`` does: ``<onnx path>_b<batch-size>_gpu<id>_<fp32|fp16|int8>.engine``.
    Pointing ``model-engine-file`` at that name makes the second start load what the first built."""
    return f"{onnx_file}_b{batch_size}_gpu{gpu_id}_{precision}.engine"


def read_nvinfer_config(path: Path) -> dict[str, str]:
    """The ``[property]`` group of an nvinfer config (GLib key file: ``#`` comment lines, ``=``
    only, case-sensitive keys, no inline comments), key -> raw value."""
    parser = configparser.ConfigParser(
        delimiters=("=",), comment_prefixes=("#",), inline_comment_prefixes=None, interpolation=None,
        strict=True, empty_lines_in_values=False,
    )  # fmt: skip
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(Path(path).read_text(), source=str(path))
    except (configparser.Error, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0]
        raise MetadataError(f"{path}: not a readable nvinfer config ({first})") from None
    if not parser.has_section("property"):
        raise MetadataError(f"{path}: no [property] group (nvinfer requires one)")
    return dict(parser.items("property"))


def _parse_value(key: str, text: str, like: Any) -> Any:
    """A config value read the way GLib reads it for nvinfer: integers, booleans (0/1/true/false),
    doubles stored as float32, ';'-separated lists (a trailing ';' allowed)."""
    if isinstance(like, tuple):
        items = [t.strip() for t in text.split(";")]
        items = items[:-1] if items and items[-1] == "" else items
        return tuple(float(np.float32(float(t))) if isinstance(like[0], float) else t for t in items)
    if isinstance(like, str):
        return text.strip()
    if isinstance(like, float):
        return float(np.float32(float(text)))
    if key in ("output-tensor-meta", "maintain-aspect-ratio", "symmetric-padding"):
        word = text.strip().lower()
        if word in ("true", "false"):
            return int(word == "true")
    return int(text)


def check_config(props: dict[str, str], settings: NvinferSettings, source: str) -> dict[str, Any]:
    """Parsed values of every key ``settings`` names; refuses a missing or unreadable key, and a
    decisive key (:data:`DECISIVE`) whose value differs from what the hand-off was exported with."""
    expected = settings.properties()
    parsed: dict[str, Any] = {}
    for key, text in expected.items():
        like = getattr(settings, key.replace("-", "_"))
        if key not in props:
            if key in DECISIVE:
                raise MetadataError(f"{source}: no {key} (the hand-off was exported with {key}={text})")
            continue
        try:
            parsed[key] = _parse_value(key, props[key], like)
        except ValueError:
            raise MetadataError(f"{source}: {key}={props[key]} is not a valid value") from None
        if key in DECISIVE and parsed[key] != _parse_value(key, text, like):
            raise MetadataError(
                f"{source}: {key}={props[key]}, but the graph was exported for {key}={text}; the boxes "
                "would be wrong: export again, or restore the key"
            )
    return parsed


def nvinfer_transform(frame_w: int, frame_h: int, resize: int, crop: int) -> CropTransform:
    """Where nvinfer's network input came from, for a ``frame_w`` x ``frame_h`` frame: the frame's
    width and height rounded down to even (nvinfer scales that rectangle), stretched to
    ``resize`` x ``resize`` (``maintain-aspect-ratio=0``), center ``crop`` taken by the graph."""
    w, h = int(frame_w) & ~1, int(frame_h) & ~1
    if w <= 0 or h <= 0:
        raise ValueError(f"frame {frame_w}x{frame_h}: nvinfer needs at least 2x2 pixels")
    return CropTransform(src_w=w, src_h=h, resize=resize, crop=crop)


def emulate_network_input(
    frame_rgb: np.ndarray, resize: int, net_scale_factor: float, offsets: tuple[float, float, float]
) -> np.ndarray:
    """What nvinfer hands the engine for one RGB frame, emulated on the host (checks on a PC):
    the even-rounded frame stretched to ``resize`` x ``resize`` with ``cv2.resize(INTER_LINEAR)``,
    then ``net_scale_factor * (x - offsets[c])`` in float32, planar (3, S, S).

    The arithmetic is nvinfer's (``NvDsInferConvert_C3ToP3Float``); the scaler is OpenCV's, not
    NvBufSurfTransform's, whose bilinear pixels were not compared here (no DeepStream)."""
    h, w = frame_rgb.shape[:2]
    even = np.ascontiguousarray(frame_rgb[: h & ~1, : w & ~1])
    x = cv2.resize(even, (resize, resize), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    y = np.float32(net_scale_factor) * (x - np.asarray(offsets, np.float32))
    return np.ascontiguousarray(y.transpose(2, 0, 1))


def decode_outputs(
    score: np.ndarray, mask: np.ndarray, transform: CropTransform, min_area: float = 0.0
) -> Detection:
    """One frame's ``score`` and ``mask`` tensors (K x K, or 1 x K x K as nvinfer's inferDims give
    them; the mask float 0/1) -> the box in frame pixels, through rpol-edge's own `detect`."""
    s = np.asarray(score, dtype=np.float32)
    m = np.asarray(mask)
    s = s[0] if s.ndim == 3 else s
    m = m[0] if m.ndim == 3 else m
    return detect(s, np.ascontiguousarray(m != 0, dtype=np.uint8), transform, min_area)


@dataclass(frozen=True)
class Handoff:
    """A checked hand-off folder: the model record, the nvinfer settings it was exported with, and
    the config's own values where the user may have edited them (``gie-unique-id``, ``batch-size``)."""

    directory: Path
    meta: ModelMeta
    settings: NvinferSettings
    config: dict[str, Any]

    @property
    def network_size(self) -> int:
        """S: nvinfer's network width and height (the graph crops K from it)."""
        return self.meta.resize_size

    @property
    def gie_unique_id(self) -> int:
        return int(self.config.get("gie-unique-id", self.settings.gie_unique_id))

    def check_network(self, width: int, height: int, maintain_aspect_ratio: bool) -> None:
        """Refuse tensors from an nvinfer that scaled to another size or kept the aspect ratio
        (``NvDsInferTensorMeta.network_info`` and ``maintain_aspect_ratio``)."""
        s = self.network_size
        if (int(width), int(height)) != (s, s):
            raise MetadataError(
                f"nvinfer ran a {width}x{height} network, this hand-off's graph takes {s}x{s}: the probe "
                f"is on another nvinfer (gie-unique-id {self.gie_unique_id}?) or the graph was replaced"
            )
        if maintain_aspect_ratio:
            raise MetadataError(
                "nvinfer kept the aspect ratio (padding the network input): the boxes would be wrong; "
                "set maintain-aspect-ratio=0 as exported"
            )

    def transform(self, frame_size: tuple[int, int]) -> CropTransform:
        return nvinfer_transform(*frame_size, self.meta.resize_size, self.meta.input_size)

    def decode(
        self, score: np.ndarray, mask: np.ndarray, frame_size: tuple[int, int], min_area: float = 0.0
    ) -> Detection:
        """Check the tensors against the model, then :func:`decode_outputs` for a frame of
        ``frame_size`` (W, H): the surface nvinfer scaled (nvstreammux's output width and height)."""
        k, m = self.meta.input_size, self.meta.n_heads
        for name, t in (("score", score), ("mask", mask)):
            shape = tuple(np.shape(t))
            if shape not in ((m, k, k), (k, k)):
                raise MetadataError(
                    f"tensor {name!r} is {'x'.join(map(str, shape))}, this hand-off's model outputs "
                    f"{m}x{k}x{k}: tensors of another model, or another nvinfer's"
                )
        return decode_outputs(score, mask, self.transform(frame_size), min_area)


def load_handoff(path: Path) -> Handoff:
    """Read and check a hand-off folder (or its ``rpol_deepstream.json``): the sidecar, the config
    it names (decisive keys unchanged) and, where it is there, the graph (same model, same input)."""
    path = Path(path)
    sidecar = path / SIDECAR_NAME if path.is_dir() else path
    try:
        data = json_object(sidecar.read_text(), str(sidecar))
    except OSError as exc:
        raise MetadataError(f"{sidecar}: cannot read the hand-off record ({exc.strerror})") from None
    if data.get("format") != HANDOFF_FORMAT:
        raise MetadataError(f"{sidecar}: not an rpol-edge DeepStream hand-off record")
    if int(data.get("format_version", 0)) > HANDOFF_VERSION:
        raise MetadataError(
            f"{sidecar}: hand-off format {data['format_version']} is newer than this rpol-edge"
        )
    meta = ModelMeta.from_dict(data.get("model") or {}, str(sidecar))
    settings = NvinferSettings.from_dict(data.get("nvinfer") or {}, str(sidecar))
    directory = sidecar.parent
    config_path = directory / str(data.get("config_file", CONFIG_NAME))
    config = check_config(read_nvinfer_config(config_path), settings, str(config_path))
    onnx_path = directory / settings.onnx_file
    if onnx_path.is_file():
        check_graph(onnx_path, meta, data.get("onnx_sha256", ""))
    return Handoff(directory, meta, settings, config)


def check_graph(onnx_path: Path, meta: ModelMeta, sha256: str = "") -> None:
    """The graph beside the record must be the one exported with it: its embedded record describes
    the same model and its input is (N, 3, S, S); the file's hash is checked when recorded."""
    try:
        props = metadata_props(onnx_path)
        dims = input_dims(onnx_path, INPUT)
    except (OSError, OnnxFormatError) as exc:
        raise MetadataError(f"{onnx_path}: not a readable ONNX graph ({exc})") from None
    if DS_META_KEY not in props:
        raise MetadataError(f"{onnx_path}: not the nvinfer graph of rpol-edge export --deepstream")
    graph_meta = ModelMeta.from_json(props[DS_META_KEY], str(onnx_path))
    s = meta.resize_size
    if not same_model(graph_meta, meta) or graph_meta.input_size != meta.input_size:
        raise MetadataError(
            f"{onnx_path.name} holds another model ({graph_meta.backbone} {graph_meta.input_size}, w* "
            f"{graph_meta.w_sha256[:12]}) than {SIDECAR_NAME} ({meta.backbone} {meta.input_size}, w* "
            f"{meta.w_sha256[:12]}): export the hand-off again"
        )
    if dims[1:] != [3, s, s]:
        raise MetadataError(f"{onnx_path.name}: input {dims}, expected (N, 3, {s}, {s})")
    if sha256 and file_sha256(onnx_path) != sha256:
        raise MetadataError(f"{onnx_path.name} changed since it was exported (sha256 differs)")


def handoff_record(
    meta: ModelMeta, settings: NvinferSettings, onnx_sha256: str, notes: dict[str, Any]
) -> str:
    """The sidecar's JSON text (written by the export, read by :func:`load_handoff`)."""
    record = {
        "format": HANDOFF_FORMAT,
        "format_version": HANDOFF_VERSION,
        "config_file": CONFIG_NAME,
        "onnx_sha256": onnx_sha256,
        "model": meta.to_dict(),
        "nvinfer": asdict(settings),
        **notes,
    }
    return json.dumps(record, indent=1, sort_keys=False)
