"""Peak memory and time of ``rpol-edge explain``: the raccoon train split vs the same split repeated
10x, with and without the feature cache. One command; prints a table and writes a JSON record.

The 10x split is a temporary VOC tree whose images and annotations are symlinks under new ids. Its
model is the 1x fit with every running sum multiplied by 10 (exactly what fitting the repeated split
computes: sums add, tau and w* are scale-free), so the 10x explain passes the same fit-sum check.
Each explain runs in its own process with ``--workers 0`` (decoding in-process), so the peak RSS of
that process (VmHWM, read at its exit) is the whole peak.

Usage: python -m benchmarks.product.explain_memory --root ../shared/data/raccoon \
           --out benchmarks/results/explain_memory.json [--input-size 224] [--repeat 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rpol_edge.core.files import write_text_atomic

CHILD = r"""
import json, sys
from rpol_edge.bench.stats import peak_rss_mb
from rpol_edge.cli.app import app
try:
    app(sys.argv[1:], standalone_mode=False)
finally:
    print("RUSAGE " + json.dumps({"maxrss_mb": peak_rss_mb()}), flush=True)
"""


def repeated_tree(root: Path, split: str, repeat: int, dest: Path) -> str:
    ids = [ln.strip() for ln in (root / "ImageSets" / "Main" / f"{split}.txt").read_text().splitlines()]
    ids = [i for i in ids if i]
    for sub in ("ImageSets/Main", "Annotations", "JPEGImages"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    images = {p.stem: p for p in (root / "JPEGImages").iterdir()}
    names = []
    for k in range(repeat):
        for i in ids:
            new = f"{i}_r{k}"
            img = images[i]
            os.symlink(img.resolve(), dest / "JPEGImages" / f"{new}{img.suffix}")
            os.symlink((root / "Annotations" / f"{i}.xml").resolve(), dest / "Annotations" / f"{new}.xml")
            names.append(new)
    name = f"{split}x{repeat}"
    (dest / "ImageSets" / "Main" / f"{name}.txt").write_text("\n".join(names) + "\n")
    return name


def scaled_model(src: Path, dst: Path, factor: int, root: Path, split: str) -> None:
    from rpol_edge.core.artifact import ModelArtifact

    a = ModelArtifact.load(src)
    a.meta = a.meta.replace(
        n_images=a.meta.n_images * factor,
        n_skipped=a.meta.n_skipped * factor,
        fit_root=str(root.resolve()),
        fit_split=split,
    )
    a.v_sum, a.u_sum, a.count = a.v_sum * factor, a.u_sum * factor, a.count * factor
    a.save(dst)


def explain_run(model: Path, image: Path, out: Path, cache: Path | None) -> dict[str, float]:
    args = ["explain", str(model), str(image), "-o", str(out), "--no-figure", "--workers", "0"]
    if cache:
        args += ["--cache", str(cache)]
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        sys.exit(f"explain failed: {res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    rss = json.loads(res.stdout.split("RUSAGE ")[-1])["maxrss_mb"]
    rec = json.loads(next(out.glob("*_explain.json")).read_text())
    return {
        "peak_rss_mb": round(rss, 1),
        "wall_s": round(wall, 2),
        "explain_s": rec["seconds_total"],
        "stream_s": rec["seconds_stream"],
        "n_train_images": rec["n_train_images"],
        "n_queries": len(rec["queries"]),
        "max_identity_abs_error": max(q["identity_abs_error"] for q in rec["queries"]),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--input-size", type=int, default=224)
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args()
    root = args.root.resolve()
    image = sorted((root / "JPEGImages").glob("*.jpg"))[0]
    records: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        split10 = repeated_tree(root, "train", args.repeat, d / "voc10")
        m1, m10 = d / "m1.rpol", d / "m10.rpol"
        subprocess.run(
            [sys.executable, "-m", "rpol_edge", "fit", "--data", "voc", "--root", str(root), "--split",
             "train", "--input-size", str(args.input_size), "-o", str(m1)],
            check=True, capture_output=True,
        )  # fmt: skip
        scaled_model(m1, m10, args.repeat, d / "voc10", split10)
        runs = [
            ("1x_no_cache", m1, None),
            ("1x_write_cache", m1, d / "c1"),
            ("1x_read_cache", m1, d / "c1"),
            (f"{args.repeat}x_write_cache", m10, d / "c10"),
            (f"{args.repeat}x_read_cache", m10, d / "c10"),
        ]
        for name, model, cache in runs:
            records[name] = explain_run(model, image, d / name, cache)
            print(name, json.dumps(records[name]), flush=True)
    w1, w10 = records["1x_write_cache"], records[f"{args.repeat}x_write_cache"]
    r1, r10 = records["1x_read_cache"], records[f"{args.repeat}x_read_cache"]
    summary = {
        "input_size": args.input_size,
        "repeat": args.repeat,
        "query_image": image.name,
        "rss_ratio_stream": round(w10["peak_rss_mb"] / w1["peak_rss_mb"], 3),
        "rss_ratio_cached": round(r10["peak_rss_mb"] / r1["peak_rss_mb"], 3),
        "seconds_per_query_no_cache_1x": round(records["1x_no_cache"]["explain_s"] / 2, 2),
        "seconds_per_query_cache_1x": round(r1["explain_s"] / 2, 2),
        "runs": records,
        "machine": f"{os.cpu_count()} CPU cores (shared)",
    }
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.out, json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
