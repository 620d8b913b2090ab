"""Distributed fit/eval with real gloo processes (torchrun), checkpoints, SIGKILL/SIGTERM + resume.

References are computed in this process with one torch thread: torchrun starts each rank with
OMP_NUM_THREADS=1, and CPU kernels may round a batch differently with another thread count, so
the comparison is of the sharding and the reduction, not of float32 kernel scheduling.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from rpol_edge.core.artifact import ModelArtifact
from rpol_edge.core.wstar import FeatureSums
from rpol_edge.evaluate.evaluation import evaluate
from rpol_edge.fitting.checkpoint import (
    CheckpointError,
    CheckpointOptions,
    FitState,
    Identity,
    check_world,
    checkpoint_path,
    load,
    save,
)
from rpol_edge.fitting.distributed import SINGLE, all_reduce_fields, shard_bounds
from rpol_edge.fitting.fitter import FitConfig, fit
from rpol_edge.runtimes import open_runtime
from tests.conftest import SAMPLE

REPO = Path(__file__).resolve().parents[2]
SIZE = ["--input-size", "64", "--batch-size", "8", "--workers", "0"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def torchrun(nproc: int, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={nproc}",
        "--master-addr=127.0.0.1",
        f"--master-port={free_port()}",
        "-m",
        "rpol_edge",
        *args,
    ]


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (torchrun starts each rank in a session of its own)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += parents.get(p, [])
    return tree


def voc_tree(dst: Path, ids: list[str]) -> Path:
    """A VOC tree of symlinks to the bundled sample listing ``ids`` as split ``s``; an id written
    ``name~k`` is a k-th distinct copy of ``name`` (the reader refuses duplicate ids)."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (dst / sub).mkdir(parents=True, exist_ok=True)
    for i in ids:
        base = i.split("~")[0]
        for sub, ext in (("Annotations", ".xml"), ("JPEGImages", ".jpg")):
            link = dst / sub / f"{i}{ext}"
            if not link.exists():
                link.symlink_to(SAMPLE / sub / f"{base}{ext}")
    (dst / "ImageSets/Main/s.txt").write_text("\n".join(ids) + "\n")
    return dst


def sample_ids() -> list[str]:
    main = SAMPLE / "ImageSets" / "Main"
    return [line for s in ("train", "test") for line in (main / f"{s}.txt").read_text().split()]


@pytest.fixture(scope="module")
def repeated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ModelArtifact]:
    """The 40 sample photos listed 5 times (200 images) and their one-process, one-thread fit."""
    root = voc_tree(tmp_path_factory.mktemp("rep"), [f"{i}~{k}" for k in range(5) for i in sample_ids()])
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return root, reference(root)
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def reference(root: Path) -> ModelArtifact:
    return fit(FitConfig("voc", root, "s", input_size=64, batch_size=8, workers=0)).artifact


def assert_same_fit(a: ModelArtifact, b: ModelArtifact) -> None:
    assert a.meta.n_images == b.meta.n_images
    assert abs(a.meta.tau - b.meta.tau) / a.meta.tau < 1e-9
    assert np.linalg.norm(a.w - b.w) / np.linalg.norm(a.w) < 1e-9
    np.testing.assert_array_equal(a.count, b.count)


def test_shards_cover_every_item_once() -> None:
    for n in (0, 1, 7, 27, 41, 100):
        for world in (1, 2, 3, 5):
            for unit in (1, 4, 8):
                parts = [shard_bounds(n, r, world, unit) for r in range(world)]
                assert parts[0][0] == 0 and parts[-1][1] == n
                assert all(a[1] == b[0] for a, b in zip(parts, parts[1:], strict=False))
                assert all(s % unit == 0 or s == n for s, _ in parts)  # whole batches
                sizes = [e - s for s, e in parts]
                assert max(sizes) - min(sizes) <= unit
    with pytest.raises(ValueError):
        shard_bounds(10, 2, 2)


def test_reduce_and_path_table_outside_a_job() -> None:
    sums = FeatureSums.zeros(3, 2)
    sums.v_sum[1, 2] = 5.0
    reduced = all_reduce_fields(sums, SINGLE)
    assert reduced is not sums and reduced.v_sum[1, 2] == 5.0


def test_checkpoint_round_trip_and_refusals(tmp_path: Path) -> None:
    sums = FeatureSums.zeros(4, 1)
    sums.u_sum += 0.25
    sums.count += 3
    ident = Identity("cfg", "list", 2, 1)
    path = tmp_path / "c.npz"
    from rpol_edge.data import read_dataset

    shard = read_dataset("voc", SAMPLE, "test")
    save(path, FitState(sums, 8, ((shard[2], "truncated file"),)), ident)
    back = load(path, ident, FeatureSums.zeros(4, 1), shard)
    assert back.position == 8 and back.skipped == ((shard[2], "truncated file"),)
    np.testing.assert_array_equal(back.sums.u_sum, sums.u_sum)
    np.testing.assert_array_equal(back.sums.count, sums.count)
    assert not list(tmp_path.glob("*.tmp"))  # atomic: no temporary left behind
    for other, word in (
        (Identity("other", "list", 2, 1), "fit configuration"),
        (Identity("cfg", "other", 2, 1), "sample list"),
        (Identity("cfg", "list", 4, 1), "world size"),
        (Identity("cfg", "list", 2, 0), "rank"),
    ):
        with pytest.raises(CheckpointError, match=word):
            load(path, other, FeatureSums.zeros(4, 1), shard)
    with pytest.raises(CheckpointError, match="shape"):
        load(path, ident, FeatureSums.zeros(5, 1), shard)
    with pytest.raises(CheckpointError, match="outside this shard"):
        load(path, ident, FeatureSums.zeros(4, 1), shard[:4])
    (tmp_path / "junk.npz").write_bytes(b"PK junk")
    with pytest.raises(CheckpointError, match="not a readable"):
        load(tmp_path / "junk.npz", ident, FeatureSums.zeros(4, 1), shard)
    with pytest.raises(CheckpointError, match="does not exist"):
        CheckpointOptions(tmp_path / "nowhere", resume=True).validate()
    save(checkpoint_path(tmp_path, 1, 2), FitState(sums, 8), ident)
    check_world(tmp_path, 2)
    with pytest.raises(CheckpointError, match="2-rank fit"):  # its files would be silently unused
        check_world(tmp_path, 4)


def test_two_gloo_ranks_match_one_process_on_an_uneven_split(tmp_path: Path, one_thread: None) -> None:
    root = voc_tree(tmp_path / "voc", sample_ids()[:27])  # batches of 8: ranks get 16 and 11
    out = tmp_path / "two.rpol"
    run = subprocess.run(
        torchrun(2, "fit", "--data", "voc", "--root", str(root), "--split", "s", "-o", str(out), *SIZE),
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "fit rank 1/2: 11/11 images" in run.stderr and "ranks=2" in run.stdout
    assert not (tmp_path / "two.rpol.ckpt").exists()  # checkpoints removed after the write
    assert_same_fit(reference(root), ModelArtifact.load(out))


def test_sigkill_mid_fit_then_resume_gives_the_same_w(
    tmp_path: Path, repeated: tuple[Path, ModelArtifact]
) -> None:
    root, ref = repeated
    out, ckpt = tmp_path / "m.rpol", tmp_path / "ckpt"
    cmd = torchrun(
        2, "fit", "--data", "voc", "--root", str(root), "--split", "s", "-o", str(out), *SIZE,
        "--checkpoint-every", "8", "--checkpoint-dir", str(ckpt),
    )  # fmt: skip
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not (ckpt / "rank00000-of-00002.npz").exists() and proc.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    for pid in process_tree(proc.pid):  # torchrun, both ranks, their loaders: a machine lost
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists(), "the fit ended before the kill; the test needs it interrupted"
    positions = {p.name: json.loads(str(np.load(p)["header"]))["position"] for p in ckpt.glob("*.npz")}
    assert positions and all(0 < pos < 100 for pos in positions.values()), positions
    resumed = subprocess.run(cmd + ["--resume"], env=env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[:3000]
    assert "rank 0/2: resumed at image" in resumed.stderr
    assert_same_fit(ref, ModelArtifact.load(out))


def test_sigterm_saves_and_a_changed_resume_is_refused(
    tmp_path: Path, repeated: tuple[Path, ModelArtifact], one_thread: None
) -> None:
    root, ref = repeated
    out = tmp_path / "m.rpol"
    cmd = [sys.executable, "-m", "rpol_edge", "fit", "--data", "voc", "--root", str(root), "--split", "s",
           "-o", str(out), "--input-size", "64", "--workers", "1", "--batch-size", "8"]  # fmt: skip
    ckpt = tmp_path / "m.rpol.ckpt"  # the default folder, beside the output
    proc = subprocess.Popen(cmd + ["--checkpoint-every", "8"], env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 240
    while not (ckpt / "rank00000-of-00001.npz").exists() and proc.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGTERM)  # like a scheduler: the whole group, decoding worker too
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "stopped by SIGTERM" in stderr and "--resume" in stderr
    assert (ckpt / "rank00000-of-00001.npz").is_file() and not out.exists()
    cfg = FitConfig("voc", root, "s", input_size=64, batch_size=8, workers=0)
    with pytest.raises(CheckpointError, match="another fit configuration"):  # batch boundaries differ
        fit(replace(cfg, batch_size=4), checkpoints=CheckpointOptions(ckpt, resume=True))
    res = fit(cfg, checkpoints=CheckpointOptions(ckpt, resume=True))
    assert res.resumed_at is not None and 0 < res.resumed_at < 200
    assert_same_fit(ref, res.artifact)


def test_sharded_eval_equals_one_process(sample_model: Path, tmp_path: Path, one_thread: None) -> None:
    """12 test photos in batches of 8 over 2 ranks (8 + 4): same integer counters, same metrics."""
    js = tmp_path / "r.json"
    args = ["eval", str(sample_model), "--data", "voc", "--root", str(SAMPLE), "--split", "test",
            "--json", str(js), "--batch-size", "8", "--workers", "0"]  # fmt: skip
    run = subprocess.run(torchrun(2, *args), env=env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    sharded = json.loads(js.read_text())
    with open_runtime(sample_model, "torch", device="cpu") as rt:
        single = evaluate(rt, "voc", SAMPLE, "test", batch_size=8, workers=0).metrics
    assert sharded["n_images"] == 12
    for key, value in single.items():
        assert sharded[key] == value, key
