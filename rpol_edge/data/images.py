"""Decode one image file into the one array layout the rest of the toolkit uses.

Every consumer downstream (preprocessing, feature extraction, box mapping) gets
the same thing: a C-contiguous, writable ``uint8`` array of shape ``(H, W, 3)``
in RGB order, whatever the file's mode. All decoding failures surface here as
:class:`ImageError`, with a one-line message naming the file, so that a worker
can report or skip a bad file instead of dying with a library traceback.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["IMAGE_SUFFIXES", "ImageError", "is_image_path", "load_rgb"]

#: File suffixes treated as images (compare lower-cased; see :func:`is_image_path`).
#: Ordered by preference: when one stem exists with several suffixes, the earlier
#: suffix wins (readers rely on this order to be deterministic).
IMAGE_SUFFIXES: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".webp",
    ".tif",
    ".tiff",
)

# Errors Pillow (and its plugins) raise on unreadable, unsupported or broken
# files: OSError covers missing files, UnidentifiedImageError and "image file is
# truncated"; some plugins raise SyntaxError, EOFError or struct.error on corrupt
# headers; DecompressionBombError is a plain Exception subclass.
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    Image.DecompressionBombError,
)


class ImageError(Exception):
    """An image file could not be decoded; the message names the file and why."""


def is_image_path(path: Path) -> bool:
    """True when ``path``'s suffix is one of :data:`IMAGE_SUFFIXES`, ignoring case."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def load_rgb(path: Path) -> np.ndarray:
    """Decode ``path`` fully and return it as ``uint8`` RGB of shape ``(H, W, 3)``.

    Promises:

    * The whole file is decoded here (``Image.open`` then ``.load()``), so a
      truncated or corrupt file raises :class:`ImageError` now, not later inside
      a transform. This relies on Pillow's default
      ``ImageFile.LOAD_TRUNCATED_IMAGES = False``; this module never changes it.
    * Pixels are the *stored* pixels: the EXIF orientation tag is NOT applied.
      Box annotations (VOC, CUB, wsolevaluation) refer to the stored pixel grid,
      and the reference implementation (``PIL.Image.convert('RGB')``) does not
      transpose either, so applying it would misalign every rotated photo.
    * Every mode is converted explicitly:

      - ``RGB`` as is; ``L`` / ``1`` replicated to three channels;
      - ``LA``, ``RGBA``, ``RGBX``, ``P`` / ``PA`` (palette, with or without
        transparency): the colour channels are kept and alpha is dropped, not
        composited (transparent pixels keep their stored colour). This matches
        the reference's ``convert('RGB')``. Palette images go through RGBA so
        that palette transparency never triggers Pillow's conversion warning;
      - ``CMYK`` (Adobe-inverted JPEGs are un-inverted by Pillow), ``YCbCr``,
        ``RGBa``, ``La``, ``HSV`` through Pillow's ``convert('RGB')``; ICC
        profiles are ignored; a mode Pillow cannot convert raises ImageError;
      - 16/32-bit integer (``I;16``, ``I;16B``, ``I;16L``, ``I``) and float
        (``F``) single-channel images are scaled linearly by their actual range,
        ``[min(0, lo), hi] -> [0, 255]`` over the finite values, then replicated.
        Pillow's own ``convert`` clips these at 255, which turns a normal
        16-bit photo into a white sheet. Non-finite pixels map to 0; an image
        with no range (all equal and <= 0, or no finite value) is all zeros,
        while an all-equal positive one is its own maximum, i.e. white.

    * Multi-frame files (GIF, multi-page TIFF) give their first frame.

    Raises:
        ImageError: the file is missing, unreadable, not an image, truncated,
            corrupt, of an unsupported mode, or has zero width or height.
    """
    try:
        with Image.open(path) as im:
            im.load()
            if im.width <= 0 or im.height <= 0:
                raise ImageError(f"{path}: image has zero size ({im.width}x{im.height})")
            rgb = _to_rgb(im)
    except ImageError:
        raise
    except _DECODE_ERRORS as exc:
        raise ImageError(f"{path}: cannot decode image: {_one_line(exc)}") from exc
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ImageError(f"{path}: decoded to an unexpected shape {rgb.shape}")
    return rgb


def _to_rgb(im: Image.Image) -> np.ndarray:
    """Convert a loaded Pillow image of any mode to a fresh uint8 (H, W, 3) array."""
    mode = im.mode
    if mode == "RGB":
        out = np.array(im, dtype=np.uint8)
    elif mode == "L":
        out = _gray_to_rgb(np.asarray(im, dtype=np.uint8))
    elif mode == "1":
        out = _gray_to_rgb(np.asarray(im.convert("L"), dtype=np.uint8))
    elif mode == "LA":
        out = _gray_to_rgb(np.asarray(im, dtype=np.uint8)[:, :, 0])
    elif mode in ("RGBA", "RGBX"):
        out = np.array(np.asarray(im, dtype=np.uint8)[:, :, :3])
    elif mode in ("P", "PA"):
        out = np.array(np.asarray(im.convert("RGBA"), dtype=np.uint8)[:, :, :3])
    elif mode.startswith("I") or mode.startswith("F"):
        out = _gray_to_rgb(_scale_to_uint8(np.asarray(im)))
    else:
        # CMYK, YCbCr, RGBa, La, HSV, ...: Pillow knows these conversions; an
        # unknown one raises ValueError, which the caller turns into ImageError.
        out = np.array(im.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(out)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    """Replicate an (H, W) uint8 array into (H, W, 3)."""
    return np.repeat(gray[:, :, np.newaxis], 3, axis=2)


def _scale_to_uint8(values: np.ndarray) -> np.ndarray:
    """Map a high-depth single-channel array linearly onto 0..255 by its range.

    The low end is ``min(0, lowest finite value)`` so that black stays black in
    the usual non-negative case, and negative data (``I``, ``F``) still fits.
    """
    data = values.astype(np.float64)
    if data.ndim != 2:
        raise ValueError(f"expected a single-channel array, got shape {data.shape}")
    finite = np.isfinite(data)
    if not finite.any():
        return np.zeros(data.shape, dtype=np.uint8)
    lo = min(0.0, float(data[finite].min()))
    hi = float(data[finite].max())
    if hi <= lo:
        return np.zeros(data.shape, dtype=np.uint8)
    data = np.where(finite, data, lo)
    scaled = np.rint((data - lo) * (255.0 / (hi - lo)))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def _one_line(exc: BaseException) -> str:
    """The exception's message on one line (type name when it has no message)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
