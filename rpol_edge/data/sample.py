"""Where the bundled sample lives: 40 raccoon photos in a Pascal VOC folder (28 train, 12 test)."""

from pathlib import Path

SAMPLE_ROOT = Path(__file__).resolve().parents[1] / "sample"
"""A VOC root: ``JPEGImages/``, ``Annotations/``, ``ImageSets/Main/{train,test}.txt``."""
