"""TensorRT as the builder and the runtime both use it: the import check with the install hint,
the version, the one process-wide logger, shapes as tuples.

TensorRT is imported inside these functions only, so this module imports anywhere."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tensorrt as trt

INSTALL_HINT = (
    "pip install 'rpol-edge[tensorrt]'; on Jetson use JetPack's python3-libnvinfer "
    "through a venv made with --system-site-packages"
)


class TrtUnavailable(ImportError):
    """TensorRT's Python package is not installed."""


def require_tensorrt() -> None:
    """Raise :class:`TrtUnavailable` with the install command unless ``import tensorrt`` works.

    Callers then ``import tensorrt as trt`` themselves, so mypy checks their calls against the stubs.
    """
    try:
        import tensorrt
    except ImportError:
        raise TrtUnavailable(f"TensorRT is not installed: {INSTALL_HINT}") from None
    if not hasattr(tensorrt, "Builder"):  # e.g. tensorrt-stubs alone: an empty namespace package
        where = ", ".join(getattr(tensorrt, "__path__", [])) or "?"
        raise TrtUnavailable(f"'tensorrt' at {where} is not TensorRT (type stubs only?): {INSTALL_HINT}")


def tensorrt_version() -> str:
    """The installed TensorRT's version (raises :class:`TrtUnavailable` with the install hint)."""
    require_tensorrt()
    import tensorrt as trt

    return trt.__version__


def version_tuple(version: str) -> tuple[int, int]:
    m = re.match(r"^\s*(\d+)(?:\.(\d+))?", version)
    if not m:
        raise ValueError(f"not a TensorRT version: {version!r}")
    return int(m.group(1)), int(m.group(2) or 0)


_LOGGER: trt.ILogger | None = None


def trt_logger() -> trt.ILogger:
    """One logger for the process (TensorRT expects builders and runtimes to share it)."""
    global _LOGGER
    require_tensorrt()
    import tensorrt as trt

    if _LOGGER is None:
        _LOGGER = trt.Logger(trt.Logger.WARNING)
    return _LOGGER


def dims(d: trt.Dims) -> tuple[int, ...]:
    """A TensorRT shape as a tuple (-1 for a dynamic dimension)."""
    return tuple(int(d[i]) for i in range(len(d)))
