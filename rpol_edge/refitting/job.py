"""The refit job: read the model, derive its fit graph, stream frames through it on its runtime,
accumulate float64 sums (resumable, as `fit` checkpoints), solve with `fit`'s code, write the model.

Python API: ``rpol_edge.refit("model.onnx", "refit.onnx", data="folder", root="photos/")`` or
``rpol_edge.refit("model.onnx", "refit.onnx", source="rtsp://cam/stream", frames=200, every=2)``.
Opening the model: rpol_edge/refitting/models.py; the resumable sums: rpol_edge/refitting/sums.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from contextlib import nullcontext, suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from rpol_edge.core.files import array_sha256
from rpol_edge.core.metadata import MetadataError, ModelMeta
from rpol_edge.core.scene import background
from rpol_edge.core.wstar import FeatureSums, solve
from rpol_edge.data import DatasetError, Sample, read_dataset
from rpol_edge.fitting.checkpoint import CheckpointOptions, FitState, StopRequest
from rpol_edge.fitting.config import source_record, without_password
from rpol_edge.live.sampling import Chunk, SourceCount, source_chunks
from rpol_edge.refitting.frame_sources import data_chunks, model_framer
from rpol_edge.refitting.models import KINDS, check_same_features, fit_runner, open_model
from rpol_edge.refitting.onnx_graph import RefitError, check_refittable, scene_shape
from rpol_edge.refitting.sums import Progress, accumulate, open_checkpoint


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
    # A scene model (a fixed camera) also refits its per-cell scene (core/scene.py).
    _, _, rows, cols = scene_shape(model.meta)
    grid = (rows, cols) if model.meta.operating_point == "scene" else None
    state = FitState(FeatureSums.zeros(c, grid=grid), 0)
    resume = open_checkpoint(req, checkpoints, model.path, features.path, samples, total, state)
    state = resume.state
    counts = SourceCount()
    with runner:
        chunks = _chunks(req, features.meta, samples, state.position, counts)

        def step(chunk: Chunk, st: FitState) -> FitState:
            part = FeatureSums.zeros(c, grid=grid)
            if len(chunk.frames):
                v, u, norms, cells = runner.sums(chunk.frames)
                part.add_image_sums(v, u, norms, positions)
                if cells is not None:
                    part.add_cell_sums(cells)
            return FitState(
                st.sums.merge(part), st.position + chunk.consumed, st.skipped + tuple(chunk.skipped)
            )

        stop = StopRequest()
        every = checkpoints.every if checkpoints is not None else 0
        with stop.installed() if resume.saver is not None else nullcontext(stop):
            state = accumulate(
                chunks, state, step, total, progress, resume.saver, every, stop, resume.ckpt_file
            )

    sums = state.sums
    if int(sums.count.sum()) == 0:
        why = state.skipped[0][1] if state.skipped else "the source gave no frames"
        raise DatasetError(f"no frame could be read ({why})")
    w, taus = solve(sums, req.tau_mode)
    meta = refit_meta(model.meta, w, taus, sums, req, len(state.skipped) + counts.corrupt, runner.description)
    from rpol_edge.refitting.writers import write_model

    # A scene model's graph holds its scene, not w* (modeling/localizer.py): that is what changes.
    written = write_model(model, Path(req.output), meta, background(sums.cells) if grid else w)
    if checkpoints is not None:
        resume.ckpt_file.unlink(missing_ok=True)
        with suppress(OSError):  # not empty: files of another run; leave them
            checkpoints.directory.rmdir()
    return RefitResult(
        meta, w, taus, sums, runner.description, list(state.skipped), resume.resumed_at, counts, written
    )


def _chunks(
    req: RefitRequest, meta: ModelMeta, samples: list[Sample], position: int, counts: SourceCount
) -> Iterable[Chunk]:
    """The frames to fit on from ``position`` on: the data set's, or the source's (counted)."""
    if req.data:
        return data_chunks(samples[position:], meta, req.batch_size, req.workers)
    framer = model_framer(meta)
    return source_chunks(
        req.source, framer, req.frames, req.every, req.batch_size, position, req.open_timeout, counts
    )


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
    stale = ("refit_", "fit_frames", "fit_every")  # an earlier refit's, a source fit's
    extra = {k: v for k, v in old.extra.items() if not k.startswith(stale)}
    extra |= source_record(req.source, req.frames, req.every)
    extra |= {
        "refit_date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "refit_runtime": runtime,
        "refit_from": without_password(req.source) or f"{req.data}:{Path(req.root or '.').name}/{req.split}",
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
