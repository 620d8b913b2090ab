"""The Python-backend model of the exported ensemble's ``_pre`` and ``_post`` steps (copied as
``model.py``; the role is the config's ``rpol_step`` parameter).

It runs inside a user's Triton (NVIDIA's server images) whose Python has rpol-edge installed
(``pip install rpol-edge``: numpy, OpenCV, no torch), so both steps are the shared code:

* ``pre``: raw RGB uint8 frames (N, H, W, 3) of any size -> the model input
  (`rpol_edge.core.prepare.prepare`: resize to S, centre crop to K) and each frame's (W, H);
* ``post``: score and mask maps (and peak, from graphs that have it) -> box in original pixels and
  its score, every box of the model's recorded box mode (``largest``, ``all`` or ``objects``) padded to
  MAX_BOXES rows (`rpol_edge.results.detection.detect`, the box code every runtime uses), and the
  score map.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        from rpol_edge.core.metadata import ModelMeta

        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.role = params["rpol_step"]
        self.meta = ModelMeta.from_json(params["rpol_edge"], config["name"])

    def execute(self, requests: list[Any]) -> list[Any]:
        import triton_python_backend_utils as pb_utils

        responses = []
        for request in requests:
            try:
                tensors = self._pre(request) if self.role == "pre" else self._post(request)
                responses.append(
                    pb_utils.InferenceResponse([pb_utils.Tensor(k, v) for k, v in tensors.items()])
                )
            except Exception as exc:  # noqa: BLE001 - one bad request is answered, the others go on
                responses.append(pb_utils.InferenceResponse(error=self._error(pb_utils, exc)))
        return responses

    def _error(self, pb_utils: Any, exc: Exception) -> Any:
        """A frame the pre step refuses (`prepare`'s ValueError: empty, the wrong size for a
        ``--frame-size`` graph) is the request's fault: INVALID_ARG, which Triton answers as HTTP
        400 / gRPC INVALID_ARGUMENT. The post step's inputs come from the graph, not the client:
        its errors, like any other, are the server's (INTERNAL, 500)."""
        invalid = self.role == "pre" and isinstance(exc, ValueError)
        code = pb_utils.TritonError.INVALID_ARG if invalid else pb_utils.TritonError.INTERNAL
        return pb_utils.TritonError(str(exc), code=code)

    def _pre(self, request: Any) -> dict[str, np.ndarray]:
        import triton_python_backend_utils as pb_utils

        from rpol_edge.core.prepare import prepare

        frames = pb_utils.get_input_tensor_by_name(request, "frames").as_numpy()
        if frames.shape[1] == 0 or frames.shape[2] == 0:
            raise ValueError(f"empty frame: shape {list(frames.shape)}")
        prepped = [prepare(np.ascontiguousarray(f), self.meta, is_rgb=True) for f in frames]
        sizes = np.array([[t.src_w, t.src_h] for _, t in prepped], np.int32)
        return {"input": np.stack([x for x, _ in prepped]), "size": sizes}

    def _post(self, request: Any) -> dict[str, np.ndarray]:
        import triton_python_backend_utils as pb_utils

        from rpol_edge.core.geometry import CropTransform
        from rpol_edge.integrations.triton.repository import padded_boxes
        from rpol_edge.results.detection import box_mode, detect

        score = pb_utils.get_input_tensor_by_name(request, "score").as_numpy()
        mask = pb_utils.get_input_tensor_by_name(request, "mask").as_numpy()
        sizes = pb_utils.get_input_tensor_by_name(request, "size").as_numpy()
        peak_in = pb_utils.get_input_tensor_by_name(request, "peak")
        peak = None if peak_in is None else peak_in.as_numpy()
        mode, cells = box_mode(self.meta, None)
        boxes = np.full((len(score), 4), -1, np.int32)
        scores = np.zeros((len(score), 1), np.float32)
        every, every_score = [], []
        for i, (w, h) in enumerate(sizes):
            t = CropTransform(int(w), int(h), self.meta.resize_size, self.meta.input_size)
            p = None if peak is None else float(peak[i, 0])
            d = detect(score[i, 0], mask[i, 0], t, 0.0, mode, cells, p)
            if d.box is not None:
                boxes[i] = d.box
                scores[i, 0] = d.score
            rows, row_scores = padded_boxes(d.boxes)
            every.append(rows)
            every_score.append(row_scores)
        return {
            "box": boxes,
            "box_score": scores,
            "score_map": np.ascontiguousarray(score[:, 0], np.float32),
            "boxes": np.array(every, np.int32),
            "boxes_score": np.array(every_score, np.float32),
        }
