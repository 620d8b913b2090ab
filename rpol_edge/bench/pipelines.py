"""The timed pipelines: a model file through its runtime, the reference pipeline, the bare backbone.

Two kinds of rows are derived from the first ``.rpol`` spec:

- ``reference``: the pipeline of the reference implementation (Song et al., ICCV 2023) as its code
  runs it: host normalization to float NCHW, PyTorch eager FP32 backbone, the map (w*, norm, clamp,
  min-max, bilinear upsampling) in torch, then on the host the uint8 cast, ``cv2.threshold`` at
  int(t * max) and the contour box;
- ``backbone``: the bare backbone alone (host-normalized float NCHW in, features out), per runtime:
  torch eager, and ONNX Runtime on a backbone-only ONNX exported for the bench (same exporter,
  opset and simplification as the fused graph). It is the floor a fused graph is compared with.

Each pipeline is pre(images) -> x, infer(x) -> y, post(y) -> boxes, timed stage by stage.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rpol_edge.bench.spec import Spec


class _Pipeline:
    """pre(images) -> x, infer(x) -> y, post(y) -> boxes; outputs(frames) -> Output for eval."""

    pre: Callable[[list[np.ndarray]], Any]
    infer: Callable[[Any], Any]
    post: Callable[[Any], Any]
    outputs: Callable[[np.ndarray], Any] | None = None
    precision = "fp32"
    device = "cpu"
    description = ""
    input_size = 0
    cuda = False
    frame_size: tuple[int, int] | None = None
    weights_mb = 0.0
    """For a .rpol: the backbone weights it loads besides its own small file (in memory, MB)."""
    """(W, H) of a graph exported with ``--frame-size``: the photos are resized to it once, outside
    the clock, as a camera of that size would send them."""
    images_rgb = True
    """Channel order of the images ``pre`` receives: a raw-frame graph gets its own order (BGR by
    default), converted with the resize outside the clock, so ``pre`` times no channel flip a
    camera would not need."""

    def close(self) -> None:
        """Release sessions and buffers."""


def _normalize(frames: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """The reference's host pre-processing: uint8 NHWC -> normalized float32 NCHW."""
    x = (frames.astype(np.float32) / 255.0 - mean) / std
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _model_pipeline(spec: Spec, batch: int) -> _Pipeline:
    from rpol_edge.core.prepare import prepare
    from rpol_edge.results.detection import detect
    from rpol_edge.runtimes import infer_all, open_runtime

    opts = dict(spec.options)
    opts.pop("runtime", None)
    # The runtime by file type (or the spec's runtime=), never the CPU auto-pick: a row named
    # model.int8.onnx is ONNX Runtime on every machine; OpenVINO rows say @runtime=openvino.
    rt = open_runtime(spec.path, spec.runtime, **opts)
    if batch < rt.min_batch or (rt.max_batch is not None and batch > rt.max_batch):
        # Looping a fixed-batch graph would time N batch-1 calls and call it batch N.
        raise ValueError(
            f"the graph's batch is fixed at {rt.min_batch}; export with --batch 1:{batch}:{max(batch, 8)}"
        )
    rt.__enter__()
    meta = rt.meta
    p = _Pipeline()
    p.precision, p.input_size, p.description = meta.precision, meta.input_size, rt.description
    p.device = str(getattr(rt, "device", "cpu"))
    module = getattr(rt, "module", None)  # the torch runtime: w* file + the backbone it builds
    if module is not None:
        p.weights_mb = round(
            sum(t.numel() * t.element_size() for t in module.state_dict().values()) / 2**20, 2
        )
    p.cuda = "cuda" in p.device.lower() or rt.name == "trt"

    if meta.raw_frames:
        p.frame_size = (meta.frame_width, meta.frame_height)
        p.images_rgb = meta.frame_format == "rgb"

    def pre(images: list[np.ndarray]) -> tuple[np.ndarray, list[Any]]:
        # The shared step of `run` and `predict`: host resize + crop, or a pass-through for raw frames.
        prepped = [prepare(img, meta, is_rgb=p.images_rgb) for img in images]
        return np.stack([f for f, _ in prepped]), [t for _, t in prepped]

    def infer(x: tuple[np.ndarray, list[Any]]) -> tuple[Any, list[Any]]:
        return infer_all(rt, x[0]), x[1]

    def post(y: tuple[Any, list[Any]]) -> list[Any]:
        out, transforms = y
        return [detect(out.score[i, 0], out.mask[i, 0], t) for i, t in enumerate(transforms)]

    p.pre, p.infer, p.post = pre, infer, post
    p.outputs = lambda frames: infer_all(rt, frames)
    p.close = lambda: rt.__exit__(None, None, None)  # type: ignore[method-assign]
    return p


def _reference_pipeline(spec: Spec) -> _Pipeline:
    import torch

    from rpol_edge.core.artifact import ModelArtifact
    from rpol_edge.core.geometry import resize_crop
    from rpol_edge.modeling.factory import build_localizer
    from rpol_edge.results.boxes import threshold_mask, to_uint8_map
    from rpol_edge.results.detection import detect
    from rpol_edge.runtimes import Output

    device = torch.device(str(spec.options.get("device", "cpu")))
    threads = spec.options.get("threads")
    if threads:
        torch.set_num_threads(int(threads))
    torch.backends.cudnn.allow_tf32 = False  # real FP32, as the reference runtime
    torch.backends.cuda.matmul.allow_tf32 = False
    artifact = ModelArtifact.load(spec.path)
    meta = artifact.meta
    loc = build_localizer(artifact, spec.options.get("weights")).to(device).eval()
    mean = np.asarray(meta.mean, np.float32).reshape(1, 1, 1, 3)
    std = np.asarray(meta.std, np.float32).reshape(1, 1, 1, 3)
    k = meta.input_size

    # The reference implementation thresholds at int(t * max) on the host. A model with a
    # label-free operating point has no such t: its mask rule (e.g. the sign of the raw
    # response) comes from the model's own map-to-mask step, so boxes stay comparable with every other row.
    host_rule = meta.operating_point == "fixed"
    last_mask: list[np.ndarray] = []

    @torch.inference_mode()
    def maps(x: np.ndarray) -> np.ndarray:
        # The model's own map step (w*, norm, clamp, min-max, upsampling): written once, in model.py.
        score, mask, _ = loc.localize(loc.backbone(torch.from_numpy(x).to(device)))
        if not host_rule:
            last_mask[:] = [mask.cpu().numpy()]
        return score.cpu().numpy()  # the copy back synchronizes the device

    def host_mask(score: np.ndarray) -> np.ndarray:
        """int(score * 255), then keep > int(t * max): the reference's host step (boxes.py)."""
        if not host_rule:
            return last_mask[0]
        masks = np.empty(score.shape, np.uint8)
        for i in range(score.shape[0]):
            masks[i, 0] = threshold_mask(to_uint8_map(score[i, 0]), meta.threshold)
        return masks

    def pre(images: list[np.ndarray]) -> tuple[np.ndarray, list[Any]]:
        prepped = [resize_crop(img, meta.resize_size, k) for img in images]
        return _normalize(np.stack([f for f, _ in prepped]), mean, std), [t for _, t in prepped]

    def infer(x: tuple[np.ndarray, list[Any]]) -> tuple[np.ndarray, list[Any]]:
        return maps(x[0]), x[1]

    def post(y: tuple[np.ndarray, list[Any]]) -> list[Any]:
        score, transforms = y
        mask = host_mask(score)
        return [detect(score[i, 0], mask[i, 0], t) for i, t in enumerate(transforms)]

    p = _Pipeline()
    p.pre, p.infer, p.post = pre, infer, post
    p.outputs = lambda frames: Output(s := maps(_normalize(frames, mean, std)), host_mask(s))
    p.input_size, p.device, p.cuda = k, device.type, device.type == "cuda"
    rule = "host threshold" if host_rule else f"mask rule {meta.operating_point}"
    p.description = f"reference torch eager {device.type} fp32, {rule}"
    return p


def backbone_onnx_fits(path: Path, batch: tuple[int, int, int]) -> bool:
    """Whether a cached backbone graph takes every batch of ``batch`` (fixed 1, or symbolic)."""
    from rpol_edge.core.onnx_props import input_dims

    if not path.is_file():
        return False
    try:
        first = input_dims(path, "x")[0]
    except (OSError, ValueError, IndexError):
        return False
    symbolic = not (isinstance(first, int) and first > 0)
    return symbolic if batch[2] > 1 else first == 1 or symbolic


def export_backbone_onnx(model_path: Path, out_path: Path, batch: tuple[int, int, int]) -> Path:
    """The fitted model's backbone alone (normalized float NCHW in, features out) as ONNX, through
    the same exporter, opset and simplification as the fused graph, for the bare-backbone row."""
    import onnx
    import torch

    from rpol_edge.core.artifact import ModelArtifact
    from rpol_edge.core.files import atomic_write
    from rpol_edge.exporters.onnx_export import DEFAULT_OPSET, _simplify
    from rpol_edge.modeling.factory import build_localizer

    artifact = ModelArtifact.load(model_path)
    backbone = build_localizer(artifact).backbone.eval()
    k = artifact.meta.input_size
    lo, opt, hi = batch
    dynamic = lo != hi
    dummy = torch.zeros((max(opt, 2) if dynamic else lo, 3, k, k))

    def write(tmp: Path) -> None:
        axes = {"x": {0: "batch"}, "features": {0: "batch"}} if dynamic else None
        torch.onnx.export(
            backbone, (dummy,), str(tmp), opset_version=DEFAULT_OPSET["legacy"], dynamo=False,
            input_names=["x"], output_names=["features"], dynamic_axes=axes,
        )  # fmt: skip
        onnx.save(_simplify(onnx.load(str(tmp))), str(tmp))

    atomic_write(out_path, write)
    return out_path


def _backbone_pipeline(spec: Spec) -> _Pipeline:
    from rpol_edge.core.artifact import ModelArtifact
    from rpol_edge.core.geometry import resize_crop

    meta = ModelArtifact.load(spec.path).meta
    mean = np.asarray(meta.mean, np.float32).reshape(1, 1, 1, 3)
    std = np.asarray(meta.std, np.float32).reshape(1, 1, 1, 3)
    k = meta.input_size
    device = str(spec.options.get("device", "cpu"))
    threads = spec.options.get("threads")
    p = _Pipeline()
    p.input_size, p.device, p.cuda = k, device, device.startswith("cuda")

    def pre(images: list[np.ndarray]) -> np.ndarray:
        return _normalize(np.stack([resize_crop(img, meta.resize_size, k)[0] for img in images]), mean, std)

    if spec.runtime == "ort":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = int(threads)
        onnx_path = Path(str(spec.options["onnx"]))
        from rpol_edge.runtimes.ort_runtime import provider_chain

        # The same provider choice as the model's ORT runtime (TensorRT EP first where present).
        providers = provider_chain(
            device, ort.get_available_providers(), "fp32", onnx_path.parent / "ort_trt_cache"
        )
        session = ort.InferenceSession(str(onnx_path), sess_options=opts, providers=providers)
        p.description = f"bare backbone ort {session.get_providers()[0].replace('ExecutionProvider', '')}"
        p.infer = lambda x: session.run(None, {"x": x})[0]
    else:
        import torch

        from rpol_edge.modeling.factory import build_localizer

        if threads:
            torch.set_num_threads(int(threads))
        torch.backends.cudnn.allow_tf32 = False
        backbone = build_localizer(ModelArtifact.load(spec.path)).backbone.to(device).eval()

        @torch.inference_mode()
        def run(x: np.ndarray) -> np.ndarray:
            f = backbone(torch.from_numpy(x).to(device))
            if p.cuda:
                torch.cuda.synchronize()
            return f  # features stay where they are: the bare backbone's own cost only

        p.infer = run
        p.description = f"bare backbone torch eager {device}"
    p.pre, p.post = pre, lambda y: None
    return p


def open_pipeline(spec: Spec, batch: int) -> _Pipeline:
    if spec.kind == "reference":
        return _reference_pipeline(spec)
    if spec.kind == "backbone":
        return _backbone_pipeline(spec)
    return _model_pipeline(spec, batch)


def evaluate_pipeline(p: _Pipeline, eval_args: dict[str, Any], maps_out: Path | None) -> dict[str, float]:
    """Both MaxBoxAccV2 protocols and GT-known Loc of this pipeline on a labelled split; the maps
    and masks are saved (npz) for the parent's parity check against the reference."""
    from rpol_edge.bench.stats import accuracy_keys
    from rpol_edge.data import read_dataset
    from rpol_edge.data.loader import iterate_batches
    from rpol_edge.evaluate.metrics import BoxAccuracy

    assert p.outputs is not None
    meta_thr = float(eval_args["threshold"])
    resize, crop = int(eval_args["resize"]), p.input_size
    samples = [
        s
        for s in read_dataset(eval_args["data"], Path(eval_args["root"]), eval_args["split"])
        if len(s.boxes)
    ]
    acc = BoxAccuracy(operating_threshold=meta_thr)
    scores, masks = [], []
    for b in iterate_batches(samples, resize, crop, batch_size=4, workers=0):
        out = p.outputs(b.frames)
        for i, t in enumerate(b.transforms):
            # GT-known Loc scores the row's own mask: its operating point, as `eval` does.
            acc.add(out.score[i, 0], t.boxes_to_input(b.samples[i].boxes), out.mask[i, 0])
        scores.append(out.score[:, :1].astype(np.float32))
        masks.append(out.mask[:, :1].astype(np.uint8))
    if maps_out is not None and scores:
        np.savez(maps_out, score=np.concatenate(scores), mask=np.concatenate(masks))
    r: dict[str, Any] = dict(acc.result())
    keys = (*accuracy_keys(), "n_images")
    return {k: float(r[k]) for k in keys if k in r}
