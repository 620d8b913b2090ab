"""The ensemble's Python steps (``export --triton``'s ``_pre`` and ``_post`` model.py) on the real
graph's outputs, with a stand-in for Triton's ``triton_python_backend_utils`` (the module exists
only inside Triton's Python backend, whose interpreter cannot load rpol-edge here): the boxes they
answer are those of a local run, in the model's recorded box mode."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from rpol_edge.core.onnx_meta import read_onnx_meta
from rpol_edge.integrations.triton.repository import MAX_BOXES
from rpol_edge.results.detection import detect_images
from rpol_edge.runtimes import open_runtime
from tests.multi_canvas import PHOTOS, tiled


class _Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self.name, self.array = name, np.asarray(array)

    def as_numpy(self) -> np.ndarray:
        return self.array


class _Response:
    def __init__(self, tensors: list[_Tensor] | None = None, error: Any = None) -> None:
        self.tensors = {t.name: t.array for t in tensors or []}
        self.error = error


class _TritonError:
    """The backend's error: a message and a code (its names; Triton maps INVALID_ARG to HTTP 400,
    INTERNAL to 500)."""

    INTERNAL, INVALID_ARG = "INTERNAL", "INVALID_ARG"

    def __init__(self, message: str, code: str = INTERNAL) -> None:
        self.text, self.code = message, code

    def message(self) -> str:
        return self.text


def standin_pb_utils() -> types.ModuleType:
    mod = types.ModuleType("triton_python_backend_utils")
    mod.Tensor = _Tensor  # type: ignore[attr-defined]
    mod.InferenceResponse = _Response  # type: ignore[attr-defined]
    mod.TritonError = _TritonError  # type: ignore[attr-defined]
    mod.get_input_tensor_by_name = lambda request, name: request.get(name)  # type: ignore[attr-defined]
    return mod


@pytest.fixture()
def pb_utils(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    mod = standin_pb_utils()
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", mod)
    return mod


def _step(role: str, meta_json: str) -> Any:
    from rpol_edge.integrations.triton.step import TritonPythonModel

    model = TritonPythonModel()
    params = {"rpol_step": {"string_value": role}, "rpol_edge": {"string_value": meta_json}}
    model.initialize({"model_config": json.dumps({"name": f"m_{role}", "parameters": params})})
    return model


@pytest.mark.parametrize("mode", ["largest", "all"])
def test_pre_graph_post_gives_the_local_boxes(pb_utils: Any, sample_onnx: Path, mode: str) -> None:
    meta = read_onnx_meta(sample_onnx)
    meta = meta.replace(extra={**meta.extra, "boxes": mode})
    images = [cv2.imread(str(p))[..., ::-1].copy() for p in PHOTOS[:3]]
    images += [tiled(2)[..., ::-1].copy()]
    pre, post = _step("pre", meta.to_json()), _step("post", meta.to_json())
    with open_runtime(sample_onnx, "ort", device="cpu") as rt:
        local = detect_images(rt, images, boxes=mode)
        for image, (d, _, _) in zip(images, local, strict=True):
            (got,) = pre.execute([{"frames": _Tensor("frames", image[None])}])
            assert got.error is None
            out = rt.infer(got.tensors["input"])
            request = {name: _Tensor(name, a) for name, a in (("score", out.score), ("mask", out.mask))}
            request["size"] = _Tensor("size", got.tensors["size"])
            request["peak"] = _Tensor("peak", out.peak)
            (ans,) = post.execute([request])
            assert ans.error is None, ans.error
            assert list(ans.tensors["box"][0]) == list(d.box)
            assert ans.tensors["boxes"].shape == (1, MAX_BOXES, 4)
            rows = [tuple(r) for r in ans.tensors["boxes"][0].tolist() if r[0] >= 0]
            assert rows == [b for b, _ in d.boxes]
            n = len(rows)
            assert np.allclose(ans.tensors["boxes_score"][0, :n], [s for _, s in d.boxes], atol=1e-6)
            assert (ans.tensors["boxes_score"][0, n:] == 0).all()
    assert mode == "largest" or max(len(d.boxes) for d, _, _ in local) >= 2


def test_post_step_error_is_answered(pb_utils: Any, sample_onnx: Path) -> None:
    post = _step("post", read_onnx_meta(sample_onnx).to_json())
    (ans,) = post.execute([{"score": _Tensor("score", np.zeros((1, 1, 3, 3), np.float32))}])
    assert ans.error is not None  # a request without its mask: one error, not a crash
