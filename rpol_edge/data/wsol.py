"""wsolevaluation metadata reader (Choe et al., CVPR 2020: CUB, ILSVRC, OpenImages).

One split is a folder of comma-separated text files::

    image_ids.txt       <image_id>                  the split, in order (required)
    class_labels.txt    <image_id>,<label>          0-based class (optional)
    image_sizes.txt     <image_id>,<w>,<h>          (optional)
    localization.txt    <image_id>,<x0>,<y0>,<x1>,<y1>   one line per box (optional)

``image_id`` is the image path relative to the data set's image root, e.g.
``001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg`` or
``val/ILSVRC2012_val_00000001.JPEG``. Boxes are used as written: they already
are 0-based inclusive pixels (wsolevaluation's own IoU adds 1 to widths).
An image without a ``localization.txt`` line gets an empty ``(0, 4)`` box array;
OpenImages' mask-style ``localization.txt`` (``<id>,<mask>,<ignore>``) is
recognised and yields empty boxes too (masks are not boxes).

Where the split folder is (first match wins)::

    split "CUB/test":  root/metadata/CUB/test     root = a wsolevaluation checkout
                       root/CUB/test              root = its metadata/ folder
    split "test":      root/test                  root = metadata/CUB
                       root/metadata/test         root = a data set with metadata/

Where the images are: ``image_root`` when given; otherwise the first of these
folders that holds the split's first image, where ``P`` is the folder above
``metadata/`` (if the split folder sits in one) and ``DS`` the data set name
(``CUB`` in ``metadata/CUB/test``): ``P/dataset/DS`` (the wsolevaluation
checkout layout, ``dataset/CUB/001.Black_footed_Albatross/...``), ``P/DS``,
``P/images``, ``P``, then the same four under ``root``. Only that one image is
checked; the others are decoded (and reported if missing) later, by workers.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import numpy as np

from rpol_edge.data.samples import (
    DatasetError,
    Sample,
    check_box,
    parse_float,
    parse_int,
    short_list,
    text_lines,
)

__all__ = ["read"]

_T = TypeVar("_T")


def read(root: Path, split: str, *, image_root: Path | None = None) -> list[Sample]:
    """Samples of one wsolevaluation split, in ``image_ids.txt`` order.

    Raises:
        DatasetError: split folder not found (the message lists the splits that
            exist under ``root``), no image root holds the first image, a
            duplicated id, a malformed line (named by ``file:line``), or an id
            missing from ``class_labels.txt`` / ``image_sizes.txt`` when that
            file exists.
    """
    meta = _find_metadata_dir(root, split)
    ids = _read_ids(meta / "image_ids.txt")
    if not ids:
        return []
    images = _find_image_root(root, meta, ids[0], image_root)
    labels = _read_labels(meta / "class_labels.txt")
    sizes = _read_sizes(meta / "image_sizes.txt")
    boxes = _read_boxes(meta / "localization.txt")
    samples = []
    for image_id in ids:
        label = _require(labels, image_id, meta / "class_labels.txt")
        size = _require(sizes, image_id, meta / "image_sizes.txt")
        rows = boxes.get(image_id, [])
        samples.append(
            Sample(
                image_id=image_id,
                path=images / image_id,
                boxes=np.array(rows, dtype=np.float64).reshape(-1, 4),
                label=label,
                size=size,
            )
        )
    return samples


def _find_metadata_dir(root: Path, split: str) -> Path:
    split = split.strip().strip("/")
    if not split or ".." in Path(split).parts:
        raise DatasetError(f"invalid wsolevaluation split {split!r}")
    if "/" in split:
        candidates = [root / "metadata" / split, root / split]
    else:
        candidates = [root / split, root / "metadata" / split]
    for candidate in candidates:
        if (candidate / "image_ids.txt").is_file():
            return candidate
    raise DatasetError(
        f"{root}: no wsolevaluation split {split!r} (no image_ids.txt in "
        f"{' or '.join(str(c) for c in candidates)}); available splits: {_available_splits(root)}"
    )


def _available_splits(root: Path) -> str:
    names: set[str] = set()
    for base in (root, root / "metadata"):
        for pattern in ("*/image_ids.txt", "*/*/image_ids.txt"):
            for path in base.glob(pattern):
                names.add(path.parent.relative_to(base).as_posix())
    if not names:
        return "none"
    return short_list(sorted(names))


def _find_image_root(root: Path, meta: Path, first_id: str, image_root: Path | None) -> Path:
    if image_root is not None:
        if not (image_root / first_id).is_file():
            raise DatasetError(f"{image_root}: image root does not hold the first image {first_id!r}")
        return image_root
    bases: list[Path] = []
    dataset_name: str | None = None
    if meta.parent.parent.name == "metadata":
        dataset_name = meta.parent.name
        bases.append(meta.parent.parent.parent)
    elif meta.parent.name == "metadata":
        bases.append(meta.parent.parent)
    bases.append(root)
    candidates: list[Path] = []
    for base in bases:
        if dataset_name is not None:
            candidates += [base / "dataset" / dataset_name, base / dataset_name]
        candidates += [base / "images", base]
    unique = list(dict.fromkeys(candidates))
    for candidate in unique:
        if (candidate / first_id).is_file():
            return candidate
    raise DatasetError(
        f"{meta}: first image {first_id!r} not found under any of "
        f"{', '.join(str(c) for c in unique)}; pass image_root"
    )


def _read_ids(path: Path) -> list[str]:
    ids: list[str] = []
    seen: set[str] = set()
    for number, line in text_lines(path):
        if line in seen:
            raise DatasetError(f"{path}:{number}: duplicate image id {line!r}")
        seen.add(line)
        ids.append(line)
    return ids


def _require(table: dict[str, _T] | None, image_id: str, path: Path) -> _T | None:
    """``table[image_id]``; None when the file is absent; an error when the id is."""
    if table is None:
        return None
    if image_id not in table:
        raise DatasetError(f"{path}: no entry for image id {image_id!r} (listed in image_ids.txt)")
    return table[image_id]


def _read_labels(path: Path) -> dict[str, int] | None:
    if not path.is_file():
        return None
    labels: dict[str, int] = {}
    for number, line in text_lines(path):
        where = f"{path}:{number}"
        parts = line.rsplit(",", 1)
        if len(parts) != 2:
            raise DatasetError(f"{where}: expected '<image_id>,<label>', got {line!r}")
        label = parse_int(parts[1].strip(), where)
        if label < 0:
            raise DatasetError(f"{where}: negative class label {label}")
        labels[parts[0]] = label
    return labels


def _read_sizes(path: Path) -> dict[str, tuple[int, int]] | None:
    if not path.is_file():
        return None
    sizes: dict[str, tuple[int, int]] = {}
    for number, line in text_lines(path):
        where = f"{path}:{number}"
        parts = line.rsplit(",", 2)
        if len(parts) != 3:
            raise DatasetError(f"{where}: expected '<image_id>,<w>,<h>', got {line!r}")
        width, height = parse_int(parts[1].strip(), where), parse_int(parts[2].strip(), where)
        if width <= 0 or height <= 0:
            raise DatasetError(f"{where}: image size must be positive, got {width}x{height}")
        sizes[parts[0]] = (width, height)
    return sizes


def _read_boxes(path: Path) -> dict[str, list[tuple[float, float, float, float]]]:
    boxes: dict[str, list[tuple[float, float, float, float]]] = {}
    if not path.is_file():
        return boxes
    for number, line in text_lines(path):
        where = f"{path}:{number}"
        parts = line.rsplit(",", 4)
        if len(parts) != 5 and _is_mask_line(line):
            continue
        if len(parts) != 5:
            raise DatasetError(f"{where}: expected '<image_id>,<x0>,<y0>,<x1>,<y1>', got {line!r}")
        x0, y0, x1, y1 = (parse_float(value.strip(), where) for value in parts[1:])
        check_box(x0, y0, x1, y1, where)
        boxes.setdefault(parts[0], []).append((x0, y0, x1, y1))
    return boxes


def _is_mask_line(line: str) -> bool:
    """An OpenImages ``<id>,<mask path>,<ignore path or empty>`` line."""
    parts = line.rsplit(",", 2)
    if len(parts) != 3:
        return False
    try:
        float(parts[1])
    except ValueError:
        return True
    return False
