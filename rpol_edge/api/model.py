"""One object for any model file: open it, localize an image or a batch of frames in one call.

`Model` wraps the runtime registry (``.rpol`` torch, ``.onnx`` ONNX Runtime, ``.engine`` TensorRT)
and the shared pre- and post-processing (`prepare`, `detect`), so a caller never touches input
geometry: boxes come back in the pixels of the image that went in. No torch is imported here; a
``.rpol`` brings it in only when opened.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import cv2
import numpy as np

from rpol_edge.core.geometry import CropTransform
from rpol_edge.core.metadata import ModelMeta
from rpol_edge.core.prepare import prepare
from rpol_edge.data.images import load_rgb
from rpol_edge.results.detection import Box, box_mode, check_min_area, detect, peak_of
from rpol_edge.results.overlay import render
from rpol_edge.runtimes import Runtime, infer_all, open_runtime

ImageLike = str | Path | np.ndarray


@dataclass(frozen=True)
class Prediction:
    """What the model found in one image."""

    box: tuple[int, int, int, int] | None
    """x0, y0, x1, y1 in the input image's pixels (inclusive); None when nothing is above the
    operating threshold."""
    score: float
    """Mean localization score inside the box (0 without a box)."""
    score_map: np.ndarray
    """(K, K) float32 in [0, 1] over the model's input crop (K = ``meta.input_size``)."""
    mask: np.ndarray
    """(K, K) bool: the score map above the model's operating threshold."""
    transform: CropTransform
    """How the image was resized and cropped into the K x K input (maps boxes and maps back)."""
    bgr: bool = False
    """Whether the image came in as BGR (`Model.predict_frames`' default): `overlay` expects the
    same order back."""
    boxes: list[tuple[Box, float]] = field(default_factory=list)
    """Every box with its score, best first, in the input image's pixels: ``box`` and ``score`` are
    the first. One box with ``boxes="largest"``, one per object with ``"all"`` or ``"objects"``
    (docs/instances.md says what each score is); empty when nothing is found."""

    def heatmap(self) -> np.ndarray:
        """The score map laid back onto the input image: (H, W) float32, zero outside the crop."""
        return self.transform.map_to_original(self.score_map)

    def overlay(self, image: ImageLike) -> np.ndarray:
        """A BGR picture (for ``cv2.imwrite``) of the image with the heatmap blended in and the box
        drawn; an array is taken in the order it was predicted in (BGR from `predict_frames`)."""
        if isinstance(image, np.ndarray) and self.bgr:
            bgr = _check_frame(image)
        else:
            bgr = cv2.cvtColor(_as_rgb(image), cv2.COLOR_RGB2BGR)
        return render(bgr, self.score_map, self.transform, self.box, more=[b for b, _ in self.boxes[1:]])


class Model:
    """A fitted or exported localizer, ready to run: ``Model("model.onnx").predict("photo.jpg")``.

    ``runtime`` is ``auto`` (by file type) or one of torch, ort, openvino, trt; ``device`` ``auto``
    picks CUDA where the runtime reaches it; ``min_area`` (a share of the input crop) reports "no
    object" for smaller masks; ``boxes`` is ``largest`` or ``peak`` (one box), ``all`` or ``objects``
    (one box per object) or None (the mode the model file records, ``largest`` unless set); further
    keyword options go to
    the runtime (for example ``precision="fp16"`` for torch, ``threads=2`` for ort). Close it (or use
    ``with``) to free sessions and GPU buffers. Errors name these parameters (``boxes='x': choose
    largest, peak, all or objects``).
    """

    def __init__(
        self,
        path: str | Path,
        runtime: str = "auto",
        device: str = "auto",
        min_area: float = 0.0,
        boxes: str | None = None,
        **options: Any,
    ) -> None:
        self.path = Path(path)
        self.min_area = check_min_area(min_area)
        self.runtime: Runtime = open_runtime(self.path, runtime, device=device, **options)
        self.runtime.__enter__()
        try:
            self.boxes = box_mode(self.meta, boxes)[0]
        except ValueError:
            self.close()
            raise

    @property
    def meta(self) -> ModelMeta:
        """The metadata record the file carries (backbone, input size, operating point, ...)."""
        return self.runtime.meta

    @property
    def description(self) -> str:
        """Runtime, device and precision in a few words."""
        return self.runtime.description

    def predict(self, image: ImageLike, boxes: str | None = None) -> Prediction:
        """One image: a path, or an RGB uint8 (H, W, 3) array (use `predict_frames` for BGR).
        ``boxes``: ``largest``, ``all`` or ``objects`` for this call (None: the model's, see `Model`)."""
        return self.predict_frames([_as_rgb(image)], bgr=False, boxes=boxes)[0]

    def predict_frames(
        self, frames: Sequence[np.ndarray] | np.ndarray, bgr: bool = True, boxes: str | None = None
    ) -> list[Prediction]:
        """A batch of camera frames (uint8 (H, W, 3), BGR as OpenCV reads them unless ``bgr=False``),
        in one runtime call (chunked to the model's batch range); ``boxes`` as in `predict`."""
        if self.meta.n_heads != 1:
            raise ValueError(
                f"{self.path.name} is a class-wise fit ({self.meta.n_heads} heads): it localizes a known "
                "class; predict needs a class-agnostic model"
            )
        mode, cells = box_mode(self.meta, boxes or self.boxes)
        if len(frames) == 0:
            return []
        prepped = [prepare(_check_frame(f), self.meta, is_rgb=not bgr) for f in frames]
        out = infer_all(self.runtime, np.stack([x for x, _ in prepped]))
        preds = []
        for i, (_, t) in enumerate(prepped):
            score, mask = out.score[i, 0], out.mask[i, 0]
            d = detect(score, mask, t, self.min_area, mode, cells, peak_of(out, i))
            preds.append(Prediction(d.box, d.score, score, mask.astype(bool), t, bgr, d.boxes))
        return preds

    def refit(self, output: str | Path, **options: Any) -> Model:
        """This exported model refitted through its own runtime on new images or a live source
        (`rpol_edge.refit`, the same options), written to ``output`` and opened."""
        from rpol_edge.api.refit_job import refit

        return refit(self.path, output, **options)

    def close(self) -> None:
        self.runtime.__exit__(None, None, None)

    def __del__(self) -> None:
        # A safety net for ``load(...).predict(...)`` without ``with``: sessions and GPU buffers go
        # with the object. ``close`` (or ``with``) remains the way to free them at a known point.
        runtime = getattr(self, "runtime", None)
        if runtime is not None and runtime.active:
            try:
                runtime.__exit__(None, None, None)
            except Exception:  # noqa: BLE001 - at interpreter exit modules may already be gone
                pass

    def __enter__(self) -> Model:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Model({str(self.path)!r}, {self.description})"


def load(path: str | Path, runtime: str = "auto", device: str = "auto", **options: Any) -> Model:
    """Open a ``.rpol``, ``.onnx`` or ``.engine`` file (see `Model`)."""
    return Model(path, runtime, device, **options)


def _as_rgb(image: ImageLike) -> np.ndarray:
    if isinstance(image, (str, Path)):
        return load_rgb(Path(image))
    return _check_frame(image)


def _check_frame(frame: np.ndarray) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        what = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise ValueError(f"expected a uint8 (H, W, 3) image, got {what}")
    return frame
