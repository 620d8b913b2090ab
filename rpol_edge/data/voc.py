"""Pascal VOC layout reader.

Layout under ``root``::

    ImageSets/Main/<split>.txt    one image id per line
    Annotations/<id>.xml          <size>, one <object><bndbox> per object
    JPEGImages/<id>.jpg           the image (another suffix is found if needed)

Coordinates: VOC ``xmin ymin xmax ymax`` are 1-based and inclusive, so each is
reduced by 1 to reach the toolkit's 0-based inclusive convention (the raccoon
set's ``81 88 522 408`` becomes ``80 87 521 407``). Data sets that write
VOC-style XML with 0-based pixels can pass ``one_based=False``.

Every top-level ``<object>`` counts, ``difficult`` and ``truncated`` ones too:
a prediction is scored against ANY ground-truth box of the image, and a
difficult object is still the object. Parts (``<part><bndbox>``) are ignored.
``label`` is ``None``: VOC names classes by string and a stable index would
need every annotation of every split; ``size`` comes from ``<size>`` when both
values are positive.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from rpol_edge.data.images import IMAGE_SUFFIXES
from rpol_edge.data.samples import (
    DatasetError,
    Sample,
    check_box,
    parse_float,
    parse_int,
    short_list,
    text_lines,
)

__all__ = ["read", "read_annotation"]


def read(root: Path, split: str, *, one_based: bool = True) -> list[Sample]:
    """Samples of ``root/ImageSets/Main/<split>.txt``, in the split file's order.

    Raises:
        DatasetError: missing split file (the message lists the splits that do
            exist), a duplicated id, a missing annotation or image, or any
            malformed annotation (named by file).
    """
    split_file = root / "ImageSets" / "Main" / f"{split}.txt"
    if not split_file.is_file():
        raise DatasetError(f"{split_file}: split file not found; available splits: {_available_splits(root)}")
    ids = _read_ids(split_file)
    image_dir = root / "JPEGImages"
    names = _list_files(image_dir)
    lowered = {name.lower(): name for name in sorted(names, reverse=True)}
    samples = []
    for image_id in ids:
        xml_path = root / "Annotations" / f"{image_id}.xml"
        boxes, size, filename = read_annotation(xml_path, one_based=one_based)
        image_path = _find_image(image_dir, names, lowered, image_id, filename)
        samples.append(Sample(image_id=image_id, path=image_path, boxes=boxes, size=size))
    return samples


def read_annotation(
    xml_path: Path, *, one_based: bool = True
) -> tuple[np.ndarray, tuple[int, int] | None, str | None]:
    """Parse one VOC XML file into ``(boxes, (width, height) or None, filename or None)``.

    ``boxes`` is ``(M, 4)`` float64, 0-based inclusive; every error names the file.
    """
    try:
        tree = ET.parse(xml_path)
    except FileNotFoundError as exc:
        raise DatasetError(f"{xml_path}: annotation file not found") from exc
    except ET.ParseError as exc:
        raise DatasetError(f"{xml_path}: malformed XML: {exc}") from exc
    except OSError as exc:
        raise DatasetError(f"{xml_path}: cannot read: {exc}") from exc
    annotation = tree.getroot()
    shift = 1.0 if one_based else 0.0
    rows: list[tuple[float, float, float, float]] = []
    for index, obj in enumerate(annotation.findall("object")):
        where = f"{xml_path}: object {index}"
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise DatasetError(f"{where}: missing <bndbox>")
        values = []
        for field in ("xmin", "ymin", "xmax", "ymax"):
            text = bndbox.findtext(field)
            if text is None or not text.strip():
                raise DatasetError(f"{where}: missing <bndbox><{field}>")
            values.append(parse_float(text.strip(), f"{where} <{field}>") - shift)
        x0, y0, x1, y1 = values
        check_box(x0, y0, x1, y1, where)
        rows.append((x0, y0, x1, y1))
    boxes = np.array(rows, dtype=np.float64).reshape(-1, 4)
    return boxes, _read_size(annotation, xml_path), _read_filename(annotation)


def _read_size(annotation: ET.Element, xml_path: Path) -> tuple[int, int] | None:
    """``(width, height)`` from ``<size>``, or None when absent or zero."""
    size = annotation.find("size")
    if size is None:
        return None
    width_text = size.findtext("width")
    height_text = size.findtext("height")
    if width_text is None or height_text is None:
        return None
    # Some tools write "500.0"; accept any integral number.
    width = parse_float(width_text.strip(), f"{xml_path}: <size><width>")
    height = parse_float(height_text.strip(), f"{xml_path}: <size><height>")
    if width <= 0 or height <= 0:
        return None
    return int(round(width)), int(round(height))


def _read_filename(annotation: ET.Element) -> str | None:
    text = annotation.findtext("filename")
    return text.strip() if text and text.strip() else None


def _read_ids(split_file: Path) -> list[str]:
    """Ids of a split file, in order.

    A line is ``<id>`` or, in VOC's per-class files, ``<id> <flag>``: flag -1
    (object absent) drops the image, 0 (only difficult) and 1 keep it.
    """
    ids: list[str] = []
    seen: set[str] = set()
    for number, line in text_lines(split_file):
        where = f"{split_file}:{number}"
        fields = line.split()
        if len(fields) > 2:
            raise DatasetError(f"{where}: expected '<id>' or '<id> <flag>', got {line!r}")
        if len(fields) == 2 and parse_int(fields[1], where) < 0:
            continue
        image_id = fields[0]
        if image_id in seen:
            raise DatasetError(f"{where}: duplicate image id {image_id!r}")
        seen.add(image_id)
        ids.append(image_id)
    return ids


def _available_splits(root: Path) -> str:
    main = root / "ImageSets" / "Main"
    if not main.is_dir():
        return f"none ({main} does not exist)"
    names = sorted(p.stem for p in main.glob("*.txt"))
    if not names:
        return f"none (no .txt files in {main})"
    return short_list(names)


def _list_files(image_dir: Path) -> set[str]:
    """File names in the image folder, listed once (cheaper than a stat per id)."""
    try:
        return {entry.name for entry in image_dir.iterdir() if entry.is_file()}
    except FileNotFoundError as exc:
        raise DatasetError(f"{image_dir}: image folder not found") from exc
    except OSError as exc:
        raise DatasetError(f"{image_dir}: cannot list: {exc}") from exc


def _find_image(
    image_dir: Path,
    names: set[str],
    lowered: dict[str, str],
    image_id: str,
    filename: str | None,
) -> Path:
    """The image file of ``image_id``: ``<id>.jpg``, else the XML's ``<filename>``
    when its stem is the id, else ``<id>`` with the first suffix (in
    :data:`IMAGE_SUFFIXES` order, then in any letter case) that exists.

    ``lowered`` maps lower-cased names to real ones (built once per split).
    """
    candidates = [f"{image_id}.jpg"]
    if filename is not None and Path(filename).stem == image_id:
        candidates.append(Path(filename).name)
    for suffix in IMAGE_SUFFIXES:
        candidates += [f"{image_id}{suffix}", f"{image_id}{suffix.upper()}"]
    for name in candidates:
        if name in names:
            return image_dir / name
    for suffix in IMAGE_SUFFIXES:
        match = lowered.get(f"{image_id}{suffix}".lower())
        if match is not None:
            return image_dir / match
    raise DatasetError(f"{image_dir}: no image file for id {image_id!r}")
