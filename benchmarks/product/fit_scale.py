"""Fit memory and throughput at scale: peak RSS over N vs 10N images, fit images/s vs bare forward.

Builds a temporary VOC tree of symlinks that lists every photo of ``--root`` once (N images) and
ten times (10N, distinct ids: the VOC reader refuses duplicates), then, each in a fresh process so
that nothing is shared between measurements (and PyTorch's spinning threads of one run do not slow
the next):

* ``fit`` over N and over 10N images (default backbone, input 448, batch 16, 2 decoding workers):
  peak RSS of the fitting process (VmHWM) and of its largest decoding worker, and
  steady-state images/s (from the first finished batch to the last, so start-up is excluded);
* the bare backbone's forward on a ready float batch of the same size, images/s.

Prints one JSON record and appends it to ``--out``. This machine is shared: absolute numbers move
by +-20 % between runs; the ratios, measured in the same run, are what the record is for.

    python -m benchmarks.product.fit_scale --root ../shared/data/raccoon \
        --out benchmarks/results/fit_scale.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.launch import module_command, repo_env
from rpol_edge.bench.stats import peak_rss_mb


def repeated_tree(src: Path, dst: Path, repeats: int) -> tuple[Path, int]:
    """``dst``: a VOC tree whose split ``all`` lists every image of ``src`` ``repeats`` times."""
    main = src / "ImageSets" / "Main"
    ids = [i for split in sorted(main.glob("*.txt")) for i in split.read_text().split()]
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (dst / sub).mkdir(parents=True, exist_ok=True)
    listed = []
    for r in range(repeats):
        for i in ids:
            name = f"{i}__r{r}"
            (dst / "Annotations" / f"{name}.xml").symlink_to((src / "Annotations" / f"{i}.xml").resolve())
            (dst / "JPEGImages" / f"{name}.jpg").symlink_to((src / "JPEGImages" / f"{i}.jpg").resolve())
            listed.append(name)
    (dst / "ImageSets" / "Main" / "all.txt").write_text("\n".join(listed) + "\n")
    return dst, len(listed)


def child_fit(root: str, input_size: int, batch: int, workers: int) -> dict[str, float]:
    from rpol_edge.fitting.fitter import FitConfig, fit

    marks: list[tuple[float, int]] = []

    def progress(done: int, total: int) -> None:
        marks.append((time.perf_counter(), done))

    t0 = time.perf_counter()
    res = fit(FitConfig("voc", Path(root), "all", input_size=input_size, batch_size=batch, workers=workers,
                        device="cpu"), progress)  # fmt: skip
    wall = time.perf_counter() - t0
    (ta, na), (tb, nb) = marks[0], marks[-1]
    return {
        "images": res.artifact.meta.n_images,
        "fit_img_s": (nb - na) / (tb - ta),
        "wall_s": wall,
        "rss_main_mb": peak_rss_mb(),
        # The workers have exited: their VmHWM is gone, the kernel's ru_maxrss of reaped children
        # is what is left (a worker's starts at what it inherited from this process).
        "rss_worker_max_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def child_bare(input_size: int, batch: int, seconds: float) -> dict[str, float]:
    import torch

    from rpol_edge.backbones.timm_backbone import BackboneSpec, build_backbone

    bb = build_backbone(BackboneSpec("lite0"), input_size)
    model = bb.module.eval()
    # The fit's frames arrive as uint8 NHWC and are permuted, so the backbone sees a channels-last
    # tensor (oneDNN runs it about 2x faster on this CPU than a contiguous NCHW one): time that layout.
    x = torch.rand(batch, input_size, input_size, 3).permute(0, 3, 1, 2)
    times: list[float] = []
    with torch.inference_mode():
        for _ in range(2):
            model(x)
        start = time.perf_counter()
        while time.perf_counter() - start < seconds or len(times) < 5:
            t = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t)
    return {"bare_img_s": batch / statistics.median(times), "iters": len(times)}


def run_child(args: list[str]) -> dict[str, float]:
    cmd = module_command("benchmarks.product.fit_scale", *args)
    out = subprocess.run(cmd, env=repo_env(), capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"child {args[0]} failed:\n{out.stderr[-3000:]}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, help="VOC data set (all its splits are used)")
    p.add_argument("--input-size", type=int, default=448)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=10, help="the large run lists every image this often")
    p.add_argument("--out", type=Path, default=None, help="append the JSON record here")
    p.add_argument("--child", choices=["fit", "bare"], help=argparse.SUPPRESS)
    p.add_argument("--child-root", default="", help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, default=20.0, help="bare forward timing per run")
    a = p.parse_args()
    if a.child == "fit":
        print(json.dumps(child_fit(a.child_root, a.input_size, a.batch_size, a.workers)))
        return
    if a.child == "bare":
        print(json.dumps(child_bare(a.input_size, a.batch_size, a.seconds)))
        return
    if a.root is None:
        raise SystemExit("--root is required")
    common = ["--input-size", str(a.input_size), "--batch-size", str(a.batch_size)]
    common += ["--workers", str(a.workers)]
    with tempfile.TemporaryDirectory(prefix="fit_scale_") as tmp:
        small, n_small = repeated_tree(a.root, Path(tmp) / "x1", 1)
        large, n_large = repeated_tree(a.root, Path(tmp) / "x10", a.repeats)
        bare = [run_child(["--child", "bare", "--seconds", str(a.seconds), *common])]
        fit_small = run_child(["--child", "fit", "--child-root", str(small), *common])
        fit_large = run_child(["--child", "fit", "--child-root", str(large), *common])
        bare.append(run_child(["--child", "bare", "--seconds", str(a.seconds), *common]))
    bare_img_s = statistics.median(b["bare_img_s"] for b in bare)
    record = {
        "benchmark": "fit_scale",
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "input_size": a.input_size,
        "batch_size": a.batch_size,
        "workers": a.workers,
        "small": {"images": n_small, **fit_small},
        "large": {"images": n_large, **fit_large},
        "rss_main_ratio_large_vs_small": fit_large["rss_main_mb"] / fit_small["rss_main_mb"],
        "bare_forward_img_s_runs": [b["bare_img_s"] for b in bare],
        "bare_forward_img_s": bare_img_s,
        "fit_img_s_large": fit_large["fit_img_s"],
        "fit_vs_bare": fit_large["fit_img_s"] / bare_img_s,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_avg_1min_end": os.getloadavg()[0],
    }
    line = json.dumps(record)
    print(line)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        with open(a.out, "a") as fh:
            fh.write(line + "\n")


if __name__ == "__main__":
    main()
