"""Every accuracy and parity number of the results table (docs/benchmarks.md), through the CLI, as records.

Runs the exact commands the docs show (fit, eval, baselines, export, compare) on the raccoon
set and appends one JSON line per row to --out. About 4 minutes on 2 CPU cores.
Usage: python -m benchmarks.fidelity.raccoon_table --root ../shared/data/raccoon \
           --out benchmarks/results/raccoon_table.jsonl
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.launch import module_command, repo_env
from rpol_edge.cli.metrics_table import METRIC_KEYS
from rpol_edge.core.files import write_text_atomic

KEYS = METRIC_KEYS  # the columns `rpol-edge eval` prints


def cli(*args: object) -> None:
    cmd = [sys.executable, "-m", "rpol_edge", *map(str, args)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--fits-only", action="store_true", help="only the fit -> eval rows (no export)")
    args = ap.parse_args()
    data = ["--data", "voc", "--root", args.root]
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)

        def evaluate(label: str, model: Path, command: str) -> None:
            # ONNX rows are ONNX Runtime's (labels ort_*): on a CPU `auto` would run INT8 on OpenVINO.
            runtime = ("--runtime", "ort") if model.suffix == ".onnx" else ()
            cli("eval", model, *data, "--split", "test", *runtime, "--json", d / "r.json")
            r = json.loads((d / "r.json").read_text())
            rows.append({"row": label, "command": command, **{k: r[k] for k in KEYS}})

        fits = {
            "rpol_fit448": ([], "rpol-edge fit --data voc --root ROOT --split train -o m.rpol"),
            "rpol_fit448_fixed05": (["--threshold", "0.5"], "... --threshold 0.5 -o fixed.rpol"),
            "rpol_reference_fit224": (["--reference-fit"], "... --reference-fit -o ref224.rpol"),
            "caam": (["--head", "caam"], "... --head caam -o caam.rpol"),
            "rpol_tau_mean": (["--tau", "mean"], "... --tau mean -o mean.rpol"),
        }
        for label, (extra, command) in fits.items():
            cli("fit", *data, "--split", "train", *extra, "-o", d / f"{label}.rpol")
            evaluate(label, d / f"{label}.rpol", command + "; rpol-edge eval MODEL --data voc --root ROOT")

        if args.fits_only:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(args.out, "".join(json.dumps(r) + "\n" for r in rows))
            for r in rows:
                print(json.dumps(r))
            return
        m = d / "rpol_fit448.rpol"
        calib = ["--calib-data", "voc", "--calib-root", args.root]
        cli("export", m, "--onnx", "--int8", *calib, "-o", d / "exp")
        evaluate("ort_int8_qdq", d / "exp" / "model.int8.onnx", "rpol-edge export m.rpol --int8 --calib-...")
        for label, onnx_file in {
            "onnx_fp32": d / "exp" / "model.onnx",
            "ort_int8_qdq": d / "exp" / "model.int8.onnx",
        }.items():
            cli("compare", m, onnx_file, *data, "--json", d / "c.json")
            rows.append({"row": f"compare torch_fp32 vs {label}", **json.loads((d / "c.json").read_text())})

        # The symmetric QDQ graph TensorRT INT8 builds from, scored in ONNX Runtime.
        from rpol_edge.exporters.int8 import quantize_int8

        sym = d / "model.int8.trt.onnx"
        quantize_int8(d / "exp" / "model.onnx", sym, "voc", args.root, "train", symmetric=True)
        evaluate("trt_source_int8_symmetric_qdq_on_ort", sym, "quantize_int8(..., symmetric=True)")

    base = subprocess.run(
        module_command("benchmarks.fidelity.baselines", "--root", str(args.root)),
        check=True, capture_output=True, text=True, env=repo_env(),
    )  # fmt: skip
    rows += [json.loads(line) for line in base.stdout.splitlines()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, "".join(json.dumps(r) + "\n" for r in rows))
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
