"""The decoding worker pool: same batches with and without workers, skips counted, Ctrl-C clean."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from rpol_edge.data.loader import iterate_batches
from rpol_edge.data.samples import Sample, no_boxes

SAMPLE = Path(__file__).resolve().parents[2] / "rpol_edge" / "sample"
SAMPLE_IMAGES = sorted((SAMPLE / "JPEGImages").glob("*.jpg"))


def _samples(tmp_path: Path) -> list[Sample]:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    paths = [*SAMPLE_IMAGES[:4], broken, *SAMPLE_IMAGES[4:9]]
    return [Sample(p.stem, p, no_boxes()) for p in paths]


def test_workers_give_the_same_batches_in_order(tmp_path: Path) -> None:
    samples = _samples(tmp_path)
    inline = list(iterate_batches(samples, 80, 64, batch_size=3, workers=0))
    pooled = list(iterate_batches(samples, 80, 64, batch_size=3, workers=2))
    assert len(inline) == len(pooled) == 4
    for a, b in zip(inline, pooled, strict=True):
        assert [s.image_id for s in a.samples] == [s.image_id for s in b.samples]
        assert np.array_equal(a.frames, b.frames) and a.transforms == b.transforms
        assert [(s.image_id, e) for s, e in a.skipped] == [(s.image_id, e) for s, e in b.skipped]
    assert sum(len(b.samples) for b in pooled) == 9
    assert [s.image_id for b in pooled for s, _ in b.skipped] == ["broken"]


def test_ctrl_c_stops_the_pool_without_worker_tracebacks(tmp_path: Path) -> None:
    code = (
        "import signal, sys, time\n"
        # A shell that starts a job in the background (CI may) ignores SIGINT for it, and Python then
        # keeps it ignored: restore the handler a terminal's foreground job has.
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from pathlib import Path\n"
        "from rpol_edge.data.samples import Sample, no_boxes\n"
        "from rpol_edge.data.loader import iterate_batches\n"
        "paths = [Path(p) for p in sys.argv[1:]] * 50\n"
        "samples = [Sample(str(i), p, no_boxes()) for i, p in enumerate(paths)]\n"
        "try:\n"
        "    for b in iterate_batches(samples, 320, 300, batch_size=2, workers=2):\n"
        "        print('batch', flush=True)\n"
        "        time.sleep(0.2)\n"
        "except KeyboardInterrupt:\n"
        "    print('stopped', flush=True)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *map(str, SAMPLE_IMAGES[:4])],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "batch"
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out.strip().endswith("stopped")
    assert err == "", err[-1500:]
    left = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert left == []
