"""The refit job: read the model, derive its fit graph, stream frames through it on its runtime,
accumulate float64 sums (resumable, as `fit` checkpoints), solve with `fit`'s code, write the model.

Python API: ``rpol_edge.refit("model.onnx", "refit.onnx", data="folder", root="photos/")`` or
``rpol_edge.refit("model.onnx", "refit.onnx", source="rtsp://cam/stream", frames=200, every=2)``.
"""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import Callable, Iterable
from contextlib import nullcontext, suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from rpol_edge.core.files import array_sha256, file_sha256
from rpol_edge.core.metadata import MetadataError, ModelMeta
from rpol_edge.core.wstar import FeatureSums, solve
from rpol_edge.data import DatasetError, Sample, read_dataset, sample_list_sha256
from rpol_edge.fitting.checkpoint import (
    CheckpointOptions,
    FitState,
    FitStopped,
    Identity,
    StopRequest,
    checkpoint_path,
    stable_hash,
)
from rpol_edge.fitting.checkpoint import load as load_checkpoint
from rpol_edge.fitting.checkpoint import save as save_checkpoint
from rpol_edge.refitting.frames import Chunk, SourceCount, data_chunks, source_chunks
from rpol_edge.refitting.onnx_graph import RefitError, check_refittable
from rpol_edge.refitting.runner import SumsRunner, pick_runtime

Progress = Callable[[int, int], None]
"""Called with (frames done, frames total)."""

KINDS = {".onnx": "onnx", ".xml": "openvino", ".engine": "engine", ".plan": "engine"}
"""Model files refit reads, and so writes: the output is of the same kind."""


@dataclass(frozen=True)
class RefitRequest:
    model: Path
    output: Path
    data: str = ""
    """Data-set reader (folder, voc, cub, wsol) with ``root`` and ``split``; or ``source``."""
    root: Path | None = None
    split: str = "train"
    source: str = ""
    """Any source `run` takes (camera://0, rtsp://..., http://.../stream.mjpg, video, folder, glob)."""
    frames: int = 0
    """How many frames of ``source`` to fit on."""
    every: float = 0.0
    """Seconds between two sampled frames of ``source`` (0: every frame)."""
    runtime: str = "auto"
    device: str = "auto"
    threads: int | None = None
    batch_size: int = 4
    """Frames per runtime call. 4, not fit's 16: on a 2-core AMD EPYC at input 448 the FP32 graph
    refitted 160 photos about as fast at 4 as at 16 and peaked at 428 MB instead of 1062 MB (ORT's
    activation arena grows with the batch; benchmarks/product/refit.py)."""
    workers: int = 2
    tau_mode: str = "joint"
    features_from: Path | None = None
    """Another export of the same model whose backbone gives the sums (an INT8 model refitted on
    its FP32 graph's features); MODEL's own graph when None."""
    open_timeout: float = 10.0

    def validate(self) -> None:
        """One line per mistake, naming the field (the CLI shows them as flags)."""
        if Path(self.model).suffix.lower() not in KINDS:
            raise RefitError(
                f"{self.model}: refit reads exported models ({', '.join(KINDS)}); "
                "a .rpol refits with rpol-edge fit"
            )
        if Path(self.output).suffix.lower() != Path(self.model).suffix.lower():
            raise RefitError(
                f"output={self.output}: refit writes a model of the same kind as "
                f"{Path(self.model).name} (a {Path(self.model).suffix} file)"
            )
        if Path(self.output).resolve() == Path(self.model).resolve():
            raise RefitError(f"output={self.output}: the model itself; write the refitted model beside it")
        if bool(self.data) == bool(self.source):
            raise RefitError(
                "give a data set (data=KIND, root=DIR) or a source (source=URI, frames=N), one of them"
            )
        if self.data and self.root is None:
            raise RefitError(f"data={self.data}: needs root= (the data set's folder)")
        if self.source and self.frames < 1:
            raise RefitError(f"frames={self.frames}: how many frames of the source to fit on (>= 1)")
        if self.every < 0:
            raise RefitError(f"every={self.every}: seconds between sampled frames, >= 0")
        if self.batch_size < 1:
            raise RefitError(f"batch_size={self.batch_size}: must be >= 1")
        if self.workers < 0:
            raise RefitError(f"workers={self.workers}: must be >= 0")
        if self.tau_mode not in ("joint", "mean"):
            raise RefitError(f"tau_mode={self.tau_mode!r}: choose joint or mean")
        if self.threads is not None and self.threads < 1:
            raise RefitError(f"threads={self.threads}: must be >= 1")


@dataclass
class RefitResult:
    meta: ModelMeta
    """The record written into the output."""
    w: np.ndarray
    taus: np.ndarray
    sums: FeatureSums
    runtime: str
    """What computed the sums (runtime, provider or device, precision)."""
    skipped: list[tuple[Sample, str]] = field(default_factory=list)
    resumed_at: int | None = None
    counts: SourceCount = field(default_factory=SourceCount)
    written: list[Path] = field(default_factory=list)


@dataclass(frozen=True)
class Opened:
    """A model file read for refitting: its record, batch range and graph (onnx or OpenVINO)."""

    path: Path
    meta: ModelMeta
    batch: tuple[int, int | None]
    graph: Any
    kind: str
    engine: Path = Path()
    """The engine file, when the model is one (``path`` is then the ONNX it was built from)."""


def open_model(path: Path, runtime: str) -> Opened:
    """The graph refit edits and runs: the ONNX (an engine's: the one it was built from, beside
    it), or the OpenVINO model when the runtime is OpenVINO."""
    path = Path(path)
    if not path.is_file():
        raise RefitError(f"{path}: no such model file")
    kind = KINDS.get(path.suffix.lower(), "")
    graph_path = path
    if kind == "engine":
        from rpol_edge.core.engine_meta import read_engine_meta

        em = read_engine_meta(path)
        graph_path = path.parent / em.onnx_name if em.onnx_name else Path()
        if not em.onnx_name or not graph_path.is_file():
            raise RefitError(
                f"{path}: the ONNX it was built from ({em.onnx_name or 'not recorded'}) is not beside it; "
                "refit that .onnx and build the engine from the result (rpol-edge export OUT.onnx --trt)"
            )
    info = pick_runtime(graph_path, runtime)
    if info.name == "openvino":
        from rpol_edge.core.ir_meta import ir_batch_range, ir_meta
        from rpol_edge.refitting.ov_graph import ov_modules

        ov, _ = ov_modules()
        try:
            model = ov.Core().read_model(str(graph_path))
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises its own kinds
            raise RefitError(
                f"{graph_path}: OpenVINO could not read it ({str(exc).splitlines()[0]})"
            ) from None
        if graph_path.suffix.lower() == ".xml":
            meta, batch = ir_meta(model, graph_path), ir_batch_range(model)
        else:
            from rpol_edge.core.onnx_meta import read_onnx_header

            meta, batch = read_onnx_header(graph_path)
        return Opened(graph_path, meta, batch, model, kind, path)
    from rpol_edge.core.onnx_meta import read_onnx_header
    from rpol_edge.refitting.onnx_graph import onnx_module

    meta, batch = read_onnx_header(graph_path)
    try:
        model = onnx_module().load(str(graph_path))
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise RefitError(f"{graph_path}: not a readable ONNX file ({exc.__class__.__name__})") from None
    return Opened(graph_path, meta, batch, model, kind, path)


def fit_runner(opened: Opened, req: RefitRequest) -> SumsRunner:
    """The fit graph of ``opened`` on the request's runtime and device."""
    info = pick_runtime(opened.path, req.runtime)
    if info.name == "openvino":
        from rpol_edge.refitting.ov_graph import fit_model

        graph = fit_model(opened.graph, opened.meta, str(opened.path))
    else:
        from rpol_edge.refitting.onnx_graph import fit_graph

        graph = fit_graph(opened.graph, opened.meta, str(opened.path))
    return SumsRunner(
        graph, opened.meta, info, req.device, req.threads, opened.batch, opened.path.parent / "ort_trt_cache"
    )


SAME_FEATURES = ("backbone", "weights_sha256", "input_size", "resize_size", "mean", "std", "output_stride",
                 "channels", "frame_width", "frame_height", "frame_format")  # fmt: skip
"""What two exports must share for one's features to refit the other."""


def check_same_features(a: ModelMeta, b: ModelMeta, source: str) -> None:
    for key in SAME_FEATURES:
        if getattr(a, key) != getattr(b, key):
            raise RefitError(
                f"{source}: its {key} ({getattr(b, key)}) differs from the model's ({getattr(a, key)}); "
                "features_from must be another export of the same model"
            )


def config_hash(req: RefitRequest, model_sha: str, features_sha: str) -> str:
    """Everything that changes the sums or their batch boundaries, so a checkpoint resumes only
    into the same refit."""
    return stable_hash(
        {
            "model_sha256": model_sha,
            "features_sha256": features_sha,
            "data": req.data,
            "root": str(Path(req.root).expanduser().resolve()) if req.root else "",
            "split": req.split,
            "source": req.source,
            "frames": req.frames,
            "every": req.every,
            "batch_size": req.batch_size,
            "runtime": req.runtime,
        }
    )


def refit(
    req: RefitRequest, progress: Progress | None = None, checkpoints: CheckpointOptions | None = None
) -> RefitResult:
    """The whole job; writes ``req.output`` (and, for an engine, its ONNX beside it) atomically.
    With ``checkpoints``, SIGTERM/SIGINT save the sums and stop (`FitStopped`)."""
    req.validate()
    model = open_model(Path(req.model), req.runtime)
    check_refittable(model.meta, str(req.model))
    features = model if req.features_from is None else open_model(Path(req.features_from), req.runtime)
    check_same_features(model.meta, features.meta, str(req.features_from))
    runner = fit_runner(features, req)  # before the data: a bad --device is told at once
    samples: list[Sample] = []
    if req.data:
        samples = read_dataset(req.data, Path(req.root or "."), req.split)
    total = len(samples) if req.data else req.frames
    c = model.meta.channels
    positions = (model.meta.input_size // model.meta.feature_stride) ** 2
    state = FitState(FeatureSums.zeros(c), 0)
    saver: Callable[[FitState], None] | None = None
    resumed_at: int | None = None
    ckpt_file = Path()
    if checkpoints is not None:
        checkpoints.validate()
        ident = Identity(
            config_hash(req, file_sha256(model.path), file_sha256(features.path)),
            sample_list_sha256(samples) if samples else "source",
            1,
            0,
        )
        ckpt_file = checkpoint_path(checkpoints.directory, 0, 1)
        if checkpoints.resume:
            resumed_at = 0
            if ckpt_file.is_file():
                state = load_checkpoint(ckpt_file, ident, state.sums, samples if samples else _Slots(total))
                resumed_at = state.position

        def saver(st: FitState) -> None:
            save_checkpoint(ckpt_file, st, ident)

    counts = SourceCount()
    with runner:
        if req.data:
            chunks: Iterable[Chunk] = data_chunks(
                samples[state.position :], features.meta, req.batch_size, req.workers
            )
        else:
            chunks = source_chunks(
                req.source, features.meta, req.frames, req.every, req.batch_size, state.position,
                req.open_timeout, counts,
            )  # fmt: skip

        def step(chunk: Chunk, st: FitState) -> FitState:
            part = FeatureSums.zeros(c)
            if len(chunk.frames):
                part.add_image_sums(*runner.sums(chunk.frames), positions)
            return FitState(
                st.sums.merge(part), st.position + chunk.consumed, st.skipped + tuple(chunk.skipped)
            )

        stop = StopRequest()
        every = checkpoints.every if checkpoints is not None else 0
        with stop.installed() if saver is not None else nullcontext(stop):
            state = accumulate(_sourced(chunks), state, step, total, progress, saver, every, stop, ckpt_file)

    sums = state.sums
    if int(sums.count.sum()) == 0:
        why = state.skipped[0][1] if state.skipped else "the source gave no frames"
        raise DatasetError(f"no frame could be read ({why})")
    w, taus = solve(sums, req.tau_mode)
    meta = refit_meta(model.meta, w, taus, sums, req, len(state.skipped) + counts.corrupt, runner.description)
    from rpol_edge.refitting.writers import write_model

    written = write_model(model, Path(req.output), meta, w)
    if checkpoints is not None:
        ckpt_file.unlink(missing_ok=True)
        with suppress(OSError):  # not empty: files of another run; leave them
            checkpoints.directory.rmdir()
    return RefitResult(
        meta, w, taus, sums, runner.description, list(state.skipped), resumed_at, counts, written
    )


class _Slots(list):  # type: ignore[type-arg]
    """A stand-in sample list for a source's checkpoint: only its length (the frame budget) counts."""

    def __init__(self, n: int) -> None:
        super().__init__([None] * n)


def _sourced(chunks: Iterable[Chunk]) -> Iterable[Chunk]:
    """A source that cannot be opened or a frame of the wrong size: one line, not a traceback."""
    from rpol_edge.live.sources import SourceError

    try:
        yield from chunks
    except SourceError as exc:
        raise RefitError(str(exc)) from None


def accumulate(
    chunks: Iterable[Chunk],
    state: FitState,
    step: Callable[[Chunk, FitState], FitState],
    total: int,
    progress: Progress | None,
    saver: Callable[[FitState], None] | None,
    every: int,
    stop: StopRequest,
    ckpt_file: Path,
) -> FitState:
    """Fold ``step`` over the chunks; checkpoint every ``every`` frames, on a stop request and on
    any failure (the last whole-chunk state: ``step`` builds a new state, never edits one)."""
    start, since = state.position, 0
    try:
        for chunk in chunks:
            state = step(chunk, state)
            since += chunk.consumed
            if progress:
                progress(state.position, total)
            if stop.requested:
                break
            if saver is not None and every and since >= every:
                saver(state)
                since = 0
    except BaseException:
        if saver is not None and state.position > start:
            saver(state)
        raise
    if saver is not None and stop.requested:
        saver(state)
        name = signal.Signals(stop.signal).name if stop.signal else "signal"
        raise FitStopped(
            f"stopped by {name} after {state.position}/{total} frames; checkpoint {ckpt_file}; "
            "run the same command with --resume to continue",
            stop.signal or signal.SIGTERM,
        )
    return state


def refit_meta(
    old: ModelMeta,
    w: np.ndarray,
    taus: np.ndarray,
    sums: FeatureSums,
    req: RefitRequest,
    n_skipped: int,
    runtime: str,
) -> ModelMeta:
    """The model's record with the fit's fields made anew (tau, w* hash, counts, what it was fitted
    on, when and through what); the graph's own fields (input, pre-processing, opset, precision)
    stay. The operating point is the graph's: its rule is built into the mask ops, and its
    constant is the user's (fixed t, fraction q) or none (sign, otsu); re-validated here."""
    extra = {k: v for k, v in old.extra.items() if not k.startswith("refit_")}
    extra |= {
        "refit_date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "refit_runtime": runtime,
        "refit_from": req.source or f"{req.data}:{Path(req.root or '.').name}/{req.split}",
    }
    if req.features_from is not None:
        extra["refit_features"] = Path(req.features_from).name
    meta = old.replace(
        tau=float(taus[0]),
        tau_mode=req.tau_mode,
        w_sha256=array_sha256(w),
        n_images=int(sums.count.sum()),
        n_skipped=int(n_skipped),
        fit_size=old.input_size,
        fit_resize=old.resize_size,
        fit_data=req.data or "source",
        fit_root="",
        fit_split=req.split if req.data else "",
        sampling_ratio=1.0,
        seed=0,
        extra=extra,
    )
    meta = dataclasses.replace(meta, package_version=_version())
    try:
        meta.validate(str(req.output))
        _ = meta.operating
    except ValueError as exc:
        raise MetadataError(str(exc)) from None
    return meta


def _version() -> str:
    from rpol_edge import __version__

    return __version__
