"""Data-set readers: the real raccoon VOC set and small synthetic trees of each layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rpol_edge.data import READERS, DatasetError, Sample, cub, read_dataset, voc, wsol

RACCOON = Path("/work/shared/data/raccoon")


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")  # readers never decode, so empty files are enough
    return path


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- registry


def test_registry_kinds() -> None:
    assert set(READERS) == {"cub", "wsol", "voc", "folder"}


def test_unknown_kind_suggests_closest(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as info:
        read_dataset("vco", tmp_path, "train")
    message = str(info.value)
    assert "'voc'" in message and "cub, folder, voc, wsol" in message
    assert "\n" not in message


def test_kind_is_case_insensitive(tmp_path: Path) -> None:
    _touch(tmp_path / "a.jpg")
    assert len(read_dataset("Folder", tmp_path, "train")) == 1


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        read_dataset("folder", tmp_path / "nope", "train")
    _touch(tmp_path / "file.jpg")
    with pytest.raises(DatasetError, match="not a folder"):
        read_dataset("folder", tmp_path / "file.jpg", "train")


def test_empty_folder(tmp_path: Path) -> None:
    _write(tmp_path / "notes.txt", "not an image")
    with pytest.raises(DatasetError, match="no images found in"):
        read_dataset("folder", tmp_path, "train")


def test_sample_boxes_are_validated_and_frozen(tmp_path: Path) -> None:
    sample = Sample("x", tmp_path / "x.jpg", np.zeros((0,)))
    assert sample.boxes.shape == (0, 4) and sample.boxes.dtype == np.float64
    with pytest.raises(ValueError):
        sample.boxes[...] = 1
    source = np.array([[1, 2, 3, 4]], dtype=np.int64)
    boxes = Sample("y", tmp_path / "y.jpg", source).boxes
    assert boxes.dtype == np.float64
    source[0, 0] = 9  # the sample holds its own copy
    assert boxes[0, 0] == 1
    with pytest.raises(ValueError):
        boxes[0, 0] = 5
    with pytest.raises(ValueError, match="shape"):
        Sample("z", tmp_path / "z.jpg", np.zeros((2, 3)))


# --------------------------------------------------------------------------- VOC, real


@pytest.fixture
def raccoon() -> Path:
    if not (RACCOON / "ImageSets" / "Main" / "train.txt").is_file():
        pytest.skip("raccoon data set not present")
    return RACCOON


def test_raccoon_splits(raccoon: Path) -> None:
    train = read_dataset("voc", raccoon, "train")
    test = read_dataset("voc", raccoon, "test")
    assert len(train) == 160 and len(test) == 40
    assert not {s.image_id for s in train} & {s.image_id for s in test}
    assert sum(len(s.boxes) for s in train + test) == 217
    for sample in train + test:
        assert sample.path.is_file()
        assert sample.boxes.shape[1] == 4 and len(sample.boxes) >= 1
        assert sample.size is not None


def test_raccoon_first_box_is_zero_based(raccoon: Path) -> None:
    samples = {s.image_id: s for s in read_dataset("voc", raccoon, "train")}
    first = samples["raccoon-1"]
    np.testing.assert_array_equal(first.boxes, [[80, 87, 521, 407]])
    assert first.size == (650, 417)
    assert first.path == raccoon / "JPEGImages" / "raccoon-1.jpg"
    assert first.label is None


# --------------------------------------------------------------------------- VOC, synthetic


def _voc_xml(*boxes: tuple[str, str, str, str], size: tuple[int, int] = (100, 80)) -> str:
    objects = "".join(
        f"<object><name>cat</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
        f"<xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
        for a, b, c, d in boxes
    )
    return (
        f"<annotation><size><width>{size[0]}</width><height>{size[1]}</height>"
        f"<depth>3</depth></size>{objects}</annotation>"
    )


def _voc_tree(root: Path) -> Path:
    _write(root / "ImageSets" / "Main" / "train.txt", "a\nb\n\nc\n")
    _write(root / "ImageSets" / "Main" / "val.txt", "a\n")
    _write(root / "Annotations" / "a.xml", _voc_xml(("1", "1", "10", "20"), ("5", "6", "7", "8")))
    _write(root / "Annotations" / "b.xml", _voc_xml())
    _write(root / "Annotations" / "c.xml", _voc_xml(("2.5", "3", "4", "5")))
    _touch(root / "JPEGImages" / "a.jpg")
    _touch(root / "JPEGImages" / "b.PNG")
    _touch(root / "JPEGImages" / "c.jpeg")
    return root


def test_voc_synthetic(tmp_path: Path) -> None:
    root = _voc_tree(tmp_path)
    samples = read_dataset("voc", root, "train")
    assert [s.image_id for s in samples] == ["a", "b", "c"]
    a, b, c = samples
    np.testing.assert_array_equal(a.boxes, [[0, 0, 9, 19], [4, 5, 6, 7]])
    assert b.boxes.shape == (0, 4)
    np.testing.assert_array_equal(c.boxes, [[1.5, 2, 3, 4]])
    assert [s.path.name for s in samples] == ["a.jpg", "b.PNG", "c.jpeg"]
    assert a.size == (100, 80)


def test_voc_zero_based_option(tmp_path: Path) -> None:
    root = _voc_tree(tmp_path)
    a = voc.read(root, "val", one_based=False)[0]
    np.testing.assert_array_equal(a.boxes[0], [1, 1, 10, 20])


def test_voc_missing_split_lists_available(tmp_path: Path) -> None:
    root = _voc_tree(tmp_path)
    with pytest.raises(DatasetError) as info:
        read_dataset("voc", root, "test")
    message = str(info.value)
    assert "test.txt" in message and "train, val" in message and "\n" not in message


def test_voc_malformed_xml(tmp_path: Path) -> None:
    root = _voc_tree(tmp_path)
    _write(root / "Annotations" / "b.xml", "<annotation><object><bndbox>")
    with pytest.raises(DatasetError, match=r"b\.xml: malformed XML"):
        read_dataset("voc", root, "train")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("<annotation><object><name>x</name></object></annotation>", "missing <bndbox>"),
        (
            "<annotation><object><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>3</xmax>"
            "</bndbox></object></annotation>",
            "missing <bndbox><ymax>",
        ),
        (_voc_xml(("1", "1", "abc", "4")), "not a number"),
        (_voc_xml(("1", "1", "nan", "4")), "not a finite number"),
        (_voc_xml(("9", "1", "3", "4")), "x1 < x0"),
    ],
)
def test_voc_bad_boxes(tmp_path: Path, body: str, reason: str) -> None:
    root = _voc_tree(tmp_path)
    _write(root / "Annotations" / "c.xml", body)
    with pytest.raises(DatasetError) as info:
        read_dataset("voc", root, "train")
    message = str(info.value)
    assert "c.xml" in message and reason in message


def test_voc_missing_annotation_and_image(tmp_path: Path) -> None:
    root = _voc_tree(tmp_path)
    (root / "Annotations" / "b.xml").unlink()
    with pytest.raises(DatasetError, match=r"b\.xml: annotation file not found"):
        read_dataset("voc", root, "train")
    root2 = _voc_tree(tmp_path / "second")
    (root2 / "JPEGImages" / "c.jpeg").unlink()
    with pytest.raises(DatasetError, match="no image file for id 'c'"):
        read_dataset("voc", root2, "train")


def test_voc_duplicate_and_flagged_ids(tmp_path: Path) -> None:
    root = _voc_tree(tmp_path)
    _write(root / "ImageSets" / "Main" / "cat_train.txt", "a  1\nb -1\nc  0\n")
    assert [s.image_id for s in voc.read(root, "cat_train")] == ["a", "c"]
    _write(root / "ImageSets" / "Main" / "dup.txt", "a\nb\na\n")
    with pytest.raises(DatasetError, match=r"dup\.txt:3: duplicate"):
        voc.read(root, "dup")


# --------------------------------------------------------------------------- CUB


def _cub_tree(base: Path) -> Path:
    _write(
        base / "images.txt",
        "1 001.Albatross/Albatross_0001.jpg\n2 001.Albatross/Albatross_0002.jpg\n"
        "3 002.Auklet/Auklet_0003.jpg\n",
    )
    _write(base / "train_test_split.txt", "1 0\n2 1\n3 1\n")
    _write(base / "image_class_labels.txt", "1 1\n2 1\n3 2\n")
    _write(base / "bounding_boxes.txt", "1 60.0 27.0 325.0 304.0\n2 0.0 5.0 10.0 20.0\n3 1 2 3 4\n")
    for rel in ("001.Albatross/Albatross_0001.jpg", "001.Albatross/Albatross_0002.jpg"):
        _touch(base / "images" / rel)
    return base


def test_cub_splits_and_convention(tmp_path: Path) -> None:
    base = _cub_tree(tmp_path / "CUB_200_2011")
    test = read_dataset("cub", base, "test")
    train = read_dataset("cub", tmp_path, "train")  # the folder above CUB_200_2011
    everything = cub.read(base, "all")
    assert [s.image_id for s in test] == ["001.Albatross/Albatross_0001.jpg"]
    assert [s.image_id for s in train] == [
        "001.Albatross/Albatross_0002.jpg",
        "002.Auklet/Auklet_0003.jpg",
    ]
    assert len(everything) == 3
    first = test[0]
    # Same numbers as wsolevaluation's localization.txt for this image.
    np.testing.assert_array_equal(first.boxes, [[60, 27, 385, 331]])
    assert first.label == 0 and train[1].label == 1
    assert first.path == base / "images" / "001.Albatross" / "Albatross_0001.jpg"
    assert first.size is None


def test_cub_one_based_convention(tmp_path: Path) -> None:
    base = _cub_tree(tmp_path)
    sample = cub.read(base, "test", convention="one_based")[0]
    np.testing.assert_array_equal(sample.boxes, [[59, 26, 383, 329]])
    width = sample.boxes[0, 2] - sample.boxes[0, 0] + 1
    assert width == 325


def test_cub_errors(tmp_path: Path) -> None:
    base = _cub_tree(tmp_path)
    with pytest.raises(DatasetError, match="choose one of: train, test, all"):
        cub.read(base, "val")
    with pytest.raises(DatasetError, match="no images.txt"):
        read_dataset("cub", tmp_path / "images", "train")
    _write(base / "bounding_boxes.txt", "1 60.0 27.0 325.0\n")
    with pytest.raises(DatasetError, match=r"bounding_boxes\.txt:1: expected an id and 4"):
        cub.read(base, "all")
    _write(base / "bounding_boxes.txt", "1 1 2 3 4\n2 1 2 3 4\n")
    with pytest.raises(DatasetError, match=r"bounding_boxes\.txt: no entry for image id 3"):
        cub.read(base, "all")
    _write(base / "bounding_boxes.txt", "1 1 2 3 4\n2 1 2 x 4\n3 1 2 3 4\n")
    with pytest.raises(DatasetError, match=r"bounding_boxes\.txt:2: not a number"):
        cub.read(base, "all")
    (base / "train_test_split.txt").unlink()
    with pytest.raises(DatasetError, match=r"train_test_split\.txt: file not found"):
        cub.read(base, "train")


# --------------------------------------------------------------------------- wsolevaluation


def _wsol_checkout(root: Path) -> Path:
    """A miniature clovaai/wsolevaluation checkout: metadata/ beside dataset/."""
    meta = root / "metadata" / "CUB" / "test"
    ids = ["001.A/a1.jpg", "001.A/a2.jpg", "002.B/b1.jpg"]
    _write(meta / "image_ids.txt", "\n".join(ids) + "\n")
    _write(meta / "class_labels.txt", "001.A/a1.jpg,0\n001.A/a2.jpg,0\n002.B/b1.jpg,1\n")
    _write(meta / "image_sizes.txt", "001.A/a1.jpg,500,300\n001.A/a2.jpg,40,50\n002.B/b1.jpg,7,8\n")
    _write(
        meta / "localization.txt",
        "001.A/a1.jpg,60,27,385,331\n001.A/a1.jpg,1,2,3,4\n002.B/b1.jpg,0,0,6,7\n",
    )
    _write(root / "metadata" / "CUB" / "train" / "image_ids.txt", "001.A/a1.jpg\n")
    for image_id in ids:
        _touch(root / "dataset" / "CUB" / image_id)
    return root


def test_wsol_checkout_layout(tmp_path: Path) -> None:
    root = _wsol_checkout(tmp_path)
    samples = read_dataset("wsol", root, "CUB/test")
    assert [s.image_id for s in samples] == ["001.A/a1.jpg", "001.A/a2.jpg", "002.B/b1.jpg"]
    a1, a2, b1 = samples
    np.testing.assert_array_equal(a1.boxes, [[60, 27, 385, 331], [1, 2, 3, 4]])
    assert a2.boxes.shape == (0, 4)
    assert (a1.label, b1.label) == (0, 1)
    assert a1.size == (500, 300)
    assert a1.path == root / "dataset" / "CUB" / "001.A" / "a1.jpg"


def test_wsol_root_at_metadata_folders(tmp_path: Path) -> None:
    root = _wsol_checkout(tmp_path)
    expected = root / "dataset" / "CUB" / "001.A" / "a1.jpg"
    # root = checkout/metadata, split = CUB/test
    assert wsol.read(root / "metadata", "CUB/test")[0].path == expected
    # root = checkout/metadata/CUB, split = test
    assert wsol.read(root / "metadata" / "CUB", "test")[0].path == expected


def test_wsol_dataset_with_own_metadata(tmp_path: Path) -> None:
    # A data set folder holding its images and a metadata/<split>/ beside them.
    root = tmp_path / "mydata"
    _write(root / "metadata" / "test" / "image_ids.txt", "x/1.png\n")
    _touch(root / "x" / "1.png")
    sample = read_dataset("wsol", root, "test")[0]
    assert sample.path == root / "x" / "1.png"
    assert sample.label is None and sample.size is None and sample.boxes.shape == (0, 4)


def test_wsol_image_root_override(tmp_path: Path) -> None:
    root = _wsol_checkout(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    for image_id in ("001.A/a1.jpg",):
        _touch(elsewhere / image_id)
    samples = wsol.read(root, "CUB/test", image_root=elsewhere)
    assert samples[0].path == elsewhere / "001.A" / "a1.jpg"
    with pytest.raises(DatasetError, match="does not hold the first image"):
        wsol.read(root, "CUB/test", image_root=tmp_path / "nowhere")


def test_wsol_errors(tmp_path: Path) -> None:
    root = _wsol_checkout(tmp_path)
    with pytest.raises(DatasetError) as info:
        read_dataset("wsol", root, "test")
    assert "CUB/test, CUB/train" in str(info.value)
    meta = root / "metadata" / "CUB" / "test"
    _write(meta / "localization.txt", "001.A/a1.jpg,60,27,385\n")
    with pytest.raises(DatasetError, match=r"localization\.txt:1: expected"):
        wsol.read(root, "CUB/test")
    _write(meta / "localization.txt", "001.A/a1.jpg,60,27,10,331\n")
    with pytest.raises(DatasetError, match=r"localization\.txt:1: box has x1 < x0"):
        wsol.read(root, "CUB/test")
    _write(meta / "localization.txt", "")
    _write(meta / "class_labels.txt", "001.A/a1.jpg,0\n")
    with pytest.raises(DatasetError, match=r"class_labels\.txt: no entry for image id '001.A/a2.jpg'"):
        wsol.read(root, "CUB/test")
    (meta / "class_labels.txt").unlink()
    _write(meta / "image_ids.txt", "001.A/a1.jpg\n001.A/a1.jpg\n")
    with pytest.raises(DatasetError, match=r"image_ids\.txt:2: duplicate"):
        wsol.read(root, "CUB/test")
    _write(meta / "image_ids.txt", "missing/one.jpg\n")
    with pytest.raises(DatasetError, match="first image 'missing/one.jpg' not found"):
        wsol.read(root, "CUB/test")


def test_wsol_mask_localization_is_ignored(tmp_path: Path) -> None:
    meta = tmp_path / "metadata" / "OpenImages" / "test"
    _write(meta / "image_ids.txt", "test/c/1.jpg\n")
    _write(meta / "localization.txt", "test/c/1.jpg,test/c/1_m.png,test/c/1_ignore.png\n")
    _touch(tmp_path / "dataset" / "OpenImages" / "test" / "c" / "1.jpg")
    sample = wsol.read(tmp_path, "OpenImages/test")[0]
    assert sample.boxes.shape == (0, 4)


# --------------------------------------------------------------------------- folder


def test_folder_recursive_sorted(tmp_path: Path) -> None:
    for rel in ("b/2.PNG", "a.jpg", "b/1.jpeg", "c/d/3.webp", ".hidden/x.jpg", "b/.y.jpg", "notes.txt"):
        _touch(tmp_path / rel)
    samples = read_dataset("folder", tmp_path, "whatever")
    assert [s.image_id for s in samples] == ["a.jpg", "b/1.jpeg", "b/2.PNG", "c/d/3.webp"]
    assert samples[1].path == tmp_path / "b" / "1.jpeg"
    assert all(s.boxes.shape == (0, 4) and s.label is None for s in samples)


def test_folder_split_subfolder(tmp_path: Path) -> None:
    _touch(tmp_path / "train" / "t.jpg")
    _touch(tmp_path / "test" / "u.jpg")
    train = read_dataset("folder", tmp_path, "train")
    assert [(s.image_id, s.path) for s in train] == [("t.jpg", tmp_path / "train" / "t.jpg")]
    assert len(read_dataset("folder", tmp_path, "all")) == 2


def test_sample_pickles_for_workers(tmp_path: Path) -> None:
    import pickle

    sample = Sample("a", tmp_path / "a.jpg", np.array([[1.0, 2, 3, 4]]), label=3, size=(5, 6))
    copy = pickle.loads(pickle.dumps(sample))
    assert (copy.image_id, copy.path, copy.label, copy.size) == ("a", tmp_path / "a.jpg", 3, (5, 6))
    np.testing.assert_array_equal(copy.boxes, sample.boxes)
