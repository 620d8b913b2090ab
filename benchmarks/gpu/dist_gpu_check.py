"""GPU check of the distributed fit (NCCL): torchrun ranks on CUDA against one CUDA process.

Fits the bundled sample at input 224 on CUDA in one plain process, then under torchrun with one
rank (NCCL process group of one: the collectives, device pinning and rank-0 write all run) and,
when the machine has two or more GPUs, with two ranks; compares w* and tau. Then sharded eval on
CUDA against one process. Prints one JSON record (and writes it to ``--out``).

    python -m benchmarks.gpu.dist_gpu_check --out benchmarks/results/dist_gpu_check.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from rpol_edge.core.files import write_text_atomic

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "rpol_edge" / "sample"


def run(cmd: list[str]) -> str:
    # Keep what the caller had on PYTHONPATH (a carried weights package on a lent GPU machine).
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{out.stderr[-3000:]}")
    return out.stdout + out.stderr


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    from rpol_edge.core.artifact import ModelArtifact

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device")
    fit = ["fit", "--data", "voc", "--root", str(SAMPLE), "--split", "train", "--input-size", "224",
           "--batch-size", "8", "--device", "cuda"]  # fmt: skip
    ev = ["--data", "voc", "--root", str(SAMPLE), "--split", "test", "--batch-size", "4", "--device", "cuda"]
    record: dict[str, object] = {"gpu": torch.cuda.get_device_name(0), "gpus": torch.cuda.device_count()}
    with tempfile.TemporaryDirectory() as tmp:
        one = Path(tmp) / "one.rpol"
        run([sys.executable, "-m", "rpol_edge", *fit, "-o", str(one)])
        ref = ModelArtifact.load(one)
        for n in [1, 2] if torch.cuda.device_count() >= 2 else [1]:
            path = Path(tmp) / f"ranks{n}.rpol"
            log = run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}",
                       "-m", "rpol_edge", *fit, "-o", str(path)])  # fmt: skip
            got = ModelArtifact.load(path)
            record[f"fit_ranks{n}"] = {
                "tau_rel_err": abs(got.meta.tau - ref.meta.tau) / ref.meta.tau,
                "w_rel_err": float(np.linalg.norm(got.w - ref.w) / np.linalg.norm(ref.w)),
                "n_images": got.meta.n_images,
                "printed": [line for line in log.splitlines() if "wrote" in line or "rank" in line][-3:],
            }
        js1, js2 = Path(tmp) / "e1.json", Path(tmp) / "e2.json"
        run([sys.executable, "-m", "rpol_edge", "eval", str(one), *ev, "--json", str(js1)])
        n = min(2, torch.cuda.device_count())
        run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}",
             "-m", "rpol_edge", "eval", str(one), *ev, "--json", str(js2)])  # fmt: skip
        m1, m2 = json.loads(js1.read_text()), json.loads(js2.read_text())
        keys = ("n_images", "gt_known_loc", "maxboxacc", "maxboxacc_v2", "maxboxacc_v2_rpol")
        record[f"eval_ranks{n}_same"] = all(m1[k] == m2[k] for k in keys)
        record["eval"] = {k: (m1[k], m2[k]) for k in keys}
    line = json.dumps(record)
    print(line)
    if a.out:
        write_text_atomic(a.out, line + "\n")


if __name__ == "__main__":
    main()
