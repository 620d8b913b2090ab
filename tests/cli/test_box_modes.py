"""``--boxes largest|all`` on predict, run and eval: the records carry every box, eval scores them."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from rpol_edge.cli.app import app
from tests.conftest import SAMPLE
from tests.multi_canvas import write_tiles

runner = CliRunner()


def invoke(*args: object) -> tuple[int, str]:
    res = runner.invoke(app, [str(a) for a in args])
    return res.exit_code, res.output


def test_predict_boxes_all_writes_every_box_and_largest_one(sample_onnx: Path, tmp_path: Path) -> None:
    tiles = write_tiles(tmp_path / "in")
    code, out = invoke("predict", sample_onnx, *tiles, "-o", tmp_path / "all", "--boxes", "all")
    assert code == 0, out
    recs = [json.loads(ln) for ln in (tmp_path / "all" / "predictions.jsonl").read_text().splitlines()]
    assert len(recs) == 3 and all((tmp_path / "all" / f"{p.stem}.png").is_file() for p in tiles)
    for r in recs:
        assert r["boxes"][0] == {"box": r["box"], "score": r["score"]}
        assert [b["score"] for b in r["boxes"]] == sorted((b["score"] for b in r["boxes"]), reverse=True)
        assert json.loads((tmp_path / "all" / f"{Path(r['image']).stem}.json").read_text()) == r
    assert max(len(r["boxes"]) for r in recs) >= 2, recs  # two animals apart: two boxes
    assert "more)" in out
    code, out = invoke("predict", sample_onnx, *tiles, "-o", tmp_path / "one")
    assert code == 0, out
    ones = [json.loads(ln) for ln in (tmp_path / "one" / "predictions.jsonl").read_text().splitlines()]
    assert all(r["boxes"] == [{"box": r["box"], "score": r["score"]}] for r in ones)


def test_boxes_refuses_an_unknown_mode_in_one_line(sample_onnx: Path, tmp_path: Path) -> None:
    photo = sorted((SAMPLE / "JPEGImages").glob("*.jpg"))[0]
    for args in (
        ("predict", sample_onnx, photo, "-o", tmp_path / "p", "--boxes", "every"),
        ("eval", sample_onnx, "--root", SAMPLE, "--boxes", "every"),
        ("run", sample_onnx, "--source", photo, "--boxes", "every"),
    ):
        code, out = invoke(*args)
        lines = [ln for ln in out.splitlines() if ln.strip()]
        assert code == 2 and "Traceback" not in out, out
        assert lines[-1] == "error: --boxes 'every': choose largest, peak, all or objects", out
    assert not (tmp_path / "p").exists()


def test_eval_prints_ap50_recall_precision_for_the_chosen_boxes(sample_onnx: Path, tmp_path: Path) -> None:
    metrics = {}
    for mode in ("largest", "all"):
        js = tmp_path / f"{mode}.json"
        code, out = invoke(
            "eval", sample_onnx, "--root", SAMPLE, "--boxes", mode, "--json", js, "--workers", "0"
        )
        assert code == 0, out
        assert all(k in out for k in ("gt_known_loc", "ap50", "recall50", "precision50")), out
        metrics[mode] = json.loads(js.read_text())
        assert metrics[mode]["box_mode"] == mode
        assert 0 < metrics[mode]["ap50"] <= 100 and metrics[mode]["n_gt_boxes"] >= metrics[mode]["n_images"]
    one, every = metrics["largest"], metrics["all"]
    assert one["n_boxes"] == one["n_images"]  # one box per image
    assert every["n_boxes"] >= one["n_boxes"]
    # the paper's metrics do not depend on --boxes
    paper = ("gt_known_loc", "maxboxacc", "maxboxacc_v2")
    assert {k: one[k] for k in paper} == {k: every[k] for k in paper}
    code, out = invoke("eval", sample_onnx, "--root", SAMPLE, "--json", tmp_path / "d.json", "--workers", "0")
    assert code == 0 and json.loads((tmp_path / "d.json").read_text())["box_mode"] == "largest"  # the model's


def test_run_boxes_all_jsonl_carries_every_box(sample_onnx: Path, tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    write_tiles(folder)
    jsonl = tmp_path / "run.jsonl"
    code, out = invoke("run", sample_onnx, "--source", folder, "--jsonl", jsonl, "--boxes", "all")
    assert code == 0, out
    recs = [json.loads(ln) for ln in jsonl.read_text().splitlines()]
    assert len(recs) == 3 and all(r["boxes"][0] == {"box": r["box"], "score": r["score"]} for r in recs)
    assert max(len(r["boxes"]) for r in recs) >= 2


def test_info_shows_the_recorded_box_mode(sample_model: Path, sample_onnx: Path) -> None:
    for path in (sample_model, sample_onnx):  # recorded at fit time, carried by the export
        code, out = invoke("info", path, "--json")
        assert code == 0 and json.loads(out)["meta"]["extra"]["boxes"] == "largest", out


def test_the_recorded_mode_is_the_default_and_an_unknown_one_is_refused(
    sample_model: Path, tmp_path: Path
) -> None:
    from rpol_edge.core.artifact import ModelArtifact

    tiles = write_tiles(tmp_path / "in")
    art = ModelArtifact.load(sample_model)
    art.meta = art.meta.replace(extra={**art.meta.extra, "boxes": "all"})
    art.save(tmp_path / "all.rpol")
    code, out = invoke("predict", tmp_path / "all.rpol", *tiles, "-o", tmp_path / "o")
    assert code == 0, out
    recs = [json.loads(ln) for ln in (tmp_path / "o" / "predictions.jsonl").read_text().splitlines()]
    assert max(len(r["boxes"]) for r in recs) >= 2  # no --boxes: the file's `all`
    art.meta = art.meta.replace(extra={**art.meta.extra, "boxes": "every"})
    art.save(tmp_path / "newer.rpol")
    code, out = invoke("info", tmp_path / "newer.rpol")
    assert code == 2 and "unknown box mode 'every'" in out and "Traceback" not in out, out
