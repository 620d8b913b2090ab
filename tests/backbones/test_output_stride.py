"""--output-stride on EfficientNet-Lite: timm's dilated recipe, the same weights, a finer grid."""

from __future__ import annotations

import cv2
import pytest
import torch
import torch.nn.functional as F

from rpol_edge.backbones.timm_backbone import BackboneError, BackboneSpec, build_backbone
from rpol_edge.data.images import load_rgb
from tests.conftest import SAMPLE


def test_lite0_at_output_stride_16_is_dilated_with_the_same_weights() -> None:
    s32 = build_backbone(BackboneSpec("lite0"), 448)
    s16 = build_backbone(BackboneSpec("lite0", output_stride=16), 448)
    assert (s32.stride, s16.stride) == (32, 16)
    assert s16.weights_sha256 == s32.weights_sha256
    a, b = s32.module.state_dict(), s16.module.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    blocks = s16.module.model.blocks
    assert blocks[5][0].conv_dw.stride == (1, 1) and blocks[5][0].conv_dw.dilation == (1, 1)
    assert all(blk.conv_dw.dilation == (2, 2) for blk in [*blocks[5][1:], *blocks[6]])
    image = load_rgb(sorted((SAMPLE / "JPEGImages").glob("*.jpg"))[0])
    x = torch.from_numpy(cv2.resize(image, (448, 448))).permute(2, 0, 1)[None].float() / 255
    x = (x - torch.tensor(s32.mean)[:, None, None]) / torch.tensor(s32.std)[:, None, None]
    plain = build_backbone(BackboneSpec("lite0"), 448)
    plain.module.model.blocks[5][0].conv_dw.stride = (1, 1)  # stride 16 without the dilation
    with torch.no_grad():
        f32, f16, fp = s32.module(x), s16.module(x), plain.module(x)
    assert f32.shape[-2:] == (14, 14) and f16.shape[-2:] == fp.shape[-2:] == (28, 28)

    def agreement(f: torch.Tensor) -> float:  # with the stride-32 map, pooled to its grid
        return F.cosine_similarity(F.avg_pool2d(f, 2).flatten(1), f32.flatten(1)).item()

    # Dilation keeps each layer's receptive field: the features stay the ones the weights were
    # trained to give (0.94 on a sample photo); without it they drift (0.51).
    assert agreement(f16) > 0.85 and agreement(fp) < 0.7


def test_output_stride_on_a_vit_is_refused() -> None:
    with pytest.raises(BackboneError, match="patch size"):
        build_backbone(BackboneSpec("vit_small_patch16_224", "/nonexistent.pth", output_stride=16), 224)


@pytest.mark.parametrize("arch", ["vgg11", "mobilenetv3_small_100"])
def test_an_architecture_without_that_stride_is_named(arch: str) -> None:
    """timm refuses the argument (an assert, an unknown keyword): one line, not its traceback."""
    with pytest.raises(BackboneError, match=f"{arch}: timm cannot build it at output stride 16"):
        build_backbone(BackboneSpec(arch, "/nonexistent.pth", output_stride=16), 224)
