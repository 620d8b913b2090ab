"""The ``scene`` operating point (a fixed camera): the per-cell scene model, fitted without labels
on the camera's own frames, finds what is new in a frame where the w* map sees the scene.

The camera here is made from the bundled sample: one photo is the fixed view, and a raccoon cut
from another photo walks through it (a different place in every frame), as people cross a lobby.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from rpol_edge.cli import app
from rpol_edge.core.artifact import ModelArtifact
from rpol_edge.core.scene import background, evidence
from rpol_edge.core.wstar import FeatureSums
from rpol_edge.data import read_dataset
from rpol_edge.data.voc import read_annotation
from rpol_edge.evaluate.compare import agreement, dataset_frames
from rpol_edge.fitting.config import FitConfig
from rpol_edge.fitting.fitter import fit
from rpol_edge.results.detection import crop_boxes
from rpol_edge.runtimes import RUNTIMES, infer_all, missing_modules, open_runtime
from tests.conftest import SAMPLE

W, H, OBJ = 320, 240, 72
K = 448


def _photo(name: str) -> np.ndarray:
    return cv2.imread(str(SAMPLE / "JPEGImages" / f"{name}.jpg"))


def _ids() -> list[str]:
    return (SAMPLE / "ImageSets" / "Main" / "train.txt").read_text().split()


def _write_voc(
    root: Path, split: str, frames: list[tuple[str, np.ndarray, tuple[int, int, int, int]]]
) -> None:
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for name, img, (x0, y0, x1, y1) in frames:
        cv2.imwrite(str(root / "JPEGImages" / f"{name}.jpg"), img)
        (root / "Annotations" / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.jpg</filename><size><width>{W}</width><height>{H}</height>"
            f"<depth>3</depth></size><object><name>raccoon</name><bndbox><xmin>{x0 + 1}</xmin>"
            f"<ymin>{y0 + 1}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object></annotation>"
        )
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(n for n, _, _ in frames) + "\n")


@pytest.fixture(scope="module")
def camera(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_camera(tmp_path_factory.mktemp("camera"))


def make_camera(root: Path) -> Path:
    """A fixed view (one sample photo) with a raccoon (cut from another) at a new place in each
    frame, light noise on every frame; 32 train frames, 10 test frames."""
    ids = _ids()
    view = cv2.resize(_photo(ids[0]), (W, H), interpolation=cv2.INTER_AREA)
    boxes = read_annotation(SAMPLE / "Annotations" / f"{ids[1]}.xml")[0]
    x0, y0, x1, y1 = (int(v) for v in boxes[0])
    animal = cv2.resize(_photo(ids[1])[y0:y1, x0:x1], (OBJ, OBJ), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(0)
    for split, n in (("train", 32), ("test", 10)):
        frames = []
        for i in range(n):
            x, y = int(rng.integers(0, W - OBJ)), int(rng.integers(0, H - OBJ))
            img = view.astype(np.int16) + rng.integers(-6, 7, view.shape).astype(np.int16)
            img[y : y + OBJ, x : x + OBJ] = animal
            frames.append(
                (f"{split}{i:03d}", np.clip(img, 0, 255).astype(np.uint8), (x, y, x + OBJ, y + OBJ))
            )
        _write_voc(root, split, frames)
    return root


def camera_fit(camera: Path, rule: str, folder: Path) -> Path:
    """A model of ``rule`` fitted on the camera's train frames, at the size inference uses."""
    path = folder / f"{rule}.rpol"
    cfg = FitConfig("voc", camera, "train", operating_point=rule, input_size=K, resize_size=K, workers=0)
    fit(cfg).artifact.save(path)
    return path


@pytest.fixture(scope="module")
def scene_model(camera: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return camera_fit(camera, "scene", tmp_path_factory.mktemp("scene"))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_background_and_evidence_by_hand() -> None:
    cells = np.zeros((2, 1, 2))
    cells[:, 0, 0] = [3.0, 4.0]  # cell 0: the scene points along (0.6, 0.8); cell 1 never seen
    b = background(cells)
    assert np.allclose(b[:, 0, 0], [0.6, 0.8]) and np.all(b[:, 0, 1] == 0)
    f = np.zeros((1, 2, 1, 2))
    f[0, :, 0, 0] = [6.0, 8.0]  # the scene itself, at another norm: no evidence
    f[0, :, 0, 1] = [1.0, 0.0]
    e = evidence(f, b)
    assert np.allclose(e[0, 0], [0.0, 1.0], atol=1e-6)  # b is float32, as in the graph
    sums = FeatureSums.zeros(2, grid=(1, 2))
    sums.add_cell_sums(cells)
    assert np.array_equal(sums.merge(sums).cells, 2 * cells)
    with pytest.raises(ValueError, match="do not fit"):
        sums.add_cell_sums(np.zeros((2, 2, 2)))


def test_scene_model_is_the_mean_unit_feature_per_cell(scene_model: Path, camera: Path) -> None:
    """The fitted scene equals the per-cell unit mean of the fit frames' features, and the graph's
    response equals `evidence` on them (the NumPy reference)."""
    import torch

    from rpol_edge.modeling.factory import build_localizer

    art = ModelArtifact.load(scene_model)
    assert art.meta.operating.label() == "scene 0.85" and art.cells is not None
    assert art.meta.boxes == "peak"
    assert art.cells.shape == (art.meta.channels, K // 32, K // 32)
    loc = build_localizer(art)
    frames = dataset_frames(art.meta, "voc", camera, "train", workers=0)
    with torch.inference_mode():
        f = loc.features(torch.from_numpy(frames)).double().numpy()
        raw = loc.response(torch.from_numpy(f).float()).numpy()[:, 0]
    unit = f / np.linalg.norm(f, axis=1, keepdims=True)
    assert np.allclose(art.cells, unit.sum(0), rtol=1e-5, atol=1e-6)
    assert np.abs(raw - evidence(f, background(art.cells))).max() < 1e-5


def camera_hits(model: Path, camera: Path) -> int:
    """Of the camera's 10 test frames, how many the model's top box (its recorded box mode) lands on
    the raccoon (IoU >= 0.5)."""
    with open_runtime(model, "torch") as rt:
        out = infer_all(rt, dataset_frames(rt.meta, "voc", camera, "test", workers=0))
        mode = rt.meta.boxes
    scale = np.array([W / K, H / K, W / K, H / K])
    got = [crop_boxes(sc[0], m[0], boxes=mode)[0] for sc, m in zip(out.score, out.mask, strict=True)]
    truth = [np.asarray(s.boxes[0], float) for s in read_dataset("voc", camera, "test")]
    return sum(len(g) > 0 and _iou(g[0] * scale, t) >= 0.5 for g, t in zip(got, truth, strict=True))


def sign_model(camera: Path, folder: Path) -> Path:
    """The default fit (w*, `sign`) on the camera's train frames, at the same size."""
    return camera_fit(camera, "sign", folder)


def exports_like_torch(model: Path, camera: Path, folder: Path, label: str) -> None:
    """The model's ONNX export records ``label`` and gives torch's maps and boxes on ONNX Runtime."""
    pytest.importorskip("onnx", reason="ONNX export needs the onnx extra")
    if missing_modules(RUNTIMES["ort"]):
        pytest.skip("ort runtime not installed")
    from rpol_edge.core.onnx_meta import read_onnx_meta
    from rpol_edge.exporters.onnx_export import export_onnx

    path = folder / "camera.onnx"
    export_onnx(model, path, batch=(1, 4, 8))
    assert read_onnx_meta(path).operating.label() == label
    with open_runtime(model, "torch") as ref, open_runtime(path, "ort", device="cpu") as rt:
        frames = dataset_frames(ref.meta, "voc", camera, "test", workers=0)
        a, b = infer_all(ref, frames), infer_all(rt, frames)
    assert np.abs(a.score - b.score).max() <= 1e-4
    assert agreement(a, b).boxes_identical == len(frames)


def test_scene_boxes_follow_what_crosses_the_view(scene_model: Path, camera: Path, tmp_path: Path) -> None:
    """On frames it was not fitted on, the scene model's box lies on the raccoon; the w* map of a
    fit on the same frames (`sign`) boxes the scene instead."""
    hits = {
        "scene": camera_hits(scene_model, camera),
        "sign": camera_hits(sign_model(camera, tmp_path), camera),
    }
    assert hits["scene"] >= 6, hits  # of 10 (7 when written; the misses overlap at IoU 0.2-0.45)
    assert hits["scene"] >= hits["sign"] + 3, hits


def test_scene_graph_exports_and_matches_on_ort(scene_model: Path, camera: Path, tmp_path: Path) -> None:
    """The scene is a constant of the exported graph: ONNX Runtime gives torch's maps and boxes."""
    exports_like_torch(scene_model, camera, tmp_path, "scene 0.85")


def assert_refused(args: list[str], words: str) -> None:
    """The command exits 2 with one line naming ``words``, no traceback."""
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    assert words in res.output and "Traceback" not in res.output


def fit_args(camera: Path, rule: str, out: Path) -> list[str]:
    return ["fit", "--data", "voc", "--root", str(camera), "--operating-point", rule, "-o", str(out)]


def test_scene_options_refused_with_one_line(camera: Path, tmp_path: Path) -> None:
    base = fit_args(camera, "scene", tmp_path / "m.rpol")
    assert_refused([*base, "--classwise"], "one model of the view")
    assert_refused([*base, "--fit-size", "160"], "inference grid")
    assert_refused([*base, "--scene-level", "1.5"], "--scene-level")


@pytest.mark.parametrize("runtime", ["ort", "openvino"])
def test_refit_rewrites_the_scene_without_torch_code(
    runtime: str, scene_model: Path, camera: Path, tmp_path: Path
) -> None:
    """A camera refits its own scene through the exported graph (no PyTorch on that path): refitted
    on other frames (the test split), the graph's scene constant becomes the per-cell unit mean of
    those frames' features, as the torch fit on them computes it, and gives that fit's boxes."""
    onnx = pytest.importorskip("onnx", reason="ONNX export needs the onnx extra")
    if missing_modules(RUNTIMES[runtime]):
        pytest.skip(f"{runtime} runtime not installed")
    from rpol_edge.api.refit_job import refit
    from rpol_edge.core.onnx_meta import read_onnx_meta
    from rpol_edge.exporters.onnx_export import export_onnx
    from rpol_edge.refitting.onnx_graph import head_weight

    exported = tmp_path / "camera.onnx"
    export_onnx(scene_model, exported, batch=(1, 4, 8))
    other = tmp_path / "other.rpol"
    cfg = FitConfig("voc", camera, "test", operating_point="scene", input_size=K, resize_size=K, workers=0)
    fit(cfg).artifact.save(other)
    want = background(ModelArtifact.load(other).cells)
    before = head_weight(onnx.load(str(exported)), read_onnx_meta(exported), "exported")
    assert (before * want).sum(0).min() < 0.999  # the refit has something to move

    out = tmp_path / "refit.onnx"
    refit(exported, out, data="voc", root=camera, split="test", runtime=runtime, workers=0).close()
    after = head_weight(onnx.load(str(out)), read_onnx_meta(out), str(out))
    assert (after * want).sum(0).min() >= 0.99999
    meta = read_onnx_meta(out)
    assert meta.operating.label() == "scene 0.85" and meta.n_images == 10
    with open_runtime(other, "torch") as ref, open_runtime(out, "ort", device="cpu") as rt:
        frames = dataset_frames(ref.meta, "voc", camera, "train", workers=0)
        assert agreement(infer_all(ref, frames), infer_all(rt, frames)).boxes_identical == len(frames)


def test_calibrate_sets_the_scene_level_and_keeps_the_scene(
    scene_model: Path, camera: Path, tmp_path: Path
) -> None:
    """`eval --calibrate` on a scene model picks the level with the labels; the rule and the scene
    model stay (a fixed threshold on the w* map would throw the scene away)."""
    model = tmp_path / "calibrated.rpol"
    model.write_bytes(scene_model.read_bytes())
    res = CliRunner().invoke(
        app,
        [
            "eval",
            str(model),
            "--data",
            "voc",
            "--root",
            str(camera),
            "--split",
            "test",
            "--workers",
            "0",
            "--calibrate",
        ],
    )
    assert res.exit_code == 0, res.output
    art = ModelArtifact.load(model)
    assert art.meta.operating_point == "scene" and art.cells is not None
    assert f"set to scene {art.meta.threshold:g}" in res.output


def test_a_camera_fits_its_scene_from_a_source(camera: Path, tmp_path: Path) -> None:
    """`fit --source` takes the scene rule too: the camera's frames read as a source give the
    scene model the same frames read as a data set give."""
    import rpol_edge

    frames = camera / "JPEGImages"
    opts = {"operating_point": "scene", "input_size": K, "resize_size": K, "workers": 0}
    rpol_edge.fit(frames, tmp_path / "folder.rpol", data="folder", **opts).close()
    rpol_edge.fit(output=tmp_path / "source.rpol", source=str(frames), frames=42, **opts).close()
    a, b = (ModelArtifact.load(tmp_path / f"{n}.rpol") for n in ("folder", "source"))
    assert a.cells is not None and b.cells is not None and b.meta.fit_data == "source"
    assert b.meta.n_images == a.meta.n_images == 42
    assert (background(a.cells) * background(b.cells)).sum(0).min() >= 0.99999


def test_explain_refuses_a_scene_model_in_one_line(scene_model: Path, camera: Path, tmp_path: Path) -> None:
    photo = next((camera / "JPEGImages").glob("test*.jpg"))
    res = CliRunner().invoke(app, ["explain", str(scene_model), str(photo), "-o", str(tmp_path / "x")])
    assert res.exit_code == 2, res.output
    assert "evidence against its scene" in res.output and "Traceback" not in res.output
