"""The public API: ``import rpol_edge`` is light, one call localizes an image or a batch of frames,
and its boxes are the ones ``rpol-edge predict`` writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import rpol_edge
from rpol_edge.cli.app import app
from rpol_edge.data.images import ImageError
from rpol_edge.runtimes import InferenceError

PHOTOS = sorted((rpol_edge.SAMPLE_ROOT / "JPEGImages").glob("*.jpg"))[:3]


def test_import_rpol_edge_never_imports_torch() -> None:
    code = (
        "import sys, rpol_edge; rpol_edge.load; rpol_edge.Model; rpol_edge.SAMPLE_ROOT; "
        "print(sorted(m for m in ('torch', 'timm', 'onnx', 'rpol_edge.fitting') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'predict_all'"):
        _ = rpol_edge.predict_all  # type: ignore[attr-defined]
    assert {"fit", "load", "export", "Model", "Prediction"} <= set(dir(rpol_edge))


def test_predict_matches_the_cli(sample_onnx: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    res = CliRunner().invoke(app, ["predict", str(sample_onnx), *map(str, PHOTOS), "-o", str(tmp_path)])
    assert res.exit_code == 0, res.output
    with rpol_edge.load(sample_onnx) as model:
        for photo in PHOTOS:
            det = model.predict(photo)
            rec = json.loads((tmp_path / f"{photo.stem}.json").read_text())
            assert list(det.box or []) == rec["box"] and round(det.score, 6) == rec["score"]
            k = model.meta.input_size
            assert det.score_map.shape == (k, k) and det.mask.dtype == bool
            h, w = cv2.imread(str(photo)).shape[:2]
            assert det.heatmap().shape == (h, w)
            assert det.overlay(photo).shape == (h, w, 3)


def test_predict_frames_takes_bgr_batches(sample_onnx: Path) -> None:
    """A batch of OpenCV (BGR) frames of different sizes in one call, chunked to the model's batch
    range: the same boxes as one RGB image at a time."""
    frames = [cv2.imread(str(p)) for p in PHOTOS] * 4  # 12 frames, the graph's max batch is 8
    with rpol_edge.load(sample_onnx) as model:
        batch = model.predict_frames(frames)
        one = [model.predict(np.ascontiguousarray(f[..., ::-1])) for f in frames[:3]]
    assert [d.box for d in batch] == [d.box for d in one] * 4
    assert model.predict_frames([]) == []


def test_bad_input_is_one_clear_error(sample_onnx: Path, tmp_path: Path) -> None:
    with rpol_edge.load(sample_onnx) as model:
        with pytest.raises(ValueError, match=r"uint8 \(H, W, 3\) image, got float32"):
            model.predict(np.zeros((10, 10, 3), np.float32))
        broken = tmp_path / "broken.jpg"
        broken.write_bytes(b"not a jpeg")
        with pytest.raises(ImageError, match="broken.jpg: cannot decode image"):
            model.predict(broken)
    with pytest.raises(InferenceError, match="unknown model file type"):
        rpol_edge.load(tmp_path / "model.pt")


def test_options_are_checked_by_name(sample_model: Path, tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="unknown option 'input_sise' \\(did you mean input_size\\?\\)"):
        rpol_edge.fit(tmp_path, tmp_path / "m.rpol", input_sise=224)
    with pytest.raises(TypeError, match="unknown option 'fp61'"):
        rpol_edge.export(sample_model, tmp_path, fp61=True)


def test_fit_export_load_round_trip(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    folder = rpol_edge.SAMPLE_ROOT / "JPEGImages"
    with rpol_edge.fit(folder, tmp_path / "m.rpol", input_size=64, workers=0) as fitted:
        assert fitted.meta.n_images == 40 and (tmp_path / "m.rpol").is_file()
        ref = fitted.predict(PHOTOS[0])
    files = rpol_edge.export(tmp_path / "m.rpol", tmp_path / "exp")
    assert set(files) == {"onnx"}
    with rpol_edge.load(files["onnx"]) as model:
        assert model.runtime.name == "ort"
        assert model.predict(PHOTOS[0]).box == ref.box


def test_library_errors_name_the_field_and_the_cli_its_flag() -> None:
    import typer

    from rpol_edge.cli.app import app
    from rpol_edge.cli.errors import command_flags, to_flags
    from rpol_edge.cli.fit import ALIASES
    from rpol_edge.fitting.config import FitConfig

    fit_cmd = typer.main.get_command(app).commands["fit"]  # type: ignore[attr-defined]
    cfg = FitConfig("folder", Path("."), input_size=16)
    with pytest.raises(ValueError, match=r"^input_size=16: at least 32") as exc:
        cfg.validate()
    flags = command_flags(fit_cmd.params, ALIASES)
    assert to_flags(str(exc.value), flags).startswith("--input-size 16: at least 32")
    assert to_flags("tau_mode=x: choose joint or mean", flags) == "--tau x: choose joint or mean"
    # the CLI's defaults are the record's: one place to change a default
    defaults = {p.name: p.default for p in fit_cmd.params}
    expected = {"split": None, "backbone": "lite0", "input_size": 448, "head": "rpol", "seed": 0,
                "batch_size": 16, "workers": 2, "device": "auto", "tau": "joint"}  # fmt: skip
    assert {k: defaults[k] for k in expected} == expected
    record = FitConfig("x", Path("."))
    assert {k: getattr(record, "tau_mode" if k == "tau" else k) for k in expected} == expected
    assert record.data_split == "train"  # no split given: a data set's train split
