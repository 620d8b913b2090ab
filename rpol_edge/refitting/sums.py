"""Streaming a refit's frames into float64 sums, resumable as `fit`'s checkpoints are: the
checkpoint's identity (what changes the sums), opening or resuming it, and the fold that saves it
every N frames, on SIGTERM/SIGINT and on any failure."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rpol_edge.core.files import file_sha256
from rpol_edge.data import Sample, sample_list_sha256
from rpol_edge.fitting.checkpoint import (
    CheckpointOptions,
    FitState,
    FitStopped,
    FrameSlots,
    Identity,
    StopRequest,
    checkpoint_path,
    fold_checkpointed,
    stable_hash,
)
from rpol_edge.fitting.checkpoint import load as load_checkpoint
from rpol_edge.fitting.checkpoint import save as save_checkpoint
from rpol_edge.live.sampling import Chunk

if TYPE_CHECKING:
    from rpol_edge.refitting.job import RefitRequest

Progress = Callable[[int, int], None]
"""Called with (frames done, frames total)."""


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


@dataclass
class Resume:
    """Where the sums start and how they are saved: the state, the saver (None without
    checkpoints), the position resumed at (None without --resume) and the checkpoint file."""

    state: FitState
    saver: Callable[[FitState], None] | None = None
    resumed_at: int | None = None
    ckpt_file: Path = Path()


def open_checkpoint(
    req: RefitRequest,
    checkpoints: CheckpointOptions | None,
    model_path: Path,
    features_path: Path,
    samples: list[Sample],
    total: int,
    state: FitState,
) -> Resume:
    """With ``checkpoints.resume``, the state a checkpoint of this very refit recorded."""
    if checkpoints is None:
        return Resume(state)
    checkpoints.validate()
    ident = Identity(
        config_hash(req, file_sha256(model_path), file_sha256(features_path)),
        sample_list_sha256(samples) if samples else "source",
        1,
        0,
    )
    ckpt_file = checkpoint_path(checkpoints.directory, 0, 1)
    resumed_at: int | None = None
    if checkpoints.resume:
        resumed_at = 0
        if ckpt_file.is_file():
            state = load_checkpoint(ckpt_file, ident, state.sums, samples if samples else FrameSlots(total))
            resumed_at = state.position

    def saver(st: FitState) -> None:
        save_checkpoint(ckpt_file, st, ident)

    return Resume(state, saver, resumed_at, ckpt_file)


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
    """Fold ``step`` over the chunks (`fold_checkpointed`); checkpoint also on a stop request."""
    state = fold_checkpointed(chunks, state, step, lambda c: c.consumed, progress, total, saver, every, stop)
    if saver is not None and stop.requested:
        saver(state)
        name = signal.Signals(stop.signal).name if stop.signal else "signal"
        raise FitStopped(
            f"stopped by {name} after {state.position}/{total} frames; checkpoint {ckpt_file}; "
            "run the same command with --resume to continue",
            stop.signal or signal.SIGTERM,
        )
    return state
