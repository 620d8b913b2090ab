"""explain: the representer identity (synthetic float64 and real photos), query geometry, the
streaming heaps, the feature cache and its refusals, the figure and the CLI's one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from rpol_edge.core.geometry import CropTransform
from rpol_edge.core.wstar import FeatureSums, solve
from rpol_edge.data import DatasetError
from rpol_edge.explain.explainer import ExplainConfig, Explanation, explain
from rpol_edge.explain.feature_cache import FeatureCacheError
from rpol_edge.explain.queries import cell_to_point, point_to_cell
from rpol_edge.explain.representers import importance, normalizer, representer_values, similarity, unit_map
from rpol_edge.modeling.feature_sums import add_features
from tests.cli.test_commands import one_line_error, run
from tests.conftest import SAMPLE

QUERY = SAMPLE / "JPEGImages" / "raccoon-13.jpg"


@pytest.mark.parametrize("tau_mode", ["joint", "mean"])
def test_representer_values_sum_to_the_activation(tau_mode: str) -> None:
    rng = np.random.default_rng(0)
    feats = np.maximum(rng.normal(size=(7, 16, 3, 4)), 0.0)
    feats[2, :, 1, 1] = 0.0  # a zero vector: f̂ = 0 on both sides of the identity
    sums = FeatureSums.zeros(16)
    add_features(sums, torch.from_numpy(feats))
    w, taus = solve(sums, tau_mode)
    z = normalizer(sums.v_sum[0], sums.u_sum[0], taus[0])
    q = np.maximum(rng.normal(size=16), 0.0)
    q_unit = q / np.linalg.norm(q)
    total = 0.0
    for f in feats:
        unit, norms = unit_map(f)
        total += representer_values(importance(norms, taus[0], z), similarity(unit, q_unit)).sum()
    assert abs(total - float(w[0] @ q_unit)) < 1e-12


def test_importance_is_zero_at_tau_and_scaled_by_grid_and_z() -> None:
    norms = np.array([[2.0, 4.0], [6.0, 8.0]])
    alpha = importance(norms, 6.0, 0.5)
    np.testing.assert_allclose(alpha, (norms - 6.0) / (4 * 0.5))
    assert alpha[1, 0] == 0.0


def test_points_map_to_feature_cells_and_back() -> None:
    t = CropTransform(src_w=500, src_h=375, resize=480, crop=448)
    grid = (14, 14)
    # x: 250 * 480/500 - 16 = 224 -> 224 * 14/448 = 7.0; y: 187 * 480/375 - 16 = 223.36 -> 6.98
    assert point_to_cell(250, 187, t, grid) == (6, 7)
    for row, col in [(0, 0), (3, 9), (13, 13)]:
        x, y = cell_to_point(row, col, t, grid)
        assert point_to_cell(x, y, t, grid) == (row, col)
    with pytest.raises(ValueError, match="outside"):
        point_to_cell(1, 1, t, grid)  # cut away by the center crop


@pytest.fixture(scope="module")
def first_run(sample_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Explanation, Path]:
    """One streamed run (default points) that also writes the feature cache the other tests read."""
    cache = tmp_path_factory.mktemp("explain") / "cache"
    second = SAMPLE / "JPEGImages" / "raccoon-100.jpg"
    found = explain(ExplainConfig(sample_model, [QUERY, second], top=2, cache=cache, workers=0))
    assert [Path(e.meta["image"]).name for e in found] == ["raccoon-13.jpg", "raccoon-100.jpg"]
    return found[0], cache


def test_explain_real_photos_identity_and_heaps(first_run: tuple[Explanation, Path]) -> None:
    ex, cache = first_run
    assert [q.source for q in ex.queries] == ["peak", "lowest"]
    assert ex.meta["n_train_images"] == 28 and ex.meta["feature_sums_rel_diff"] < 1e-6
    assert ex.meta["cache"]["written"] and (cache / "manifest.json").is_file()
    for q in ex.queries:
        assert abs(q.sum_r - q.a_q) < 1e-6  # float32 precision (in practice ~1e-16: same features)
        exc, inh = q.top_excitatory(), q.top_inhibitory()
        assert len(exc) == len(inh) == 2
        assert exc[0].total >= exc[1].total and inh[0].total <= inh[1].total
        np.testing.assert_allclose(exc[0].r, exc[0].alpha * exc[0].sim, rtol=1e-5, atol=1e-12)
        assert abs(float(exc[0].r.sum(dtype=np.float64)) - exc[0].total) < 1e-6
    peak, lowest = ex.queries
    assert peak.a_q > lowest.a_q


def test_explain_from_cache(sample_model: Path, first_run: tuple[Explanation, Path], tmp_path: Path) -> None:
    ex, cache = first_run
    peak = ex.queries[0]
    again = explain(ExplainConfig(sample_model, [QUERY], points=[(peak.x, peak.y)], top=2, cache=cache))[0]
    assert again.meta["cache"]["used"] and not again.meta["cache"]["written"]
    q = again.queries[0]
    assert q.cell == peak.cell and abs(q.a_q - peak.a_q) < 1e-12
    assert abs(q.sum_r - q.a_q) < 1e-4  # float16 features: the identity holds to ~1e-5
    assert [c.image_id for c in q.top_excitatory()] == [c.image_id for c in peak.top_excitatory()]

    # A cache written for other features is refused, naming the field that differs.
    other = tmp_path / "other"
    shutil.copytree(cache, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["weights_sha256"] = "0" * 64
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(FeatureCacheError, match="weights_sha256"):
        explain(ExplainConfig(sample_model, [QUERY], cache=other, workers=0))
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("x")
    with pytest.raises(FeatureCacheError, match="not an rpol-edge feature cache"):
        explain(ExplainConfig(sample_model, [QUERY], cache=tmp_path / "junk", workers=0))


def test_explain_refuses_another_training_set(sample_model: Path) -> None:
    with pytest.raises(DatasetError, match="not its training set"):
        explain(ExplainConfig(sample_model, [QUERY], split="test", workers=0))


def test_explain_cli_writes_figure_and_json(
    sample_model: Path, first_run: tuple[Explanation, Path], tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib", reason="the figure needs the explain extra")
    cache = first_run[1]
    code, out = run("explain", sample_model, QUERY, "--point", "250,150", "--top", "1", "--cache", cache,
                    "-o", tmp_path / "ex")  # fmt: skip
    assert code == 0, out
    rec = json.loads((tmp_path / "ex" / "raccoon-13_explain.json").read_text())
    q = rec["queries"][0]
    assert q["identity_abs_error"] < 1e-4 and q["source"] == "given" and rec["cache"]["used"]
    png = tmp_path / "ex" / q["figure"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert one_line_error(*run("explain", sample_model, QUERY, "--point", "abc", "-o", tmp_path / "e2"))
    assert "outside" in one_line_error(
        *run("explain", sample_model, QUERY, "--point", "1,1", "--workers", "0", "-o", tmp_path / "e3")
    )


def test_fit_records_its_training_set_and_old_metadata_still_loads(sample_model: Path) -> None:
    from rpol_edge.core.artifact import ModelArtifact
    from rpol_edge.core.metadata import ModelMeta

    a = ModelArtifact.load(sample_model)
    m = a.meta
    assert (m.fit_data, Path(m.fit_root), m.fit_split) == ("voc", SAMPLE.resolve(), "train")
    assert (m.tau_mode, m.sampling_ratio, m.seed) == ("joint", 1.0, 0)
    assert a.taus is not None and a.taus[0] == m.tau
    old = {k: v for k, v in m.to_dict().items() if k not in ("tau_mode", "fit_data", "fit_root", "fit_split")}
    back = ModelMeta.from_dict(old)
    assert back.tau_mode == "joint" and back.fit_data == ""
