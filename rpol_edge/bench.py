"""The one benchmark: every runtime x precision x batch, the seed's reference pipeline and the bare
backbone, with latency per stage, throughput, size, peak memory and (optionally) accuracy/parity.

Measured the same way here and on a Jetson:
- each row runs in its OWN process (spawned): PyTorch's spinning OpenMP workers made ONNX Runtime
  about 1.7x slower when both ran in one process (measured on the 2-core VM, see README);
- warm-up iterations first; devices are synchronized before a clock is read (runtimes return host
  arrays; the bare torch backbone calls ``torch.cuda.synchronize``);
- real images, decoded once, pre-processed in the loop by the shared code.

Rows are built from *specs*: ``PATH`` (the runtime its suffix selects) or ``PATH@key=value,...``
whose keys go to :func:`rpol_edge.runtimes.open_runtime` (``runtime=``, ``precision=``,
``device=``, any option a runtime takes). So a new runtime or exported flavour is a new spec, not
new bench code. Two kinds of rows are derived from the first ``.rpol`` spec:

- ``reference``: the seed's pipeline as its code runs it: host normalization to float NCHW,
  PyTorch eager FP32 backbone, the map (w*, norm, clamp, min-max, bilinear upsampling) in torch,
  then on the host the uint8 cast, ``cv2.threshold`` at int(t * max) and the contour box;
- ``backbone``: the bare backbone alone (host-normalized float NCHW in, features out), per runtime:
  torch eager, and ONNX Runtime on a backbone-only ONNX exported for the bench (same exporter,
  opset and simplification as the fused graph). It is the floor a fused graph is compared with.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

STAGES = ("pre", "infer", "post")
QUANTILES = (50, 90, 99)


@dataclass(frozen=True)
class Spec:
    """One row's recipe: which pipeline, on which artifact, with which runtime options."""

    kind: str
    """``model`` (an artifact through its runtime), ``reference`` or ``backbone``."""
    path: Path
    options: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    @property
    def runtime(self) -> str:
        if self.kind == "backbone":
            return str(self.options.get("runtime", "torch"))
        if self.kind == "reference":
            return "torch"
        from rpol_edge.runtimes import choose

        return choose(self.path, str(self.options.get("runtime", "auto"))).name


INT_OPTIONS = frozenset({"threads"})
"""Runtime options that are numbers; every other value stays text (a path may be all digits)."""


def _option_value(key: str, text: str) -> Any:
    """``true``/``false`` -> bool, ``threads=4`` -> 4, else the text."""
    flag = {"true": True, "false": False}.get(text.lower())
    if flag is not None:
        return flag
    if key in INT_OPTIONS:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"bench spec option {key}={text!r}: a whole number, e.g. {key}=2") from None
    return text


def parse_spec(text: str) -> Spec:
    """``exp/model.onnx`` or ``m.rpol@precision=fp16,device=cuda`` -> Spec(kind="model")."""
    path, _, opts = text.partition("@")
    options: dict[str, Any] = {}
    for item in filter(None, (o.strip() for o in opts.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"bench spec {text!r}: options are key=value, e.g. {path}@precision=fp16")
        key = key.replace("-", "_")
        options[key] = _option_value(key, value)
    if not Path(path).is_file():
        raise ValueError(f"bench spec {text!r}: no such file {path}")
    return Spec("model", Path(path), options, label=Path(path).name + (f"@{opts}" if opts else ""))


@dataclass
class Row:
    label: str
    kind: str
    runtime: str
    precision: str
    batch: int
    device: str = ""
    available: bool = True
    reason: str = ""
    ms: dict[str, dict[str, float]] = field(default_factory=dict)
    """stage (pre, infer, post, total) -> {p50, p90, p99} in ms per batch."""
    throughput: float = 0.0
    """Images per second at the median total latency."""
    artifact: str = ""
    artifact_mb: float = 0.0
    peak_rss_mb: float = 0.0
    peak_cuda_mb: float | None = None
    iters: int = 0
    speedup_vs_reference: float | None = None
    overhead_vs_backbone: float | None = None
    speedup_vs_first: float | None = None
    """Speed-up over the first given spec's row at the same batch (e.g. INT8 over FP32)."""
    speedup_vs_first_range: list[float] = field(default_factory=list)
    """[min, max] of the per-round speed-ups over the first spec when ``rounds`` > 1."""
    rounds: int = 1
    round_total_p50: list[float] = field(default_factory=list)
    """Total p50 (ms) of each round's process, in round order."""
    accuracy: dict[str, float] = field(default_factory=dict)
    parity: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------- in the child process


def _quantiles(values: Sequence[float]) -> dict[str, float]:
    return {f"p{q}": round(float(np.percentile(values, q)) * 1000.0, 3) for q in QUANTILES}


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
    from rpol_edge.predict import detect
    from rpol_edge.prepare import prepare
    from rpol_edge.runtimes import infer_all, open_runtime

    opts = dict(spec.options)
    runtime = str(opts.pop("runtime", "auto"))
    rt = open_runtime(spec.path, runtime, **opts)
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

    from rpol_edge.artifact import ModelArtifact
    from rpol_edge.boxes import threshold_mask, to_uint8_map
    from rpol_edge.build import build_localizer
    from rpol_edge.geometry import resize_crop
    from rpol_edge.predict import detect
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

    # The seed thresholds at int(t * max) on the host. A model with a label-free operating point
    # (issue 10) has no such t: its mask rule (e.g. the sign of the raw response) comes from the
    # model's own map-to-mask step, so boxes stay comparable with every other row.
    host_rule = meta.operating_point == "fixed"
    last_mask: list[np.ndarray] = []

    @torch.inference_mode()
    def maps(x: np.ndarray) -> np.ndarray:
        # The model's own map step (w*, norm, clamp, min-max, upsampling): written once, in model.py.
        score, mask = loc.localize(loc.backbone(torch.from_numpy(x).to(device)))
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


def _backbone_onnx_fits(path: Path, batch: tuple[int, int, int]) -> bool:
    """Whether a cached backbone graph takes every batch of ``batch`` (fixed 1, or symbolic)."""
    from rpol_edge.export.onnx_props import input_dims

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

    from rpol_edge.artifact import ModelArtifact, atomic_write
    from rpol_edge.build import build_localizer
    from rpol_edge.export.onnx_export import DEFAULT_OPSET, _simplify

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
    from rpol_edge.artifact import ModelArtifact
    from rpol_edge.geometry import resize_crop

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

        from rpol_edge.build import build_localizer

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


def _open(spec: Spec, batch: int) -> _Pipeline:
    if spec.kind == "reference":
        return _reference_pipeline(spec)
    if spec.kind == "backbone":
        return _backbone_pipeline(spec)
    return _model_pipeline(spec, batch)


def _eval(p: _Pipeline, eval_args: dict[str, Any], maps_out: Path | None) -> dict[str, float]:
    """Both MaxBoxAccV2 protocols and GT-known Loc of this pipeline on a labelled split; the maps
    and masks are saved (npz) for the parent's parity check against the reference."""
    from rpol_edge.data import read_dataset
    from rpol_edge.loader import iterate_batches
    from rpol_edge.metrics import BoxAccuracy

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
    keys = ("gt_known_loc", "maxboxacc", "maxboxacc_v2", "maxboxacc_v2_rpol", "n_images")
    return {k: float(r[k]) for k in keys if k in r}


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: Linux keeps ru_maxrss across
    exec, so a spawned child would report its parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024.0, 1)
    except OSError:
        pass
    scale = 1024.0 if platform.system() == "Linux" else 2**20  # KiB on Linux, bytes on macOS
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale, 1)


def run_row(job: dict[str, Any]) -> dict[str, Any]:
    """Child-process entry: time one pipeline at one batch; returns a Row dict (or its reason)."""
    spec: Spec = job["spec"]
    batch = int(job["batch"])
    row = Row(job["label"], spec.kind, spec.runtime, "", batch)
    try:
        p = _open(spec, batch)
    except Exception as exc:  # a runtime that cannot be created here is a row with its reason
        row.available, row.reason = False, f"{exc.__class__.__name__}: {exc}".splitlines()[0]
        return row.to_dict()
    try:
        from rpol_edge.images import load_rgb

        row.precision = p.precision if spec.kind != "backbone" else "fp32"
        row.device = p.device
        images = [load_rgb(Path(f)) for f in job["images"]]
        if p.frame_size:
            import cv2

            images = [cv2.resize(img, p.frame_size, interpolation=cv2.INTER_AREA) for img in images]
            if not p.images_rgb:
                images = [np.ascontiguousarray(img[..., ::-1]) for img in images]
        # Only torch rows read torch's CUDA memory counter: importing torch into an ORT or TensorRT
        # row would put a second CUDA runtime in the timed process (and fail where torch is absent).
        torch_cuda = p.cuda and spec.runtime == "torch"
        if torch_cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
        times: dict[str, list[float]] = {s: [] for s in STAGES}
        warmup, iters = int(job["warmup"]), int(job["iters"])
        for it in range(warmup + iters):
            chunk = [images[(it * batch + j) % len(images)] for j in range(batch)]
            t0 = time.perf_counter()
            x = p.pre(chunk)
            t1 = time.perf_counter()
            y = p.infer(x)
            t2 = time.perf_counter()
            p.post(y)
            t3 = time.perf_counter()
            if it >= warmup:
                times["pre"].append(t1 - t0)
                times["infer"].append(t2 - t1)
                times["post"].append(t3 - t2)
        row.ms, row.throughput = summarize(times, batch)
        row.iters = iters
        row.round_total_p50 = [row.ms["total"]["p50"]]
        row.peak_rss_mb = peak_rss_mb()
        if torch_cuda:
            import torch

            row.peak_cuda_mb = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        # Eval feeds K x K crops of the labelled split; a raw-frame graph takes whole frames.
        if job.get("eval") and p.outputs is not None and not p.frame_size:
            row.accuracy = _eval(p, job["eval"], Path(job["maps"]) if job.get("maps") else None)
    except Exception as exc:
        row.available, row.reason = False, f"{exc.__class__.__name__}: {exc}".splitlines()[0]
    finally:
        p.close()
    data = row.to_dict()
    if row.available:
        data[_SAMPLES] = {s: [round(t, 7) for t in v] for s, v in times.items()}
    return data


_SAMPLES = "_samples"
"""Key of a child's raw per-stage times (s), pooled over rounds by the parent, never recorded."""


def summarize(times: dict[str, list[float]], batch: int) -> tuple[dict[str, dict[str, float]], float]:
    """Per-stage seconds -> (stage and total quantiles in ms, images/s at the median total)."""
    total = [a + b + c for a, b, c in zip(times["pre"], times["infer"], times["post"], strict=True)]
    ms = {s: _quantiles(v) for s, v in times.items()}
    ms["total"] = _quantiles(total)
    return ms, round(batch / float(np.median(total)), 2)


def interleaved(items: Sequence[Any], round_index: int) -> list[Any]:
    """``items`` in order on even rounds, reversed on odd ones: a drifting machine (or a warm
    cache) then favours no position."""
    return list(items)[::-1] if round_index % 2 else list(items)


def merge_rounds(parts: list[dict[str, Any]]) -> Row:
    """One Row from the same (row, batch) timed in several processes: quantiles of the pooled
    samples, each round's own p50 kept (the speed-ups pair rounds, which ran side by side), peak
    memory the highest seen, accuracy from the round that evaluated."""
    bad = next((d for d in parts if not d["available"]), None)
    if bad is not None:
        return Row(**{k: v for k, v in bad.items() if k != _SAMPLES})
    first = {k: v for k, v in parts[0].items() if k != _SAMPLES}
    row = Row(**first)
    if len(parts) == 1:
        return row
    pooled: dict[str, list[float]] = {s: [] for s in STAGES}
    for d in parts:
        for s in STAGES:
            pooled[s] += d[_SAMPLES][s]
    row.ms, row.throughput = summarize(pooled, row.batch)
    row.iters = sum(int(d["iters"]) for d in parts)
    row.rounds = len(parts)
    row.round_total_p50 = [float(d["ms"]["total"]["p50"]) for d in parts]
    row.peak_rss_mb = max(float(d["peak_rss_mb"]) for d in parts)
    cuda = [d["peak_cuda_mb"] for d in parts if d.get("peak_cuda_mb") is not None]
    row.peak_cuda_mb = max(cuda) if cuda else None
    row.accuracy = next((d["accuracy"] for d in parts if d["accuracy"]), {})
    return row


# ----------------------------------------------------------------------------- in the parent


@dataclass
class BenchConfig:
    specs: list[Spec]
    images: list[Path]
    batches: list[int] = field(default_factory=lambda: [1])
    iters: int = 30
    warmup: int = 5
    device: str = "auto"
    threads: int | None = None
    reference: bool = True
    backbone: bool = True
    work_dir: Path = Path("bench_work")
    eval_data: str = ""
    eval_root: Path | None = None
    eval_split: str = "test"
    rounds: int = 1
    """Every row is timed this many times, each time in a new process, rows interleaved (order
    reversed every other round) so a machine that drifts hits all rows alike."""


def _size_mb(path: Path) -> float:
    return round(path.stat().st_size / 2**20, 2) if path.is_file() else 0.0


def plan_rows(cfg: BenchConfig) -> list[tuple[Spec, str]]:
    """Every (spec, label) to time: reference and bare backbones first, then the given specs."""
    from rpol_edge.runtimes import RUNTIMES, resolve_device

    rows: list[tuple[Spec, str]] = []
    rpol = next((s.path for s in cfg.specs if s.path.suffix == ".rpol"), None)
    # Resolving "auto" for torch probes CUDA through torch: only when there are torch rows, so a
    # bench of exported graphs alone never imports torch.
    common: dict[str, Any] = {"device": resolve_device(RUNTIMES["torch"], cfg.device) if rpol else cfg.device}
    if cfg.threads:
        common["threads"] = cfg.threads
    if rpol is not None and cfg.reference:
        rows.append((Spec("reference", rpol, dict(common)), "reference (seed pipeline)"))
    if rpol is not None and cfg.backbone:
        rows.append((Spec("backbone", rpol, dict(common)), "bare backbone, torch"))
        if any(s.runtime == "ort" for s in cfg.specs):
            # Named by the fitted backbone's weights, so a cache from another model is never reused.
            from rpol_edge.inspect import read_meta

            onnx_path = cfg.work_dir / read_meta(rpol).weights_sha256[:12] / f"{rpol.stem}.backbone.onnx"
            ort_dev = resolve_device(RUNTIMES["ort"], cfg.device)
            spec = Spec(
                "backbone", rpol, {**common, "runtime": "ort", "device": ort_dev, "onnx": str(onnx_path)}
            )
            rows.append((spec, "bare backbone, ort"))
    for s in cfg.specs:
        opts = dict(s.options)
        if s.runtime in ("torch", "ort"):
            opts.setdefault("device", cfg.device)
            if cfg.threads:
                opts.setdefault("threads", cfg.threads)
        rows.append((Spec(s.kind, s.path, opts, s.label), s.label))
    return rows


def run_bench(cfg: BenchConfig, progress: Callable[[str], None] | None = None) -> list[Row]:
    """Time every planned row at every batch, each in a fresh spawned process, in sequence."""
    cfg.work_dir.mkdir(parents=True, exist_ok=True)
    eval_args: dict[str, Any] | None = None
    planned = plan_rows(cfg)
    for spec, _ in planned:
        if spec.kind == "backbone" and "onnx" in spec.options:
            batch = (1, 1, 1) if cfg.batches == [1] else (1, max(cfg.batches), max(cfg.batches))
            path = Path(spec.options["onnx"])
            if not _backbone_onnx_fits(path, batch):  # a cached graph of an earlier --batch is refreshed
                export_backbone_onnx(spec.path, path, batch)
    if cfg.eval_data and cfg.eval_root:
        from rpol_edge.inspect import read_meta

        meta = read_meta(next(s.path for s in cfg.specs))
        eval_args = {
            "data": cfg.eval_data, "root": str(cfg.eval_root), "split": cfg.eval_split,
            "threshold": meta.threshold, "resize": meta.resize_size,
        }  # fmt: skip
    ctx = get_context("spawn")
    parts: dict[tuple[int, int], list[dict[str, Any]]] = {}
    evaluated: set[tuple[int, int]] = set()
    for r in range(max(1, cfg.rounds)):
        for i, (spec, label) in interleaved(list(enumerate(planned)), r):
            for n in cfg.batches:
                if progress:
                    progress(
                        f"{label} batch {n}" + (f", round {r + 1}/{cfg.rounds}" if cfg.rounds > 1 else "")
                    )
                first_pass = r == 0 and n == cfg.batches[0]
                evaluate = eval_args is not None and first_pass and spec.kind != "backbone"
                scratch = cfg.work_dir / f"maps_{i}_{n}.npz"
                if evaluate:
                    scratch.unlink(missing_ok=True)  # never an earlier run's maps
                    evaluated.add((i, n))
                job: dict[str, Any] = {
                    "spec": spec, "label": label, "batch": n, "images": [str(p) for p in cfg.images],
                    "iters": cfg.iters, "warmup": cfg.warmup, "eval": eval_args if evaluate else None,
                    "maps": str(scratch) if evaluate else None,
                }  # fmt: skip
                with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
                    parts.setdefault((i, n), []).append(pool.submit(run_row, job).result())
    rows: list[Row] = []
    maps: dict[int, Path] = {}
    first_i = next((i for i, (spec, _) in enumerate(planned) if spec.kind == "model"), None)
    lead: dict[int, Row] = {}
    for i, (spec, _) in enumerate(planned):
        for n in cfg.batches:
            row = merge_rounds(parts[(i, n)])
            art = (
                Path(spec.options["onnx"])
                if spec.kind == "backbone" and "onnx" in spec.options
                else spec.path
            )
            row.artifact, row.artifact_mb = str(art), _size_mb(art)
            scratch = cfg.work_dir / f"maps_{i}_{n}.npz"
            if (i, n) in evaluated and row.available and scratch.is_file():
                maps[len(rows)] = scratch
            else:
                scratch.unlink(missing_ok=True)
            if i == first_i:
                lead[n] = row
            rows.append(row)
    _derive(rows, maps, lead)
    return rows


def paired_ratio(base: Sequence[float], other: Sequence[float]) -> tuple[float, list[float]] | None:
    """base[k] / other[k] per round k (rounds of the same k ran side by side): their median and
    [min, max]; None without a usable pair. Callers pass only rounds both sides have."""
    ratios = [b / o for b, o in zip(base, other, strict=True) if o > 0]
    if not ratios:
        return None
    return round(float(np.median(ratios)), 3), [round(min(ratios), 3), round(max(ratios), 3)]


def paired_speedup(base: Row, row: Row) -> tuple[float, list[float]]:
    """Median over rounds of base/row total p50, and [min, max] of the per-round ratios when there
    is more than one round (else the ratio of the p50s and no range)."""
    n = min(len(base.round_total_p50), len(row.round_total_p50))
    paired = paired_ratio(base.round_total_p50[:n], row.round_total_p50[:n]) if n >= 2 else None
    if paired is None:
        return round(base.ms["total"]["p50"] / row.ms["total"]["p50"], 3), []
    return paired


def _derive(rows: list[Row], maps: dict[int, Path], lead: dict[int, Row] | None = None) -> None:
    """Speed-up over the reference and over the first spec's row (``lead``: batch -> it), overhead
    over the bare backbone of the same runtime (same batch, p50 totals and p50 inference), and
    parity of every evaluated row with the reference."""
    from rpol_edge.compare import agreement
    from rpol_edge.runtimes import Output

    def find(kind: str, runtime: str | None, batch: int) -> Row | None:
        for r in rows:
            if (
                r.kind == kind
                and r.available
                and r.batch == batch
                and (runtime is None or r.runtime == runtime)
            ):
                return r
        return None

    ref_maps: Output | None = None
    ref = next((i for i, r in enumerate(rows) if r.kind == "reference" and i in maps), None)
    if ref is not None:
        with np.load(str(maps[ref])) as z:
            ref_maps = Output(z["score"], z["mask"])
    for i, r in enumerate(rows):
        if not r.available:
            continue
        base = find("reference", None, r.batch)
        if base is not None:
            r.speedup_vs_reference = paired_speedup(base, r)[0]
        first = (lead or {}).get(r.batch)
        if first is not None and first.available and r.kind == "model" and first is not r:
            r.speedup_vs_first, r.speedup_vs_first_range = paired_speedup(first, r)
        floor = find("backbone", r.runtime, r.batch)
        if floor is not None and r.kind != "backbone":
            r.overhead_vs_backbone = round(r.ms["infer"]["p50"] / floor.ms["infer"]["p50"], 3)
        if i in maps and ref_maps is not None:
            with np.load(str(maps[i])) as z:
                a = agreement(ref_maps, Output(z["score"], z["mask"]))
            r.parity = {
                "max_abs_score": round(a.max_abs_map, 6),
                "boxes_identical": a.boxes_identical,
                "boxes_iou_090": a.boxes_iou_090,
                "n": a.n,
            }
    for path in maps.values():
        path.unlink(missing_ok=True)


def machine_record(with_torch: bool = True) -> dict[str, Any]:
    """What the numbers were measured on (CPU, cores, GPU, versions). ``with_torch=False`` when no
    row ran on torch: importing it only to read its version would defeat a torch-free deployment."""
    rec: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    try:
        if not with_torch:
            raise ImportError
        import torch

        rec["torch"] = torch.__version__
        if torch.cuda.is_available():
            rec["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    try:
        import onnxruntime

        rec["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return rec


def _fmt(v: float | None, spec: str = ".2f", suffix: str = "") -> str:
    return "" if v is None else f"{v:{spec}}{suffix}"


COLUMNS = (
    "row", "runtime", "prec", "batch", "pre p50", "infer p50", "infer p90", "infer p99", "post p50",
    "total p50", "img/s", "vs ref", "vs 1st", "vs backbone", "MB", "peak MB",
)  # fmt: skip


def _vs_first(r: Row) -> str:
    text = _fmt(r.speedup_vs_first, ".2f", "x")
    if r.speedup_vs_first_range:
        lo, hi = r.speedup_vs_first_range
        text += f" ({lo:.2f}-{hi:.2f})"
    return text


def table_rows(rows: list[Row]) -> list[list[str]]:
    out = []
    for r in rows:
        if not r.available:
            out.append([r.label, r.runtime, r.precision, str(r.batch), f"n/a: {r.reason}"] + [""] * 11)
            continue
        peak = r.peak_cuda_mb if r.peak_cuda_mb is not None else r.peak_rss_mb
        out.append(
            [
                r.label, r.runtime, r.precision, str(r.batch),
                _fmt(r.ms["pre"]["p50"]), _fmt(r.ms["infer"]["p50"]), _fmt(r.ms["infer"]["p90"]),
                _fmt(r.ms["infer"]["p99"]), _fmt(r.ms["post"]["p50"]), _fmt(r.ms["total"]["p50"]),
                _fmt(r.throughput, ".1f"), _fmt(r.speedup_vs_reference, ".2f", "x"), _vs_first(r),
                _fmt(r.overhead_vs_backbone, ".2f", "x"), _fmt(r.artifact_mb, ".2f"),
                f"{peak:.0f}" + (" cuda" if r.peak_cuda_mb is not None else " rss"),
            ]
        )  # fmt: skip
    return out


def accuracy_rows(rows: list[Row]) -> list[list[str]]:
    out = []
    for r in rows:
        if r.accuracy:
            a, p = r.accuracy, r.parity
            out.append(
                [
                    r.label, str(r.batch), _fmt(a.get("gt_known_loc")), _fmt(a.get("maxboxacc")),
                    _fmt(a.get("maxboxacc_v2")), _fmt(a.get("maxboxacc_v2_rpol")),
                    _fmt(p.get("max_abs_score"), ".2e") if p else "",
                    f"{int(p['boxes_identical'])}/{int(p['n'])}" if p else "",
                    f"{int(p['boxes_iou_090'])}/{int(p['n'])}" if p else "",
                ]
            )  # fmt: skip
    return out


ACC_COLUMNS = (
    "row", "batch", "GT-known Loc", "MaxBoxAcc", "MaxBoxAccV2", "MaxBoxAccV2 (RPOL)", "max |d score|",
    "boxes identical", "IoU>=0.9",
)  # fmt: skip


def to_markdown(rows: list[Row], header: str = "") -> str:
    def md(cols: Sequence[str], body: list[list[str]]) -> str:
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        return "\n".join(lines + ["| " + " | ".join(c.replace("|", "/") for c in b) + " |" for b in body])

    parts = [header] if header else []
    rounds = max((r.rounds for r in rows), default=1)
    parts.append(
        "Latency in ms per batch (p50/p90/p99), throughput in images/s."
        + (
            f" {rounds} rounds, one process per row and round, rows interleaved; quantiles over the"
            " pooled rounds; speed-ups are the median of the per-round ratios (min-max in brackets)."
            if rounds > 1
            else ""
        )
        + "\n"
    )
    parts.append(md(COLUMNS, table_rows(rows)))
    acc = accuracy_rows(rows)
    if acc:
        parts.append("\n" + md(ACC_COLUMNS, acc))
    return "\n".join(parts) + "\n"


def plot(rows: list[Row], path: Path, title: str = "") -> None:
    """Horizontal bars of p50 latency per row, one panel per batch, stacked pre / infer / post."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rpol_edge.artifact import write_bytes_atomic

    batches = sorted({r.batch for r in rows})
    n = max(len([r for r in rows if r.batch == b]) for b in batches)
    fig, axes = plt.subplots(1, len(batches), figsize=(6.5 * len(batches), 0.55 * n + 1.6), squeeze=False)
    colors = {"pre": "#8da0cb", "infer": "#fc8d62", "post": "#66c2a5"}
    for ax, b in zip(axes[0], batches, strict=True):
        sub = [r for r in rows if r.batch == b]
        labels = [f"{r.label} ({r.precision})" if r.precision else r.label for r in sub]
        left = np.zeros(len(sub))
        for stage in STAGES:
            vals = np.array([r.ms[stage]["p50"] if r.available else 0.0 for r in sub])
            ax.barh(labels, vals, left=left, color=colors[stage], label=stage)
            left += vals
        for i, r in enumerate(sub):
            text = f"{left[i]:.1f} ms" if r.available else "n/a"
            ax.text(left[i], i, " " + text, va="center", fontsize=8)
        ax.invert_yaxis()
        ax.set_title(f"batch {b}: p50 latency per batch (ms)")
        ax.set_xlim(0, max(left.max(), 1.0) * 1.25)
        ax.legend(loc="lower right", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())


def record(rows: list[Row], cfg: BenchConfig, command: str) -> dict[str, Any]:
    return {
        "command": command,
        "machine": machine_record(any(r.runtime == "torch" for r in rows)),
        "images": len(cfg.images),
        "iters": cfg.iters,
        "warmup": cfg.warmup,
        "batches": cfg.batches,
        "rounds": cfg.rounds,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rows": [r.to_dict() for r in rows],
    }


def write_json(path: Path, rec: dict[str, Any]) -> None:
    from rpol_edge.artifact import write_text_atomic

    write_text_atomic(path, json.dumps(rec, indent=1))
