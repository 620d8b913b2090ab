"""BatchNorm folding: exact on the real Lite0 localizer, refused where a conv output has another reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="folding is a torch-runtime feature (torch extra)")
from torch import nn  # noqa: E402

from rpol_edge.core.artifact import ModelArtifact  # noqa: E402
from rpol_edge.core.prepare import prepare  # noqa: E402
from rpol_edge.data.images import load_rgb  # noqa: E402
from rpol_edge.modeling.factory import build_localizer  # noqa: E402
from rpol_edge.modeling.fold_bn import FoldError, conv_bn_pairs, fold_batchnorm  # noqa: E402
from rpol_edge.runtimes import open_runtime  # noqa: E402
from tests.conftest import SAMPLE  # noqa: E402


def _frames(model: Path, n: int = 2) -> np.ndarray:
    meta = ModelArtifact.load(model).meta
    paths = sorted((SAMPLE / "JPEGImages").iterdir())[:n]
    return np.stack([prepare(load_rgb(p), meta, is_rgb=True)[0] for p in paths])


def test_folds_every_batchnorm_of_lite0_and_keeps_the_maps(sample_model: Path) -> None:
    module = build_localizer(ModelArtifact.load(sample_model))
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in module.modules())
    x = torch.from_numpy(_frames(sample_model))
    with torch.inference_mode():
        score0, mask0, peak0 = module(x)
    folded = fold_batchnorm(module, lambda: module(x)[0])
    assert n_bn == 49 and folded == 49  # stem, 16 blocks (2 or 3 each), head
    assert not any(isinstance(m, nn.BatchNorm2d) for m in module.modules())
    assert sum(isinstance(m, nn.ReLU6) for m in module.modules()) == 33  # the activations stay
    with torch.inference_mode():
        score1, mask1, peak1 = module(x)
    assert float((score1 - score0).abs().max()) < 1e-5 and float((peak1 - peak0).abs().max()) < 1e-5
    assert float((mask1 != mask0).float().mean()) < 1e-3


class _Shared(nn.Module):
    """conv -> bn, and the conv output also feeds the residual: folding the bn would change it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(3)
        with torch.no_grad():
            self.bn.running_mean.fill_(0.5)
            self.bn.running_var.fill_(4.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


def test_refuses_a_conv_output_with_another_reader_and_restores_the_module() -> None:
    torch.manual_seed(0)
    m = _Shared().eval()
    x = torch.randn(1, 3, 8, 8)
    assert conv_bn_pairs(m, lambda: m(x)) == [("conv", "bn")]
    with torch.inference_mode():
        before = m(x)
    with pytest.raises(FoldError, match="moved the output"):
        fold_batchnorm(m, lambda: m(x))
    assert isinstance(m.bn, nn.BatchNorm2d) and m.conv.bias is None
    with torch.inference_mode():
        assert torch.equal(m(x), before)
    with pytest.raises(FoldError, match="eval mode"):
        fold_batchnorm(m.train(), lambda: m(x))


def test_torch_runtime_folded_matches_unfolded(sample_model: Path) -> None:
    frames = _frames(sample_model, 3)
    with open_runtime(sample_model, "torch", device="cpu", fold_bn=False) as plain:
        a = plain.infer(frames)
        assert plain.folded == 0
    with open_runtime(sample_model, "torch", device="cpu") as rt:  # on by default
        b = rt.infer(frames)
        assert rt.folded == 49
    assert float(np.abs(a.score - b.score).max()) < 1e-5


@pytest.mark.gpu
def test_cuda_defaults_fold_and_agree_with_cpu(sample_model: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from rpol_edge.evaluate.compare import agreement

    frames = _frames(sample_model, 6)
    with open_runtime(sample_model, "torch", device="cpu") as cpu:
        ref = cpu.infer(frames)
    with open_runtime(sample_model, "torch", device="cuda") as rt:
        assert rt.folded == 49 and rt.description.endswith(" graph")
        res = agreement(rt.infer(frames), ref)
    assert res.max_abs_map < 1e-4 and res.boxes_iou_090 == len(frames), res


class _Reused(nn.Module):
    """One conv -> bn pair applied twice (shared weights): folding it once would serve neither call
    site alone, so it is left as it is."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.other = nn.Conv2d(3, 3, 1)
        self.bn_other = nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn_other(self.other(self.bn(self.conv(self.bn(self.conv(x))))))


def test_a_pair_used_twice_is_not_folded_the_others_are() -> None:
    torch.manual_seed(0)
    m = _Reused().eval()
    with torch.no_grad():
        for bn in (m.bn, m.bn_other):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(1, 3, 8, 8)
    with torch.inference_mode():
        before = m(x)
    assert conv_bn_pairs(m, lambda: m(x)) == [("other", "bn_other")]
    assert fold_batchnorm(m, lambda: m(x)) == 1
    assert isinstance(m.bn, nn.BatchNorm2d) and isinstance(m.bn_other, nn.Identity)
    with torch.inference_mode():
        assert float((m(x) - before).abs().max()) < 1e-5


class _InPlace(nn.Module):
    """conv -> ReLU(inplace) -> bn: the bn reads the conv's output tensor, but modified."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.act(self.conv(x)))


class _Mixed(nn.Module):
    """A foldable pair, then the _Shared pattern (its conv output also feeds a residual)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)
        self.shared = _Shared()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shared(self.bn1(self.conv1(x)))


def test_in_place_op_between_conv_and_bn_is_not_a_pair() -> None:
    m = _InPlace().eval()
    x = torch.randn(1, 3, 8, 8)
    assert conv_bn_pairs(m, lambda: m(x)) == []
    assert fold_batchnorm(m, lambda: m(x)) == 0 and isinstance(m.bn, nn.BatchNorm2d)


def test_one_bad_pair_is_put_back_the_good_ones_stay_folded(caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(0)
    m = _Mixed().eval()
    with torch.no_grad():
        m.bn1.running_mean.uniform_(-1, 1)
        m.bn1.running_var.uniform_(0.5, 2.0)
    x = torch.randn(1, 3, 8, 8)
    with torch.inference_mode():
        before = m(x)
    assert conv_bn_pairs(m, lambda: m(x)) == [("conv1", "bn1"), ("shared.conv", "shared.bn")]
    assert fold_batchnorm(m, lambda: m(x)) == 1
    assert "1 of 2 pairs refused" in caplog.text
    assert isinstance(m.bn1, nn.Identity) and isinstance(m.shared.bn, nn.BatchNorm2d)
    assert m.shared.conv.bias is None  # put back as it was
    with torch.inference_mode():
        assert float((m(x) - before).abs().max()) < 1e-5
