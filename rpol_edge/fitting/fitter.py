"""Fitting w*: stream a data set or a source's frames through the frozen backbone, keep float64 sums,
solve in closed form."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from rpol_edge.backbones.timm_backbone import Backbone, BackboneSpec, build_backbone
from rpol_edge.core.artifact import ModelArtifact
from rpol_edge.core.files import array_sha256
from rpol_edge.core.metadata import DEFAULT_BOXES, SCENE_BOXES, ModelMeta
from rpol_edge.core.scene import response_stats
from rpol_edge.core.wstar import FeatureSums, solve
from rpol_edge.data import DatasetError, Sample, sample_list_sha256
from rpol_edge.data.loader import Batch
from rpol_edge.fitting.cell_stats import response_sums
from rpol_edge.fitting.checkpoint import (
    CheckpointOptions,
    FitState,
    FitStopped,
    FrameSlots,
    Identity,
    StopRequest,
    check_world,
    checkpoint_path,
    fold_checkpointed,
    ignore_stop_signals,
    stable_hash,
)
from rpol_edge.fitting.checkpoint import load as load_checkpoint
from rpol_edge.fitting.checkpoint import save as save_checkpoint
from rpol_edge.fitting.config import FitConfig, default_resize, source_record
from rpol_edge.fitting.distributed import (
    SINGLE,
    DistContext,
    all_reduce_fields,
    all_reduce_ints,
    barrier,
    gather_examples,
    launched_by_torchrun,
    process_group,
    rank_device,
    shard,
)
from rpol_edge.fitting.inputs import (
    SourceReader,
    check_source_run,
    fit_batches,
    fit_samples,
    nothing_read,
    recorded_root,
)
from rpol_edge.modeling.feature_sums import add_features
from rpol_edge.modeling.localizer import Localizer
from rpol_edge.runtimes import RUNTIMES, resolve_device

Progress = Callable[[int, int], None]
"""Called with (images done, images total)."""


@dataclass
class FitResult:
    artifact: ModelArtifact
    skipped: list[tuple[Sample, str]] = field(default_factory=list)
    resumed_at: int | None = None
    """With ``--resume``: images of this rank's shard the checkpoint had done (0: none found)."""


def class_index(samples: list[Sample]) -> dict[int, int]:
    labels = sorted({s.label for s in samples if s.label is not None})
    if not labels or any(s.label is None for s in samples):
        raise DatasetError("--classwise needs a class label for every image (cub or wsol data)")
    return {lab: i for i, lab in enumerate(labels)}


def check_grid(size: int, stride: int, name: str) -> None:
    """A size the backbone maps to a whole grid of at least 2 x 2 cells: 33 would give one cell
    (a constant map, always the whole crop or nothing) and a partial cell the convolutions pad."""
    if size % stride or size // stride < 2:
        lo = 2 * stride
        near = max(lo, round(size / stride) * stride)
        raise ValueError(
            f"{name}={size}: the backbone's stride is {stride}, so use a multiple of {stride} "
            f"of at least {lo} (e.g. {near})"
        )


def fit_device(cfg: FitConfig) -> str:
    """The device the fit computes on (``auto`` resolved by the runtimes' one rule)."""
    return resolve_device(RUNTIMES["torch"], cfg.device)


def config_hash(cfg: FitConfig, weights_sha256: str, fit_size: int, fit_resize: int) -> str:
    """Hash of everything that changes the running sums or their batch boundaries (not the head,
    threshold, workers or device), so a checkpoint is resumed only into the same sums."""
    source = {"source": cfg.source, "frames": cfg.frames, "every": cfg.every} if cfg.source else {}
    return stable_hash(
        {
            **source,
            "data": cfg.kind,
            "root": str(Path(cfg.root).expanduser().resolve()) if cfg.root is not None else "",
            "split": "" if cfg.source else cfg.data_split,
            "backbone": cfg.backbone,
            "weights_sha256": weights_sha256,
            "output_stride": cfg.output_stride,
            "fit_size": fit_size,
            "fit_resize": fit_resize,
            "classwise": cfg.classwise,
            "sampling_ratio": cfg.sampling_ratio,
            "seed": cfg.seed,
            "batch_size": cfg.batch_size,
        }
    )


def fit(
    cfg: FitConfig,
    progress: Progress | None = None,
    *,
    ctx: DistContext = SINGLE,
    checkpoints: CheckpointOptions | None = None,
    reader: SourceReader | None = None,
) -> FitResult:
    """Stream the data set (or, with ``cfg.source``, ``reader``'s frames) through the frozen
    backbone and solve w* in closed form.

    In a torchrun job (``ctx`` from :func:`rpol_edge.distributed.process_group`) this rank streams
    its contiguous shard and the sums are all-reduced, so every rank returns the same artifact
    (rank 0 writes it: :func:`fit_to_file`); ``result.skipped`` then holds examples from every
    rank and the artifact's ``n_skipped`` the total. ``progress`` counts this rank's shard.
    With ``checkpoints``, SIGTERM/SIGINT save this rank's sums and stop (:class:`FitStopped`).
    """
    cfg.validate()
    samples = fit_samples(cfg, ctx.enabled, reader)
    classes = class_index(samples) if cfg.classwise else {}
    n_heads = max(1, len(classes))
    resize, fit_size, fit_resize = _fit_sizes(cfg)

    spec = BackboneSpec(cfg.backbone, str(cfg.weights or ""), cfg.output_stride)
    bb = build_backbone(spec, cfg.input_size)
    check_grid(cfg.input_size, bb.stride, "input_size")
    if fit_size != cfg.input_size:
        check_grid(fit_size, bb.stride, "fit_size")
    device = torch.device(rank_device(fit_device(cfg), ctx))
    # A Localizer with an empty head gives the one shared normalization path.
    extractor = Localizer(bb.module, torch.zeros(1, bb.channels), bb.mean, bb.std, fit_size, 0.5).to(device)

    mine = FrameSlots(cfg.frames) if cfg.source else shard(samples, ctx, unit=cfg.batch_size)
    # A scene fit (fixed camera) also keeps per-cell sums at the inference grid (core/scene.py).
    grid_of = (cfg.input_size // bb.stride,) * 2
    grid = grid_of if cfg.rule == "scene" else None
    state = FitState(FeatureSums.zeros(bb.channels, n_heads, grid), 0)
    state, saver, resumed_at, ckpt_file = _checkpointing(
        cfg, checkpoints, ctx, bb.weights_sha256, (fit_size, fit_resize), samples, mine, state
    )

    def step(batch: Batch, st: FitState) -> FitState:
        part = FeatureSums.zeros(bb.channels, n_heads, grid)
        if len(batch.frames):
            f = extractor.features(torch.from_numpy(batch.frames).to(device))
            heads = torch.tensor([classes[s.label] for s in batch.samples]) if classes else None  # type: ignore[index]
            add_features(part, f, heads)
        done = len(batch.frames) + len(batch.skipped)
        return FitState(st.sums.merge(part), st.position + done, st.skipped + tuple(batch.skipped))

    # Workers ignore SIGTERM/SIGINT only when this process handles them (saves, then shuts them
    # down); otherwise a group-wide SIGTERM must end them as it ends the main process.
    worker_init = ignore_stop_signals if saver is not None else None
    batches = fit_batches(cfg, reader, mine, state.position, (fit_resize, fit_size), worker_init)
    stop = StopRequest()
    every = checkpoints.every if checkpoints is not None else 0
    unit = "frames of the source" if cfg.source else "images of its shard"
    with stop.installed() if saver is not None else nullcontext(stop):
        state = stream(batches, state, step, len(mine), progress, saver, every, stop, ckpt_file, ctx, unit)

    sums = all_reduce_fields(state.sums, ctx)
    corrupt = reader.corrupt if reader is not None and cfg.source else 0  # a source's undecodable frames
    n_skipped = all_reduce_ints([len(state.skipped)], ctx)[0] + corrupt
    skipped = gather_examples(list(state.skipped), ctx)
    if int(sums.count.sum()) == 0:
        raise nothing_read(cfg, len(samples), skipped)
    artifact = _artifact(cfg, bb, sums, classes, (resize, fit_size, fit_resize), n_skipped)
    if cfg.rule == "zscore":  # its cell statistics need w*: a second pass over the same shard
        cell = response_sums(
            extractor,
            artifact.w,
            mine,
            grid_of,
            (fit_resize, fit_size),
            cfg.batch_size,
            cfg.workers,
            progress,
        )
        artifact.zstats = np.stack(response_stats(all_reduce_fields(cell, ctx)))
    return FitResult(artifact, skipped, resumed_at)


def _fit_sizes(cfg: FitConfig) -> tuple[int, int, int]:
    """(resize, fit_size, fit_resize): how inference frames and the fit's training images are framed."""
    resize = cfg.resize_size or default_resize(cfg.input_size)
    if cfg.reference_fit:
        fit_size, fit_resize = 224, 224
    else:
        fit_size = cfg.fit_size or cfg.input_size
        fit_resize = cfg.fit_resize or (resize if fit_size == cfg.input_size else default_resize(fit_size))
    return resize, fit_size, fit_resize


def _checkpointing(
    cfg: FitConfig,
    checkpoints: CheckpointOptions | None,
    ctx: DistContext,
    weights_sha256: str,
    frame: tuple[int, int],
    samples: list[Sample],
    mine: Sequence[Sample],
    state: FitState,
) -> tuple[FitState, Callable[[FitState], None] | None, int | None, Path]:
    """(the state to start from, the saver, the resumed position, this rank's checkpoint file):
    with ``checkpoints.resume`` the state a checkpoint of this very fit recorded, else ``state``."""
    fit_size, fit_resize = frame
    saver: Callable[[FitState], None] | None = None
    resumed_at: int | None = None
    ckpt_file = Path()
    if checkpoints is not None:
        checkpoints.validate()
        ident = Identity(
            config_hash(cfg, weights_sha256, fit_size, fit_resize),
            sample_list_sha256(samples) if samples else "source",
            ctx.world_size,
            ctx.rank,
        )
        ckpt_file = checkpoint_path(checkpoints.directory, ctx.rank, ctx.world_size)
        if checkpoints.resume:
            check_world(checkpoints.directory, ctx.world_size)
            resumed_at = 0
            if ckpt_file.is_file():
                state = load_checkpoint(ckpt_file, ident, state.sums, mine)
                resumed_at = state.position

        def saver(st: FitState) -> None:
            save_checkpoint(ckpt_file, st, ident)

    return state, saver, resumed_at, ckpt_file


def _artifact(
    cfg: FitConfig,
    bb: Backbone,
    sums: FeatureSums,
    classes: dict[int, int],
    sizes: tuple[int, int, int],
    n_skipped: int,
) -> ModelArtifact:
    """Solve w* from the all-reduced sums and record the fit."""
    resize, fit_size, fit_resize = sizes
    if cfg.head == "caam":
        w = np.full((1, bb.channels), 1.0 / np.sqrt(bb.channels))
        taus = np.zeros(1)
    else:
        w, taus = solve(sums, cfg.tau_mode)
    extra = {"weights": str(Path(cfg.weights).expanduser().resolve())} if cfg.weights else {}
    if classes:
        extra["classes"] = ",".join(str(c) for c in classes)
    extra |= source_record(cfg.source, cfg.frames, cfg.every)
    # Recorded so `info` shows it and every export carries it; a fixed camera's objects are small
    # and the scene's changes (light, a door) can be wide: its box is the strongest region's.
    extra["boxes"] = SCENE_BOXES if cfg.rule == "scene" else DEFAULT_BOXES
    meta = ModelMeta(
        backbone=cfg.backbone,
        weights_sha256=bb.weights_sha256,
        input_size=cfg.input_size,
        resize_size=resize,
        mean=bb.mean,
        std=bb.std,
        feature_stride=bb.stride,
        channels=bb.channels,
        output_stride=cfg.output_stride,
        head=cfg.head,
        n_heads=int(w.shape[0]),
        tau=float(taus[0]),
        threshold={"scene": cfg.scene_level, "zscore": cfg.zscore_level}.get(cfg.rule, cfg.threshold),
        operating_point=cfg.rule,
        fraction=cfg.fraction if cfg.rule == "fraction" else 0.0,
        w_sha256=array_sha256(w),
        n_images=int(sums.count.sum()),
        n_skipped=n_skipped,
        fit_size=fit_size,
        fit_resize=fit_resize,
        tau_mode=cfg.tau_mode,
        fit_data=cfg.kind,
        fit_root=recorded_root(cfg),
        fit_split="" if cfg.source else cfg.data_split,
        sampling_ratio=cfg.sampling_ratio,
        seed=cfg.seed,
        extra=extra,
    )
    meta.validate()
    cells = sums.cells if cfg.rule == "scene" else None
    return ModelArtifact(meta, w, sums.v_sum, sums.u_sum, sums.count, taus, cells)


def stream(
    batches: Iterable[Batch],
    state: FitState,
    step: Callable[[Batch, FitState], FitState],
    total: int,
    progress: Progress | None,
    saver: Callable[[FitState], None] | None,
    every: int,
    stop: StopRequest,
    ckpt_file: Path,
    ctx: DistContext,
    unit: str = "images of its shard",
) -> FitState:
    """Fold ``step`` over the batches (`fold_checkpointed`); checkpoint also at the shard's end and
    on a stop request (the message counts ``unit``)."""
    if progress and state.position == 0:
        progress(0, total)  # the backbone is loaded: the work (and the progress rate's clock) starts
    with torch.inference_mode():
        state = fold_checkpointed(
            batches,
            state,
            step,
            lambda b: len(b.frames) + len(b.skipped),
            progress,
            total,
            saver,
            every,
            stop,
        )
    if saver is not None:  # also at the shard's end: a stop while waiting for the others loses nothing
        saver(state)
    if stop.requested:
        name = signal.Signals(stop.signal).name if stop.signal else "signal"
        who = f"{ctx.label}: " if ctx.enabled else ""
        raise FitStopped(
            f"{who}stopped by {name} after {state.position}/{total} {unit}; "
            f"checkpoint {ckpt_file}; run the same command with --resume to continue",
            stop.signal or signal.SIGTERM,
        )
    return state


def fit_to_file(
    cfg: FitConfig,
    output: Path,
    checkpoints: CheckpointOptions | None = None,
    progress_for: Callable[[DistContext], AbstractContextManager[Progress]] | None = None,
    reader: SourceReader | None = None,
) -> tuple[FitResult, DistContext]:
    """The whole fit job, in one process or as one rank of a torchrun job (``cfg.source``, read
    through ``reader``: one process only).

    Joins the process group, fits (``progress_for(ctx)`` gives this rank's progress callback),
    rank 0 writes the model file atomically while the others wait at a barrier; then each rank
    removes its checkpoint, which is no longer needed.
    """
    check_source_run(cfg, launched_by_torchrun())  # before the process group: one line, no hang
    with process_group(fit_device(cfg)) as ctx:
        with progress_for(ctx) if progress_for else nullcontext(None) as update:
            result = fit(cfg, update, ctx=ctx, checkpoints=checkpoints, reader=reader)
        if ctx.is_main:
            result.artifact.save(output)
        barrier(ctx)
        if checkpoints is not None:
            checkpoint_path(checkpoints.directory, ctx.rank, ctx.world_size).unlink(missing_ok=True)
            barrier(ctx)
            if ctx.is_main:
                with suppress(OSError):  # not empty: files of another run; leave them
                    checkpoints.directory.rmdir()
    return result, ctx
