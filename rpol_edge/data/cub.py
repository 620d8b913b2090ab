"""CUB-200-2011 reader, official layout.

Files under ``root`` (``root`` may be the ``CUB_200_2011`` folder itself or the
folder that contains it)::

    images.txt               <id> <relative path>      (paths under images/)
    train_test_split.txt     <id> <1 train | 0 test>
    image_class_labels.txt   <id> <class, 1..200>
    bounding_boxes.txt       <id> <x> <y> <width> <height>   (floats)
    images/<relative path>

Splits: ``train``, ``test`` and ``all`` (both, in ``images.txt`` order).
``image_id`` is the relative path (``001.Black_footed_Albatross/...jpg``), the
same id wsolevaluation's metadata uses, so the two readers can be joined.
``label`` is the class minus 1 (0-based, as wsolevaluation's
``class_labels.txt``). ``size`` is ``None``: CUB does not record it.

Box convention (default ``convention="wsol"``): ``x0 = x, y0 = y, x1 = x + w,
y1 = y + h``. Why not treat ``x, y`` as 1-based and subtract 1:

* wsolevaluation's CUB ``localization.txt``, which the paper's numbers (and the
  reference code) are computed from, is exactly this mapping of this file:
  image 1 ``60.0 27.0 325.0 304.0`` is ``60,27,385,331`` there. Matching it keeps
  the ``cub`` and ``wsol`` readers in agreement and the anchors comparable;
* the file is not consistently 1-based anyway: it holds ``x = 0`` (e.g.
  ``Sooty_Albatross_0042_1210``), which a 1-based reading would put at -1.

``convention="one_based"`` gives the strict 1-based reading instead, for
comparison: ``x0 = x - 1, y0 = y - 1, x1 = x0 + w - 1, y1 = y0 + h - 1`` (a box
exactly ``w`` pixels wide). Either way nothing is clipped here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from rpol_edge.data.samples import DatasetError, Sample, check_box, parse_float, parse_int, text_lines

__all__ = ["SPLITS", "read"]

SPLITS = ("train", "test", "all")
Convention = Literal["wsol", "one_based"]


def read(root: Path, split: str, *, convention: Convention = "wsol") -> list[Sample]:
    """Samples of ``split`` (``train`` | ``test`` | ``all``) in ``images.txt`` order.

    Raises:
        DatasetError: unknown split, a missing file, a malformed line (named by
            ``file:line``), an id listed in ``images.txt`` but absent from
            another file, or a box with negative width or height.
    """
    if split not in SPLITS:
        raise DatasetError(f"unknown CUB split {split!r}; choose one of: {', '.join(SPLITS)}")
    if convention not in ("wsol", "one_based"):
        raise DatasetError(f"unknown CUB box convention {convention!r}")
    base = _find_base(root)
    images = _read_table(base / "images.txt", 1)
    is_train = _read_table(base / "train_test_split.txt", 1)
    labels = _read_table(base / "image_class_labels.txt", 1)
    boxes = _read_table(base / "bounding_boxes.txt", 4)

    samples = []
    for image_id, (_, (rel_path,)) in images.items():
        flag_where, (flag,) = _lookup(is_train, image_id, base / "train_test_split.txt")
        if flag not in ("0", "1"):
            raise DatasetError(f"{flag_where}: expected is_train 0 or 1, got {flag!r}")
        if split != "all" and (flag == "1") != (split == "train"):
            continue
        label_where, (label_text,) = _lookup(labels, image_id, base / "image_class_labels.txt")
        label = parse_int(label_text, label_where)
        if label < 1:
            raise DatasetError(f"{label_where}: class ids start at 1, got {label}")
        box_where, box_text = _lookup(boxes, image_id, base / "bounding_boxes.txt")
        box = _to_box(box_text, box_where, convention)
        samples.append(
            Sample(
                image_id=rel_path,
                path=base / "images" / rel_path,
                boxes=box,
                label=label - 1,
            )
        )
    return samples


def _find_base(root: Path) -> Path:
    """``root`` itself or ``root/CUB_200_2011``, whichever holds ``images.txt``."""
    for base in (root, root / "CUB_200_2011"):
        if (base / "images.txt").is_file():
            return base
    raise DatasetError(f"{root}: no images.txt here or in CUB_200_2011/ (expected the CUB-200-2011 layout)")


def _read_table(path: Path, n_values: int) -> dict[str, tuple[int, tuple[str, ...]]]:
    """``{id: (line number, values)}`` of a whitespace-separated ``<id> <values...>`` file.

    With one value the rest of the line is that value (so paths may hold spaces).
    """
    table: dict[str, tuple[int, tuple[str, ...]]] = {}
    for number, line in text_lines(path):
        fields = line.split(maxsplit=n_values) if n_values == 1 else line.split()
        if len(fields) != n_values + 1:
            raise DatasetError(f"{path}:{number}: expected an id and {n_values} value(s), got {line!r}")
        image_id = fields[0]
        if image_id in table:
            raise DatasetError(f"{path}:{number}: duplicate image id {image_id!r}")
        table[image_id] = (number, tuple(fields[1:]))
    return table


def _lookup(
    table: dict[str, tuple[int, tuple[str, ...]]], image_id: str, path: Path
) -> tuple[str, tuple[str, ...]]:
    """``(file:line, values)`` for ``image_id``, or DatasetError naming the file."""
    entry = table.get(image_id)
    if entry is None:
        raise DatasetError(f"{path}: no entry for image id {image_id} (listed in images.txt)")
    number, values = entry
    return f"{path}:{number}", values


def _to_box(values: tuple[str, ...], where: str, convention: Convention) -> np.ndarray:
    x, y, w, h = (parse_float(v, where) for v in values)
    if w < 0 or h < 0:
        raise DatasetError(f"{where}: negative box width or height ({w:g}, {h:g})")
    if convention == "wsol":
        x0, y0, x1, y1 = x, y, x + w, y + h
    else:
        x0, y0 = x - 1, y - 1
        x1, y1 = x0 + w - 1, y0 + h - 1
    check_box(x0, y0, x1, y1, where)
    return np.array([[x0, y0, x1, y1]], dtype=np.float64)
