"""Optional dependencies: the one-line error that names the pyproject extra to install.

The base install runs exported graphs (ONNX Runtime through the ``ort`` extra, TensorRT through
``tensorrt``) without PyTorch; fitting, exporting and the PyTorch runtime need the ``torch`` extra.
"""

from __future__ import annotations

import importlib
import importlib.util

TORCH_EXTRA = "torch"
TORCH_MODULES = {"torch": "PyTorch", "timm": "timm", "torchvision": "torchvision"}
"""Import name -> what the message calls it; all of them come with the ``torch`` extra."""


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def require(what: str, modules: tuple[str, ...], extra: str) -> None:
    """Raise :class:`MissingExtra` unless every module imports.

    Callers then import the module themselves, so mypy checks their calls against its types.
    """
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            label = TORCH_MODULES.get(name, name)
            raise MissingExtra(f"{what} needs {label}: pip install 'rpol-edge[{extra}]'") from None


def require_torch(what: str, with_timm: bool = True) -> None:
    """``what`` (e.g. ``rpol-edge fit``) needs PyTorch, and timm for the backbone unless told not."""
    require(what, ("torch", "timm") if with_timm else ("torch",), TORCH_EXTRA)


OPENCV_HINT = (
    "on Jetson use JetPack's (sudo apt install python3-opencv, in a venv made with "
    "--system-site-packages); elsewhere pip install 'rpol-edge[opencv]'"
)


def require_opencv() -> None:
    """Raise :class:`MissingExtra` unless OpenCV is importable. It is a base dependency except on
    aarch64 Linux, where a pip wheel would shadow JetPack's GStreamer build."""
    if importlib.util.find_spec("cv2") is None:
        raise MissingExtra(f"rpol-edge needs OpenCV (cv2), which is not installed: {OPENCV_HINT}")
