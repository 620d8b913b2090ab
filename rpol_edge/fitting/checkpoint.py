"""Resumable fits: each rank's partial sums and position, saved atomically, refused for another job.

A checkpoint is one ``.npz`` per rank (``rank00001-of-00004.npz``) holding every array of the
running :class:`~rpol_edge.wstar.FeatureSums` (iterated as dataclass fields, so new sums are saved
without an edit here), the number of this rank's samples consumed, and the skipped images. It is
written at a batch boundary, so a resumed run adds the same batches in the same order and ends
with the same w* as an uninterrupted one.

Identity: the hash of everything that changes the sums (data, split, backbone weights, sizes,
batch size, sampling), the hash of the sample list, the world size and the rank. A resume with any
of them different is refused with one line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import numpy as np

from rpol_edge.core.files import atomic_write
from rpol_edge.core.wstar import FeatureSums
from rpol_edge.data import Sample

FORMAT = "rpol-edge-fit-checkpoint-1"


class CheckpointError(ValueError):
    """A checkpoint is missing, damaged, or belongs to another fit."""


class FitStopped(Exception):
    """The fit stopped on a signal after saving its checkpoint; the message says how to resume."""

    def __init__(self, message: str, signum: int = signal.SIGTERM) -> None:
        super().__init__(message)
        self.signum = int(signum)


@dataclass(frozen=True)
class CheckpointOptions:
    directory: Path
    every: int = 0
    """Save after every this many images of the rank's shard (at the next batch boundary); 0: only
    on SIGTERM/SIGINT."""
    resume: bool = False

    def validate(self) -> None:
        if self.every < 0:
            raise ValueError(f"--checkpoint-every {self.every}: must be >= 0 (0 = only on SIGTERM)")
        if self.resume and not self.directory.is_dir():
            raise CheckpointError(f"--resume: checkpoint folder {self.directory} does not exist")


@dataclass(frozen=True)
class Identity:
    config_hash: str
    samples_hash: str
    world_size: int
    rank: int


@dataclass(frozen=True)
class FitState:
    """An immutable snapshot at a batch boundary: replaced whole, never edited, so a signal or an
    exception between two batches always finds a consistent state to save."""

    sums: FeatureSums
    position: int
    """Samples of this rank's shard consumed (read or skipped)."""
    skipped: tuple[tuple[Sample, str], ...] = field(default=())
    """(sample, reason) of every unreadable image so far (saved by image id)."""


class FrameSlots(list):  # type: ignore[type-arg]
    """The sample list a source's checkpoint is loaded against (``fit`` or ``refit`` with
    ``--source``): a source has none, only its length (the frame budget) counts."""

    def __init__(self, n: int) -> None:
        super().__init__([None] * n)


def stable_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def checkpoint_path(directory: Path, rank: int, world_size: int) -> Path:
    return Path(directory) / f"rank{rank:05d}-of-{world_size:05d}.npz"


def check_world(directory: Path, world_size: int) -> None:
    """Refuse a resume into another world size: the files of that run would be silently unused."""
    others = sorted({p.name.split("-of-")[-1][:-4] for p in Path(directory).glob("rank*-of-*.npz")})
    foreign = [w for w in others if w.isdigit() and int(w) != world_size]
    if foreign:
        raise CheckpointError(
            f"{directory}: checkpoints of a {int(foreign[0])}-rank fit; resume with that many ranks "
            f"(this run has {world_size}), or start without --resume"
        )


def save(path: Path, state: FitState, ident: Identity) -> None:
    """Write atomically (temporary file, fsync, rename): a kill leaves the previous checkpoint."""
    arrays: dict[str, np.ndarray] = {
        f"sums.{f.name}": np.asarray(getattr(state.sums, f.name)) for f in dataclasses.fields(state.sums)
    }
    header = {"format": FORMAT, **dataclasses.asdict(ident), "position": state.position}
    arrays["header"] = np.asarray(json.dumps(header))
    arrays["skipped_id"] = np.asarray([s.image_id for s, _ in state.skipped], dtype=np.str_).reshape(-1)
    arrays["skipped_reason"] = np.asarray([r for _, r in state.skipped], dtype=np.str_).reshape(-1)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle
            fh.flush()
            os.fsync(fh.fileno())

    with _signals_deferred():
        atomic_write(path, write)


def load(path: Path, ident: Identity, template: FeatureSums, samples: Sequence[Sample]) -> FitState:
    """The saved state, if it belongs to this exact fit (``ident``); else a one-line error.

    ``template`` gives the sums' fields, shapes and dtypes; ``samples`` is this rank's shard.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(str(z["header"]))
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: not a readable fit checkpoint ({exc.__class__.__name__})") from None
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a fit checkpoint of this rpol-edge version")
    saved = {k: header.get(k) for k in ("config_hash", "samples_hash", "world_size", "rank")}
    wanted = dataclasses.asdict(ident)
    for key, what in (
        ("world_size", "world size"),
        ("rank", "rank"),
        ("config_hash", "fit configuration"),
        ("samples_hash", "sample list"),
    ):
        if saved[key] != wanted[key]:
            raise CheckpointError(
                f"{path}: saved by a fit with another {what} ({str(saved[key])[:12]} vs "
                f"{str(wanted[key])[:12]}); "
                "resume with the same command and world size, or start without --resume"
            )
    values: dict[str, np.ndarray] = {}
    for f in dataclasses.fields(template):
        ref = np.asarray(getattr(template, f.name))
        got = arrays.get(f"sums.{f.name}")
        if got is None or got.shape != ref.shape or got.dtype != ref.dtype:
            raise CheckpointError(f"{path}: running sum {f.name!r} is missing or has another shape")
        values[f.name] = got
    position = int(header["position"])
    if not 0 <= position <= len(samples):
        raise CheckpointError(f"{path}: position {position} is outside this shard of {len(samples)}")
    ids = [str(i) for i in arrays["skipped_id"]]
    by_id = {s.image_id: s for s in samples[:position]} if ids else {}
    if any(i not in by_id for i in ids):
        raise CheckpointError(f"{path}: lists skipped images that are not in this shard")
    skipped = tuple((by_id[i], str(r)) for i, r in zip(ids, arrays["skipped_reason"], strict=True))
    return FitState(dataclasses.replace(template, **values), position, skipped)


class StopRequest:
    """SIGTERM / SIGINT set a flag instead of killing the process; the fit checks it after each
    batch, saves and stops. A second SIGINT interrupts at once (the usual double Ctrl-C)."""

    def __init__(self) -> None:
        self.signal: int | None = None

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum

    @contextmanager
    def installed(self) -> Iterator[StopRequest]:
        import threading

        if threading.current_thread() is not threading.main_thread():
            yield self  # signals reach only the main thread; nothing to install
            return
        old = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield self
        finally:
            for s, h in old.items():
                signal.signal(s, h)


def ignore_stop_signals(worker_id: int = 0) -> None:
    """DataLoader ``worker_init_fn``: decoding workers leave SIGTERM/SIGINT to the main process,
    which finishes its batch, saves and shuts them down (they also exit when it dies)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGTERM/SIGINT/SIGCHLD while a checkpoint is written, so no handler interrupts it."""
    held = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    except (AttributeError, OSError, ValueError):  # not POSIX
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


Item = TypeVar("Item")


def fold_checkpointed(
    items: Iterable[Item],
    state: FitState,
    step: Callable[[Item, FitState], FitState],
    size: Callable[[Item], int],
    progress: Callable[[int, int], None] | None,
    total: int,
    saver: Callable[[FitState], None] | None,
    every: int,
    stop: StopRequest,
) -> FitState:
    """Fold ``step`` over ``items`` (batches of a fit, chunks of a refit): checkpoint every ``every``
    images (``size`` counts an item's), and on any failure the last whole-item state (``step``
    builds a new state, never edits one). Ends early when ``stop`` was requested; what then is
    saved and said is the caller's."""
    start, since = state.position, 0
    try:
        for item in items:
            state = step(item, state)
            since += size(item)
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
    return state
