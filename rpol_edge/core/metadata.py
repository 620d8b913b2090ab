"""The one metadata record every artifact carries (model file, ONNX metadata_props, engine sidecar).

Every runtime reads it back and checks it before use, so a map is never produced with the wrong
preprocessing, input size or threshold. It is the only place where mean/std travel after fitting.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from rpol_edge import __version__

FORMAT_VERSION = 1
OPERATING_RULES: tuple[str, ...] = ("fixed", "sign", "otsu", "fraction", "scene", "zscore")
"""The mask rules of rpol_edge/modeling/operating_point.py, named here so reading metadata needs no torch."""

SCENE_LEVEL = 0.85
"""Relative level of the ``scene`` rule (a fixed camera): keep the evidence map above this share of
its maximum. Chosen on the CAVIAR lobby's train frames (plateau 0.82-0.90 there at input 640;
benchmarks/research/per_image): a constant of one camera, so `fit --scene-level` can change it."""

ZSCORE_LEVEL = 1.0
"""z of the ``zscore`` rule (a fixed camera whose w* map finds the objects): keep the w* response
where it is more than this many of its cell's standard deviations above its cell's mean over the
fit frames. One standard deviation, set before measuring (benchmarks/research/per_image/response_z.py)."""


DEFAULT_OPERATING_POINT = "sign"
"""Chosen by benchmarks/research/operating_point.py (k-fold CV over the raccoon photos and a scale-shifted
set): GT-known within a point of the best threshold's, with no constant to fit or to tune."""


@dataclass(frozen=True)
class OperatingPoint:
    """The rule and its one constant; recorded in the model's metadata."""

    rule: str = "fixed"
    threshold: float = 0.5
    """t of the ``fixed`` rule."""
    fraction: float = 0.0
    """q of the ``fraction`` rule."""

    def __post_init__(self) -> None:
        if self.rule not in OPERATING_RULES:
            raise ValueError(f"unknown operating point {self.rule!r} (choose {', '.join(OPERATING_RULES)})")
        if self.rule in ("fixed", "scene") and not 0.0 < self.threshold < 1.0:
            raise ValueError(f"operating threshold {self.threshold} is outside (0, 1)")
        if self.rule == "fraction" and not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"foreground fraction {self.fraction} is outside (0, 1]")
        if self.rule == "zscore" and not 0.0 < self.threshold <= 10.0:
            raise ValueError(f"zscore level {self.threshold} is outside (0, 10]")

    def label(self) -> str:
        """Short form for tables and JSON records: ``fixed 0.5``, ``sign``, ``fraction 0.2500``."""
        if self.rule in ("fixed", "scene", "zscore"):
            return f"{self.rule} {self.threshold:g}"
        if self.rule == "fraction":
            return f"fraction {self.fraction:.4f}"
        return self.rule

    def describe(self) -> str:
        return {
            "fixed": f"fixed threshold {self.threshold:g} (the paper's rule)",
            "sign": "sign of w*^T f (label-free, no constant)",
            "otsu": "Otsu per image (label-free)",
            "fraction": f"top {self.fraction:.1%} of each map (label-free, share of ||f|| > tau)",
            "scene": f"fixed camera: evidence against the scene above {self.threshold:g} x its maximum",
            "zscore": f"fixed camera: w*^T f over {self.threshold:g} std above its cell's mean",
        }[self.rule]


TAU_MODES = ("joint", "mean")

BOX_MODES: tuple[str, ...] = ("largest", "peak", "all", "objects")
"""What `detect` reports: ``largest``, the box of the mask's largest region (one per image);
``peak``, the box of the region holding the map's maximum (one per image; a ``scene`` fit's default);
``all``, that box first, then one per other object (rpol_edge/results/instances.py `ALL_BOXES`);
``objects``, one box per object, the strongest object's first (`OBJECTS`): the top box follows
small and several objects, not the largest region (docs/instances.md)."""

BOX_CHOICES = f"{', '.join(BOX_MODES[:-1])} or {BOX_MODES[-1]}"
"""The modes as error messages list them."""

DEFAULT_BOXES = "largest"
"""Recorded at fit time as ``extra["boxes"]``; files without it behave as ``largest``, as they did.
``all`` and ``objects`` are not the default: ``objects`` costs about a point of top-box accuracy on
single-animal photos (docs/operating-points.md)."""


SCENE_BOXES = "peak"
"""The box mode a ``scene`` fit records (docs/operating-points.md, "A fixed camera")."""


class MetadataError(ValueError):
    """An artifact's metadata is missing, malformed, or does not match what it is combined with."""


@dataclass(frozen=True)
class ModelMeta:
    backbone: str
    """Preset name or timm model name the features come from."""
    weights_sha256: str
    """sha256 of the checkpoint file, or ``timm:<name>`` for hub weights."""
    input_size: int
    """K: the square network input (crop) size, also the score-map size."""
    resize_size: int
    """S: images are resized to S x S, then center-cropped to K x K (the reference protocol)."""
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    feature_stride: int
    channels: int
    output_stride: int
    """Requested backbone output stride (32/16/8: ResNets without, EfficientNets with dilation);
    rebuilds the same backbone."""
    head: str
    """``rpol`` (w* over normalized features) or ``caam`` (channel sum, the baseline)."""
    n_heads: int
    """1 for class-agnostic; the number of classes for a class-wise fit."""
    tau: float
    threshold: float
    """Operating threshold t in (0, 1): the mask keeps pixels above int(t * max)."""
    w_sha256: str
    n_images: int
    n_skipped: int
    fit_size: int
    fit_resize: int
    package_version: str = __version__
    precision: str = "fp32"
    opset: int = 0
    """0 until the model is exported to ONNX."""
    format_version: int = FORMAT_VERSION
    tau_mode: str = "joint"
    """How tau was estimated: ``joint`` (supplement Eq. 25) or ``mean`` (plain E||f||)."""
    fit_data: str = ""
    """Data kind, root and split the fit streamed ("" for files older than these fields), with the
    sampling ratio and seed: what ``explain`` needs to stream the same training points again."""
    fit_root: str = ""
    fit_split: str = ""
    sampling_ratio: float = 1.0
    seed: int = 0
    extra: dict[str, str] = field(default_factory=dict)
    frame_width: int = 0
    """W of the raw camera frames a graph exported with ``--frame-size WxH`` takes (resize, crop
    and colour order in the graph); 0: the graph takes pre-processed K x K RGB frames."""
    frame_height: int = 0
    frame_format: str = ""
    """Channel order of those raw frames: ``bgr`` (OpenCV's) or ``rgb``; empty without them."""

    @property
    def raw_frames(self) -> bool:
        """Whether the graph takes raw W x H frames and does resize + crop itself."""
        return self.frame_width > 0

    @property
    def boxes(self) -> str:
        """The box mode this model reports by default (``--boxes`` without a value)."""
        return self.extra.get("boxes", DEFAULT_BOXES)

    @property
    def operating(self) -> OperatingPoint:
        """The operating point these fields record, as one value."""
        return OperatingPoint(self.operating_point, self.threshold, self.fraction)

    def shipped(self) -> ModelMeta:
        """The record an exported graph or engine carries: without the maker's paths (the fit's
        data root and the backbone checkpoint path), which only the .rpol needs (explain, refit)."""
        extra = {k: v for k, v in self.extra.items() if k not in ("weights", "weights_rel", "fit_root_rel")}
        return self.replace(fit_root="", extra=extra)

    def shown(self) -> dict[str, Any]:
        """The fields that apply to this file, for people (``info``): no threshold under a rule
        that has none, no opset before export, no raw-frame fields without raw frames."""
        skip = set()
        if self.operating_point not in ("fixed", "scene", "zscore"):
            skip.add("threshold")
        if self.operating_point != "fraction":
            skip.add("fraction")
        if not self.opset:
            skip.add("opset")
        if not self.raw_frames:
            skip |= {"frame_width", "frame_height", "frame_format"}
        if self.fit_data == "folder":
            skip.add("fit_split")  # a folder fit reads the whole folder unless it has a split subfolder
        if not self.extra:
            skip.add("extra")
        if not self.fit_root:
            skip.add("fit_root")  # exported files do not carry the maker's paths
        return {k: v for k, v in self.to_dict().items() if k not in skip}

    def io(self, batch: tuple[int, int | None] = (1, None)) -> list[tuple[str, str]]:
        """The graph's tensors as a client must feed and read them: (name, description)."""
        n = f"N in {batch[0]}..{batch[1]}" if batch[1] is not None else f"N >= {batch[0]}"
        n = f"N = {batch[0]}" if batch[1] == batch[0] else n
        k, m = self.input_size, self.n_heads
        if self.raw_frames:
            order = self.frame_format.upper()
            frames = (f"uint8 (N, {self.frame_height}, {self.frame_width}, 3), NHWC, {order}, 0..255: raw "
                      f"frames; the graph resizes to {self.resize_size} and crops {k}")  # fmt: skip
        else:
            frames = (f"uint8 (N, {k}, {k}, 3), NHWC, RGB, 0..255: resized to {self.resize_size} and "
                      f"center-cropped to {k} on the host")  # fmt: skip
        rows = [
            ("frames (input)", f"{frames}; {n}"),
            ("score (output)", f"float32 (N, {m}, {k}, {k}) in [0, 1]: the localization map, per head"),
            ("mask (output)", f"uint8 (N, {m}, {k}, {k}), 1 where the map passes the operating point"),
        ]
        # An export records its outputs; one from before that record has score and mask only,
        # a .rpol (never exported) runs the current graph.
        outputs = self.extra.get("outputs", "" if self.opset else "peak").split(",")
        if "peak" in outputs:
            rows.append(("peak (output)", f"float32 (N, {m}): each map's largest raw response (--boxes all)"))
        return rows

    def input_shape(self) -> tuple[int, int, int]:
        """(H, W, 3) of one input frame: the raw frame size, or K x K."""
        if self.raw_frames:
            return (self.frame_height, self.frame_width, 3)
        return (self.input_size, self.input_size, 3)

    operating_point: str = "fixed"
    """How the map becomes the mask (rpol_edge/modeling/operating_point.py): ``fixed`` (the paper's rule at
    ``threshold``), a label-free rule: ``sign``, ``otsu``, ``fraction``, ``scene`` (a fixed
    camera: the map is the evidence against a per-cell model of the scene, kept above ``threshold``
    x its maximum) or ``zscore`` (a fixed camera: the w* response in standard deviations of its
    cell over the fit frames, kept above ``threshold``). Files written before this field existed
    are ``fixed`` and behave as they did."""
    fraction: float = 0.0
    """q of the ``fraction`` rule (keep the top q of each map); 0 for the other rules."""

    def replace(self, **changes: Any) -> ModelMeta:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "artifact") -> ModelMeta:
        names = {f.name for f in dataclasses.fields(cls)}
        required = {
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        missing = sorted(required - set(data))
        if missing:
            raise MetadataError(f"{source}: metadata lacks {', '.join(missing)} (not an rpol-edge artifact?)")
        version = int(data.get("format_version", FORMAT_VERSION))
        if version > FORMAT_VERSION:
            raise MetadataError(
                f"{source}: metadata format {version} is newer than rpol-edge {__version__} reads; upgrade"
            )
        kept = {k: v for k, v in data.items() if k in names}
        for key in ("mean", "std"):
            kept[key] = tuple(float(x) for x in kept[key])
        try:
            meta = cls(**kept)
        except TypeError as exc:
            raise MetadataError(f"{source}: malformed metadata ({exc})") from None
        meta.validate(source)
        return meta

    @classmethod
    def from_json(cls, text: str, source: str = "artifact") -> ModelMeta:
        return cls.from_dict(json_object(text, source), source)

    def validate(self, source: str = "artifact") -> None:
        if self.operating_point == "zscore":  # its threshold is a z, in standard deviations
            if not 0.0 < self.threshold <= 10.0:
                raise MetadataError(f"{source}: zscore level {self.threshold} is outside (0, 10]")
        elif not 0.0 < self.threshold < 1.0:
            raise MetadataError(f"{source}: operating threshold {self.threshold} is outside (0, 1)")
        if self.input_size <= 0 or self.resize_size < self.input_size:
            raise MetadataError(
                f"{source}: input size {self.input_size} / resize {self.resize_size} are inconsistent"
            )
        if self.head not in ("rpol", "caam"):
            raise MetadataError(f"{source}: unknown head {self.head!r} (expected rpol or caam)")
        if self.operating_point not in OPERATING_RULES:
            raise MetadataError(
                f"{source}: unknown operating point {self.operating_point!r} "
                f"(expected {', '.join(OPERATING_RULES)}; a newer rpol-edge wrote it?)"
            )
        if self.operating_point == "fraction" and not 0.0 < self.fraction <= 1.0:
            raise MetadataError(f"{source}: foreground fraction {self.fraction} is outside (0, 1]")
        if self.boxes not in BOX_MODES:
            raise MetadataError(
                f"{source}: unknown box mode {self.boxes!r} (expected {', '.join(BOX_MODES)}; "
                "a newer rpol-edge wrote it?)"
            )
        if self.tau_mode not in TAU_MODES:
            raise MetadataError(f"{source}: unknown tau mode {self.tau_mode!r} (expected joint or mean)")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise MetadataError(f"{source}: mean/std must be three numbers, std > 0")
        if self.raw_frames and (self.frame_height <= 0 or self.frame_format not in ("bgr", "rgb")):
            raise MetadataError(
                f"{source}: raw frame input {self.frame_width}x{self.frame_height} "
                f"{self.frame_format!r} is inconsistent (need W, H > 0 and bgr or rgb)"
            )


def json_object(text: str, source: str) -> dict[str, Any]:
    """Parse a metadata JSON object, or raise MetadataError naming the source."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MetadataError(f"{source}: metadata is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise MetadataError(f"{source}: metadata is not a JSON object")
    return data


def same_model(a: ModelMeta, b: ModelMeta) -> bool:
    """Whether two records describe the same fitted localizer (ignoring export-time fields)."""
    keys = (
        "backbone",
        "weights_sha256",
        "input_size",
        "resize_size",
        "mean",
        "std",
        "head",
        "w_sha256",
        "threshold",
        "operating_point",
        "fraction",
    )
    return all(getattr(a, k) == getattr(b, k) for k in keys)
