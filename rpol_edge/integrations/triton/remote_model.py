"""A client for a Triton server that serves an rpol-edge model (``rpol-edge serve``, or a user's
Triton with the repository of ``export --triton``), over HTTP or gRPC (``tritonclient``).

`RemoteModel.detect` sends raw RGB frames and returns the `Detection` a local run gives;
`predict_remote` writes exactly what ``rpol-edge predict`` writes (the per-image JSON, the overlays,
``predictions.jsonl``) through the same writer, with the score map the server returns.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from rpol_edge.core.geometry import CropTransform
from rpol_edge.core.metadata import ModelMeta
from rpol_edge.integrations.triton.repository import (
    BOX,
    BOX_SCORE,
    BOXES,
    BOXES_SCORE,
    FRAMES,
    META_PARAMETER,
    SCORE_MAP,
)
from rpol_edge.integrations.triton.server_env import ServeError
from rpol_edge.results.detection import JSONL_NAME, Detection, write_predictions

ANSWER = (BOX, BOX_SCORE, BOXES, BOXES_SCORE)
"""What a client asks for with every frame (the score map only when it draws overlays)."""


@dataclass(frozen=True)
class Endpoint:
    protocol: str
    """``http`` or ``grpc``."""
    address: str
    """host:port, as tritonclient takes it."""
    host: str
    port: int

    def listening(self, timeout_s: float) -> bool:
        """Whether anything accepts a connection there (a server that is gone refuses it)."""
        try:
            socket.create_connection((self.host, self.port), timeout=timeout_s).close()
            return True
        except OSError:
            return False

    def no_server(self, url: str) -> str:
        flag = "--grpc-port" if self.protocol == "grpc" else "--http-port"
        return f"no server at {url}: start one with rpol-edge serve MODEL {flag} {self.port}"


def parse_url(url: str) -> Endpoint:
    """``http://host:port``, ``grpc://host:port`` or ``host:port`` (HTTP)."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    try:
        port = parts.port or (8001 if parts.scheme == "grpc" else 8000)
    except ValueError:  # a port that is not a number, or out of range
        port = 0
    if parts.scheme not in ("http", "grpc") or not parts.hostname or parts.path not in ("", "/") or not port:
        raise ServeError(f"{url!r}: give http://HOST:PORT or grpc://HOST:PORT")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return Endpoint(parts.scheme, f"{host}:{port}", parts.hostname, port)


def _tritonclient(protocol: str) -> Any:
    try:
        if protocol == "grpc":
            import tritonclient.grpc as mod
        else:
            import tritonclient.http as mod
    except ImportError:
        raise ServeError("the Triton client needs tritonclient: pip install 'rpol-edge[serve]'") from None
    return mod


class RemoteModel:
    """One model on one server. ``timeout_s`` bounds every request (connect and answer)."""

    def __init__(self, url: str, model: str = "rpol", timeout_s: float = 30.0) -> None:
        self.endpoint = parse_url(url)
        self.url = url
        self.model = model
        self.timeout_s = timeout_s
        self.mod = _tritonclient(self.endpoint.protocol)
        self._client: Any = None
        self._meta: ModelMeta | None = None
        self._answered = False

    @property
    def client(self) -> Any:
        if self._client is None:
            if self.endpoint.protocol == "grpc":
                self._client = self.mod.InferenceServerClient(self.endpoint.address)
            else:
                self._client = self.mod.InferenceServerClient(
                    self.endpoint.address, connection_timeout=self.timeout_s, network_timeout=self.timeout_s
                )
        return self._client

    def _call(self, fn: Callable[[], Any]) -> Any:
        from tritonclient.utils import InferenceServerException

        try:
            answer = fn()
        except Exception as exc:  # noqa: BLE001 - the transports raise their own kinds (gevent, grpc)
            # Nothing listening (never started, or gone mid-run) reads the same over HTTP and gRPC.
            if not self.endpoint.listening(min(self.timeout_s, 5.0)):
                if self._answered:
                    raise ServeError(
                        f"the server at {self.url} stopped answering (nothing listens there now)"
                    ) from None
                raise ServeError(self.endpoint.no_server(self.url)) from None
            if isinstance(exc, InferenceServerException):
                raise ServeError(f"{self.url} ({self.model}): {exc.message()}") from None
            text = " ".join(str(exc).split()) or "no detail"
            raise ServeError(f"{self.url}: {exc.__class__.__name__}: {text}") from None
        self._answered = True
        return answer

    def ready(self) -> bool:
        try:
            return bool(self._call(lambda: self.client.is_model_ready(self.model)))
        except ServeError:
            return False

    @property
    def meta(self) -> ModelMeta:
        """The metadata record the model's config carries (input size, resize, threshold...)."""
        if self._meta is None:
            if self.endpoint.protocol == "grpc":
                cfg = self._call(lambda: self.client.get_model_config(self.model, as_json=True))["config"]
            else:
                cfg = self._call(lambda: self.client.get_model_config(self.model))
            params = cfg.get("parameters", {})
            if META_PARAMETER not in params:
                raise ServeError(f"{self.url}: model {self.model!r} is not an rpol-edge model (no metadata)")
            self._meta = ModelMeta.from_json(
                params[META_PARAMETER]["string_value"], f"{self.url}/{self.model}"
            )
        return self._meta

    def infer(self, frames: np.ndarray, maps: bool = False) -> dict[str, np.ndarray]:
        """One request: uint8 RGB frames (N, H, W, 3) -> ``box`` (N, 4), ``box_score`` (N, 1),
        ``boxes`` (N, MAX_BOXES, 4), ``boxes_score`` (N, MAX_BOXES) and, with ``maps``,
        ``score_map`` (N, K, K)."""
        mod = self.mod
        tensor = mod.InferInput(FRAMES, list(frames.shape), "UINT8")
        if self.endpoint.protocol == "grpc":
            tensor.set_data_from_numpy(frames)
            outputs = [mod.InferRequestedOutput(n) for n in ANSWER + ((SCORE_MAP,) if maps else ())]
            res = self._call(
                lambda: self.client.infer(
                    self.model, [tensor], outputs=outputs, client_timeout=self.timeout_s
                )
            )
        else:
            tensor.set_data_from_numpy(frames, binary_data=True)
            outputs = [
                mod.InferRequestedOutput(n, binary_data=True) for n in ANSWER + ((SCORE_MAP,) if maps else ())
            ]
            res = self._call(lambda: self.client.infer(self.model, [tensor], outputs=outputs))
        got = {n: res.as_numpy(n) for n in ANSWER + ((SCORE_MAP,) if maps else ())}
        if got[BOX] is None or len(got[BOX]) != len(frames):
            raise ServeError(f"{self.url}: the server answered no boxes for {len(frames)} frame(s)")
        return got

    def detect(self, frame: np.ndarray) -> Detection:
        """One RGB frame (H, W, 3) -> its detection, as `rpol_edge.results.detection.detect` gives."""
        return self.detect_maps([frame])[0][0]

    def detect_maps(
        self, images: Sequence[np.ndarray], maps: bool = False
    ) -> list[tuple[Detection, CropTransform, np.ndarray | None]]:
        """Frames one request each (the server batches concurrent requests), with their transforms
        and, with ``maps``, score maps: what `write_predictions` takes."""
        meta = self.meta
        out: list[tuple[Detection, CropTransform, np.ndarray | None]] = []
        for image in images:
            got = self.infer(np.ascontiguousarray(image[None]), maps)
            h, w = image.shape[:2]
            t = CropTransform(w, h, meta.resize_size, meta.input_size)
            d = to_detection(got[BOX][0], got[BOX_SCORE][0], got[BOXES][0], got[BOXES_SCORE][0])
            out.append((d, t, got[SCORE_MAP][0] if maps else None))
        return out

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> RemoteModel:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def binary_infer_body(
    shape: list[int], payload: bytes, datatype: str = "UINT8", declared_size: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """A raw KServe v2 binary-extension request for ``frames`` (body, HTTP headers), for clients
    without tritonclient; ``declared_size`` other than ``len(payload)`` makes a truncated body."""
    size = len(payload) if declared_size is None else declared_size
    inputs = [
        {"name": "frames", "shape": shape, "datatype": datatype, "parameters": {"binary_data_size": size}}
    ]
    head = json.dumps({"inputs": inputs, "outputs": [{"name": "box"}]}).encode()
    return head + payload, {"Inference-Header-Content-Length": str(len(head))}


def to_detection(
    box: np.ndarray, score: np.ndarray, boxes: np.ndarray | None = None, scores: np.ndarray | None = None
) -> Detection:
    """The server's int32 box (-1s: no object) and score, and its padded list of every box, as a
    `Detection` (original pixels; the list in the server's box mode, ``serve --boxes``)."""
    if int(box[0]) < 0:
        return Detection(None, 0.0, None)
    b = (int(box[0]), int(box[1]), int(box[2]), int(box[3]))
    listed = [(b, float(score[0]))]
    if boxes is not None and scores is not None:
        rows = [r for r in zip(boxes.tolist(), scores.tolist(), strict=True) if r[0][0] >= 0]
        listed = [((r[0], r[1], r[2], r[3]), float(s)) for r, s in rows] or listed
    return Detection(listed[0][0], listed[0][1], None, listed)


def predict_remote(
    model: RemoteModel,
    images: Sequence[Path],
    out_dir: Path,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[dict[str, Any]], list[tuple[Path, str]]]:
    """What ``rpol-edge predict`` writes, with the boxes and maps from the server.

    The server is asked first, so a wrong address writes nothing. Images go one request each and
    are written as they are answered: a server that stops mid-run leaves every answered image
    written and listed, and the error counts the rest."""
    model.meta  # noqa: B018 - reaches the server (and its model) before anything is written
    answered = 0

    def detector(imgs: list[np.ndarray]) -> list[Any]:
        nonlocal answered
        found = model.detect_maps(imgs, maps=True)
        answered += len(found)
        return found

    try:
        return write_predictions(detector, images, out_dir, 1, progress)
    except ServeError as exc:
        if not answered:
            raise
        raise ServeError(
            f"{exc}; {answered} of {len(images)} image(s) answered, written to {out_dir} "
            f"({JSONL_NAME} lists them); the other {len(images) - answered} not"
        ) from None
