"""Top-1 / Top-5 Loc: the metric by hand-worked cases, and on real photos with a real classifier."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rpol_edge.backbones.classifier import load_classifier, read_class_map, true_class
from rpol_edge.cli.evaluate import topk_classify
from rpol_edge.core.geometry import resize_crop
from rpol_edge.data import read_dataset
from rpol_edge.data.images import load_rgb
from rpol_edge.evaluate.evaluation import evaluate
from rpol_edge.evaluate.metrics import BoxAccuracy, TopKLoc
from rpol_edge.runtimes import infer_all, open_runtime
from tests.cli.test_commands import one_line_error, run
from tests.conftest import SAMPLE

MILITARY_UNIFORM = 652  # ImageNet-1k index (timm ImageNetInfo: n03763968 'military uniform')
GREY_FOX = 280  # what the classifier most often calls a raccoon: raccoon is not an ImageNet-1k class


def test_topk_loc_hand_worked() -> None:
    m = TopKLoc(thresholds=[0.2, 0.5, 0.8])
    m.add_ious(np.array([0.6, 0.55, 0.3]), 0.55, rank=0)  # A: class top-1, box right at 0.2 and 0.5
    m.add_ious(np.array([0.7, 0.4, 0.2]), 0.4, rank=3)  # B: class only in top-5, box right at 0.2
    m.add_ious(np.array([0.1, 0.6, 0.9]), 0.6, rank=None)  # C: box right, class missing -> never counts
    m.add_ious(np.array([0.5, 0.5, 0.49]), 0.5, rank=4)  # D: top-5 (rank 4), IoU exactly 0.5 counts
    r = m.result()
    assert r["n_images"] == 4
    assert (r["top1_cls"], r["top5_cls"]) == (25.0, 75.0)
    assert (r["top1_loc"], r["top5_loc"]) == (25.0, 50.0)  # A; A + D at the operating threshold
    # top-1 per threshold [1, 1, 0] -> 25 at 0.2 (ties go to the smallest); top-5 [3, 2, 0] -> 75 at 0.2
    assert (r["top1_loc_best"], r["top1_loc_best_threshold"]) == (25.0, 0.2)
    assert (r["top5_loc_best"], r["top5_loc_best_threshold"]) == (75.0, 0.2)


def test_class_map_rules(tmp_path: Path) -> None:
    f = tmp_path / "map.json"
    f.write_text('{"*": 652, "3": 7}')
    cmap = read_class_map(f)
    assert true_class(None, cmap, "a") == 652 and true_class(3, cmap, "b") == 7
    assert true_class(5, {}, "c") == 5  # no map: labels are class indices
    with pytest.raises(ValueError, match="no classifier class"):
        true_class(None, {}, "d")
    f.write_text('{"*": "fox"}')
    with pytest.raises(ValueError, match="label -> class index"):
        read_class_map(f)


def voc_one_image(root: Path, image: Path, box_1based: tuple[int, int, int, int]) -> None:
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "Annotations").mkdir()
    (root / "JPEGImages").mkdir()
    (root / "JPEGImages" / image.name).write_bytes(image.read_bytes())
    (root / "ImageSets" / "Main" / "test.txt").write_text(image.stem + "\n")
    x0, y0, x1, y1 = box_1based
    (root / "Annotations" / f"{image.stem}.xml").write_text(
        f"<annotation><filename>{image.name}</filename><object><name>person</name><bndbox>"
        f"<xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object></annotation>"
    )


def test_topk_loc_on_a_photo_of_a_known_imagenet_class(sample_model: Path, tmp_path: Path) -> None:
    mpl = pytest.importorskip("matplotlib", reason="the photo ships with matplotlib (explain extra)")
    photo = Path(mpl.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not photo.is_file():
        pytest.skip("matplotlib without its sample data")
    # Box drawn by hand around the uniformed figure (512 x 600 photo), VOC 1-based.
    voc_one_image(tmp_path / "voc", photo, (13, 23, 512, 600))
    clf = load_classifier("lite0")
    with open_runtime(sample_model, "torch", device="cpu") as rt:
        classify = topk_classify(clf, {"*": MILITARY_UNIFORM})
        r = evaluate(rt, "voc", tmp_path / "voc", "test", workers=0, classify=classify).metrics
    assert r["top1_cls"] == 100.0  # the embedded classifier knows this photo
    assert r["top1_loc"] == r["gt_known_loc"] and r["top1_loc_best"] == r["maxboxacc"]
    assert r["top5_loc"] == r["top1_loc"]


def test_topk_loc_cli_on_raccoon_photos_matches_an_independent_count(
    sample_model: Path, tmp_path: Path
) -> None:
    cmap = tmp_path / "map.json"
    cmap.write_text(json.dumps({"*": GREY_FOX}))
    code, out = run("eval", sample_model, "--data", "voc", "--root", SAMPLE, "--split", "test",
                    "--runtime", "torch", "--device", "cpu", "--classifier", "lite0", "--class-map", cmap,
                    "--workers", "0", "--json", tmp_path / "r.json")  # fmt: skip
    assert code == 0, out
    r = json.loads((tmp_path / "r.json").read_text())
    # Independently: per image, classifier rank of class 280 and GT-known correctness at the model's
    # operating point (its own mask, as GT-known Loc scores it).
    clf = load_classifier("lite0")
    samples = read_dataset("voc", SAMPLE, "test")
    top1 = top5 = 0
    with open_runtime(sample_model, "torch", device="cpu") as rt:
        for s in samples:
            frame, t = resize_crop(load_rgb(s.path), rt.meta.resize_size, rt.meta.input_size)
            ranked = clf.topk(frame[None], 5)[0].tolist()
            one = BoxAccuracy(operating_threshold=rt.meta.threshold)
            out = infer_all(rt, frame[None])
            one.add(out.score[0, 0], t.boxes_to_input(s.boxes), out.mask[0, 0])
            box_ok = one.operating_correct == 1
            top1 += box_ok and ranked[0] == GREY_FOX
            top5 += box_ok and GREY_FOX in ranked
    n = len(samples)
    assert r["top1_loc"] == pytest.approx(100 * top1 / n) and r["top5_loc"] == pytest.approx(100 * top5 / n)
    assert r["top1_cls"] > 0  # the classifier does call some of these raccoons grey foxes
    assert r["top5_loc_best"] >= r["top5_loc"] >= r["top1_loc"]


def test_topk_cli_errors(sample_model: Path, tmp_path: Path) -> None:
    args = ("eval", sample_model, "--data", "voc", "--root", SAMPLE, "--split", "test", "--workers", "0")
    assert "need --classifier" in one_line_error(*run(*args, "--class-map", tmp_path / "m.json"))
    assert "no classifier class" in one_line_error(*run(*args, "--classifier", "lite0"))
    assert "classifier" in one_line_error(*run(*args, "--classifier", "no_such_net_xyz"))
