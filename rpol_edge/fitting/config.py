"""What a fit is asked to do, as one record: the Python API takes its fields as keyword options and
the CLI takes its defaults from it, so a default is written once. No torch here (the CLI reads it
at start-up)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from rpol_edge.core.metadata import (
    DEFAULT_OPERATING_POINT,
    OPERATING_RULES,
    SCENE_LEVEL,
    TAU_MODES,
    ZSCORE_LEVEL,
)
from rpol_edge.runtimes import InferenceError, check_device


def default_resize(input_size: int) -> int:
    """The CUB protocol's resize-then-crop ratio (480 -> 448) carried to any input size."""
    return int(round(input_size * 480 / 448))


DEFAULT_SPLIT = "train"


def without_password(uri: str) -> str:
    """A source URI as a model file may record it: a URL's password left out (``rtsp://user@host``),
    anything else as typed. ``fit`` and ``refit`` both record their source through this."""
    if "://" not in uri:
        return uri
    try:
        parts = urlsplit(uri)
        if parts.password is None:
            return uri
        host = parts.netloc.rsplit("@", 1)[-1]
        return urlunsplit(parts._replace(netloc=f"{parts.username}@{host}"))
    except ValueError:  # not a parsable URL: kept as typed (opening it said why)
        return uri


def source_record(source: str, frames: int, every: float) -> dict[str, str]:
    """The metadata ``extra`` fields of a fit on a source (``fit`` and ``refit``): the frames asked
    for and the seconds between two; none for a data set."""
    return {"fit_frames": str(frames), "fit_every": f"{every:g}"} if source else {}


@dataclass
class FitConfig:
    data: str = ""
    """Data-set reader of the images under ``root``: ``folder`` (also when empty), ``voc``, ``cub``
    or ``wsol``."""
    root: Path | None = None
    """The data set's folder; or give ``source`` instead."""
    split: str | None = None
    """The data set's split (None: ``train``; a folder without that subfolder is read whole)."""
    backbone: str = "lite0"
    weights: Path | None = None
    output_stride: int = 32
    input_size: int = 448
    resize_size: int | None = None
    fit_size: int | None = None
    """Fit resolution; defaults to the input size (the reference fixes 224: see ``reference_fit``)."""
    fit_resize: int | None = None
    reference_fit: bool = False
    """The reference protocol: fit images resized to 224 x 224, no crop."""
    head: str = "rpol"
    tau_mode: str = "joint"
    """``joint`` (supplement Eq. 25) or ``mean`` (the plain mean feature norm, for comparison)."""
    classwise: bool = False
    sampling_ratio: float = 1.0
    seed: int = 0
    operating_point: str | None = None
    """How the map becomes the mask (rpol_edge/modeling/operating_point.py); ``sign`` needs no labels and no
    constant. ``fixed`` is the paper's rule at ``threshold``. None: ``sign`` for the rpol head,
    ``fixed`` for caam (whose channel sum has no negative side)."""
    threshold: float = 0.5
    fraction: float = 0.0
    """q of the ``fraction`` rule."""
    scene_level: float = SCENE_LEVEL
    """Level of the ``scene`` rule (a fixed camera), relative to each evidence map's maximum."""
    zscore_level: float = ZSCORE_LEVEL
    """z of the ``zscore`` rule (a fixed camera): standard deviations above each cell's mean."""
    batch_size: int = 16
    workers: int = 2
    device: str = "auto"
    source: str = ""
    """Fit on frames of any source `run` takes (camera://N, rtsp://..., http(s):// MJPEG, a video
    file, a folder, a glob) instead of a data set: ``frames`` of them, one every ``every`` seconds
    (0: every frame), framed as a data set's images are."""
    frames: int = 0
    every: float = 0.0

    @property
    def rule(self) -> str:
        return self.operating_point or ("fixed" if self.head == "caam" else DEFAULT_OPERATING_POINT)

    @property
    def kind(self) -> str:
        """What the fit reads: ``source``, or the data set's reader (``folder`` unless named)."""
        return "source" if self.source else (self.data or "folder")

    @property
    def data_split(self) -> str:
        return DEFAULT_SPLIT if self.split is None else self.split

    def validate_input(self) -> None:
        """One data set or one source, and what each needs."""
        if self.source:
            given = [f"{k}={v}" for k, v in (("data", self.data), ("root", self.root), ("split", self.split))
                     if v not in ("", None)]  # fmt: skip
            if given:
                raise ValueError(
                    f"source={self.source} with {', '.join(given)}: fit on a source (source=URI, "
                    "frames=N) or on a data set (data=KIND, root=DIR, split=S), not both"
                )
            if self.frames < 1:
                raise ValueError(f"frames={self.frames}: how many frames of the source to fit on (>= 1)")
            if self.sampling_ratio != 1.0:
                raise ValueError(
                    f"sampling_ratio={self.sampling_ratio} draws from a data set; with a source, "
                    "`frames` and `every` choose the frames"
                )
            if self.classwise:
                raise ValueError("classwise=True needs class labels, which a source's frames do not have")
        elif self.root is None:
            raise ValueError("give a data set (data=KIND, root=DIR) or a source (source=URI, frames=N)")
        elif self.frames or self.every:
            which = "frames" if self.frames else "every"
            raise ValueError(f"{which}={getattr(self, which)} samples a source: it needs source=URI")
        if self.every < 0:
            raise ValueError(f"every={self.every}: seconds between sampled frames, >= 0")

    def validate(self) -> None:
        """Refuse a bad configuration before the backbone is built and the data streamed. Messages
        name the field (``input_size=16: ...``); the CLI shows them with its flags."""
        self.validate_input()
        if self.input_size < 32:
            raise ValueError(f"input_size={self.input_size}: at least 32 (one stride-32 feature cell)")
        if self.resize_size is not None and self.resize_size < self.input_size:
            raise ValueError(f"resize_size={self.resize_size}: smaller than input_size={self.input_size}")
        if self.fit_size is not None and self.fit_size < 32:
            raise ValueError(f"fit_size={self.fit_size}: at least 32")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold={self.threshold}: must be in (0, 1)")
        if self.rule not in OPERATING_RULES:
            raise ValueError(f"operating_point={self.rule!r}: choose {', '.join(OPERATING_RULES)}")
        if self.rule == "sign" and self.head == "caam":
            raise ValueError(
                "operating_point=sign needs w* (head=rpol): the channel sum of ReLU features has no "
                "negative side; use fixed, otsu or fraction with head=caam"
            )
        if self.rule == "fraction" and not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"fraction={self.fraction}: the fraction rule needs a share in (0, 1]")
        if self.rule in ("scene", "zscore"):
            self._validate_per_cell()
        if self.head not in ("rpol", "caam"):
            raise ValueError(f"head={self.head!r}: choose rpol or caam")
        if self.tau_mode not in TAU_MODES:
            raise ValueError(f"tau_mode={self.tau_mode!r}: choose joint or mean")
        if self.output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride={self.output_stride}: choose 32, 16 or 8")
        if not 0.0 < self.sampling_ratio <= 1.0:
            raise ValueError(f"sampling_ratio={self.sampling_ratio}: must be in (0, 1]")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size}: must be >= 1")
        if self.workers < 0:
            raise ValueError(f"workers={self.workers}: must be >= 0")
        try:
            check_device(self.device)
        except InferenceError as exc:
            raise ValueError(str(exc)) from None

    def _validate_per_cell(self) -> None:
        """The ``scene`` and ``zscore`` rules keep statistics per cell of the inference grid: the
        fit must see the frames exactly as inference will (same size and framing), with one model
        for the view; ``zscore`` reads its frames twice (its statistics need w* first)."""
        rule = f"operating_point={self.rule!r}"
        if self.rule == "scene" and not 0.0 < self.scene_level < 1.0:
            raise ValueError(f"scene_level={self.scene_level}: must be in (0, 1)")
        if self.rule == "zscore" and not 0.0 < self.zscore_level <= 10.0:
            raise ValueError(f"zscore_level={self.zscore_level}: must be in (0, 10]")
        if self.rule == "zscore" and (self.head != "rpol" or self.source):
            raise ValueError(
                f"{rule} needs w* (head='rpol') and a data set or folder it can read twice, not a source"
            )
        if self.classwise:
            raise ValueError(f"{rule} keeps one model of the view: drop classwise=True")
        if self.reference_fit or (self.fit_size is not None and self.fit_size != self.input_size):
            raise ValueError(
                f"{rule} fits per cell of the inference grid: leave fit_size and reference_fit unset"
            )
        if self.fit_resize is not None and self.fit_resize != (
            self.resize_size or default_resize(self.input_size)
        ):
            raise ValueError(f"{rule} needs the fit framed as inference: leave fit_resize unset")
