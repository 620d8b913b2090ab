"""The DeepStream hand-off's float-input graph against the uint8 graph: where the normalization goes.

    python -m benchmarks.fidelity.deepstream_fidelity --model m.rpol --root ../shared/data/raccoon \
        --out benchmarks/results/deepstream_fidelity.json

No DeepStream here: nvinfer's pre-processing is emulated with its own arithmetic
(`emulate_network_input`: the even-rounded frame stretched to S x S with cv2 INTER_LINEAR, then
``net-scale-factor * (x - offsets[c])`` in float32, planar), from the values of the config each
export wrote, read back as nvinfer reads them (float32). Both graphs run in ONNX Runtime (CPU).

Rows, each against the uint8 graph fed the same stretched frame (center K x K crop), boxes mapped
to frame pixels with nvinfer's geometry:
  graph    net-scale-factor 1, offsets 0, mean and std in the graph (what export --deepstream writes);
  offsets  the mean in offsets, the std in the graph;
  config   the mean in offsets, the std's average in net-scale-factor, std / average in the graph;
  single-scale  the common recipe of one net-scale-factor = 1 / (255 * average std) and nothing
           per channel in the graph: emulated by feeding the ``graph`` variant the input that recipe
           amounts to, 255 mean + (x - 255 mean) * std_c / average std.
  host path  rpol-edge predict's own pre-processing (INTER_AREA when shrinking) into the uint8
           graph, against the ``graph`` variant: what the scaler changes (emulated scaler).

Two model records: the fitted model as is, and the same w* and weights with the ImageNet mean/std
written into its record (a per-channel std, as the ResNet and ViT presets have; this machine has
only the Lite0 weights, whose own normalization is 0.5/0.5 on every channel).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.launch import REPO
from rpol_edge.bench.runner import machine_record
from rpol_edge.core.files import write_text_atomic

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--root", type=Path, default=REPO.parent / "shared" / "data" / "raccoon")
    p.add_argument("--split", default="test")
    p.add_argument("--work", type=Path, default=Path("deepstream_fidelity_work"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()

    import onnxruntime as ort

    from rpol_edge.core.artifact import ModelArtifact
    from rpol_edge.data import read_dataset
    from rpol_edge.data.images import load_rgb

    sample = sorted((REPO / "rpol_edge" / "sample" / "JPEGImages").glob("*.jpg"))
    sets = {
        f"raccoon {args.split}": [load_rgb(s.path) for s in read_dataset("voc", args.root, args.split)],
        "bundled sample": [load_rgb(q) for q in sample],
    }
    args.work.mkdir(parents=True, exist_ok=True)
    art = ModelArtifact.load(args.model)
    per_channel = args.work / "imagenet_norm.rpol"
    if not per_channel.is_file():
        meta = art.meta.replace(mean=IMAGENET[0], std=IMAGENET[1])
        ModelArtifact(meta, art.w, art.v_sum, art.u_sum, art.count, art.taus).save(per_channel)
    records = {"fitted record": args.model, "ImageNet mean/std in the record": per_channel}
    results = {
        label: measure(model, args.work / model.stem, sets, args.threads) for label, model in records.items()
    }
    for label, res in results.items():
        for set_name, by in res["sets"].items():
            for name, r in by.items():
                print(
                    f"{label[:14]:14s} {set_name[:14]:14s} {name:12s} max|d| {r['max_abs_score']:.2e} "
                    f"mean|d| {r['mean_abs_score']:.2e} mask px {r['mask_pixels_differing']:6d} "
                    f"boxes same {r['boxes_identical']}/{r['n']} IoU>=0.9 {r['boxes_iou_090']}/{r['n']}"
                )
    record = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_record(),
        "onnxruntime": ort.__version__,
        "emulated": "nvinfer's scaler (cv2 INTER_LINEAR on the even-rounded frame) and conversion "
        "arithmetic; DeepStream and TensorRT were not run",
        "results": results,
    }
    if args.out:
        write_text_atomic(args.out, json.dumps(record, indent=1) + "\n")


def measure(model: Path, d: Path, sets: dict[str, list[np.ndarray]], threads: int) -> dict[str, Any]:
    """Every variant of one model record against its uint8 graph, per image set."""
    import onnxruntime as ort

    from rpol_edge.core.prepare import prepare
    from rpol_edge.exporters.deepstream import NORMALIZATIONS, export_deepstream
    from rpol_edge.exporters.onnx_export import export_onnx
    from rpol_edge.integrations.deepstream.decode import ONNX_NAME, Handoff, load_handoff
    from rpol_edge.results.boxes import iou_inclusive
    from rpol_edge.results.detection import detect
    from rpol_edge.runtimes import infer_all
    from rpol_edge.runtimes.ort_runtime import OrtRuntime

    plain = d / "model.onnx"
    if not plain.is_file():
        export_onnx(model, plain, batch=(1, 1, 1))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    handoffs: dict[str, tuple[Handoff, Any]] = {}
    for where in NORMALIZATIONS:
        out = d / f"ds_{where}"
        if not (out / ONNX_NAME).is_file():
            export_deepstream(model, out, batch=(1, 1, 1), normalization=where)
        sess = ort.InferenceSession(str(out / ONNX_NAME), opts, providers=["CPUExecutionProvider"])
        handoffs[where] = (load_handoff(out), sess)
    graph = handoffs["graph"][0]
    meta = graph.meta
    rows: dict[str, dict[str, Any]] = {}
    with OrtRuntime(plain, threads=threads) as u8:
        for set_name, frames in sets.items():
            stats: dict[str, list[Any]] = {}
            for frame in frames:
                size = (frame.shape[1], frame.shape[0])
                t = graph.transform(size)
                crop = uint8_network_input(frame, meta.resize_size, t.offset, meta.input_size)
                ref = infer_all(u8, crop[None])
                ref_det = detect(ref.score[0, 0], ref.mask[0, 0], t)
                variants = {}
                for where, (h, sess) in handoffs.items():
                    y = emulate_network_input(
                        frame, meta.resize_size, h.config["net-scale-factor"], h.config["offsets"]
                    )
                    variants[where] = sess.run(None, {"frames": y[None]})
                variants["single-scale"] = handoffs["graph"][1].run(
                    None, {"frames": single_scale_input(frame, meta)[None]}
                )
                for name, (sc, mk) in variants.items():
                    det = graph.decode(sc[0], mk[0], size)
                    stats.setdefault(name, []).append(
                        compare(ref.score[0, 0], ref.mask[0, 0], ref_det, sc[0, 0], mk[0, 0], det)
                    )
                # rpol-edge predict's own pre-processing against the hand-off: the scaler's share.
                hx, ht = prepare(frame, meta, is_rgb=True)
                host = infer_all(u8, hx[None])
                host_det = detect(host.score[0, 0], host.mask[0, 0], ht)
                sc, mk = variants["graph"]
                det = graph.decode(sc[0], mk[0], size)
                stats.setdefault("host path", []).append(
                    compare(host.score[0, 0], host.mask[0, 0], host_det, sc[0, 0], mk[0, 0], det)
                )
            rows[set_name] = {name: summarize(v, iou_inclusive) for name, v in stats.items()}
    return {
        "model": str(model),
        "backbone": meta.backbone,
        "w_sha256": meta.w_sha256,
        "mean": list(meta.mean),
        "std": list(meta.std),
        "input_size": meta.input_size,
        "resize_size": meta.resize_size,
        "operating_point": meta.operating.label(),
        "configs": {
            w: {"net-scale-factor": h.config["net-scale-factor"], "offsets": list(h.config["offsets"])}
            for w, (h, _) in handoffs.items()
        },
        "sets": rows,
    }


def emulate_network_input(frame: np.ndarray, s: int, nsf: float, offsets: Any) -> np.ndarray:
    from rpol_edge.integrations.deepstream.decode import emulate_network_input as emulate

    return emulate(frame, s, nsf, tuple(offsets))


def uint8_network_input(frame: np.ndarray, s: int, offset: int, k: int) -> np.ndarray:
    """The same stretched frame as uint8 NHWC K x K: the uint8 graph's input."""
    x = emulate_network_input(frame, s, 1.0, (0.0, 0.0, 0.0)).transpose(1, 2, 0)
    return np.ascontiguousarray(x[offset : offset + k, offset : offset + k].astype(np.uint8))


def single_scale_input(frame: np.ndarray, meta: Any) -> np.ndarray:
    """What one net-scale-factor = 1 / (255 * average std), offsets 255 mean and no per-channel rest
    amount to, as the input of the ``graph`` variant: 255 mean + (x - 255 mean) * std_c / average."""
    x = emulate_network_input(frame, meta.resize_size, 1.0, (0.0, 0.0, 0.0))
    std = np.asarray(meta.std, np.float32)
    m = (np.float32(255.0) * np.asarray(meta.mean, np.float32))[:, None, None]
    ratio = (std / np.float32(std.mean()))[:, None, None]
    return np.ascontiguousarray(m + (x - m) * ratio, dtype=np.float32)


def compare(
    ref_score: np.ndarray, ref_mask: np.ndarray, ref: Any, score: np.ndarray, mask: np.ndarray, det: Any
) -> dict[str, Any]:
    diff = np.abs(score.astype(np.float64) - ref_score.astype(np.float64))
    return {
        "max": float(diff.max()),
        "mean": float(diff.mean()),
        "mask": int(((mask != 0) != (ref_mask != 0)).sum()),
        "boxes": (ref.box, det.box),
    }


def summarize(items: list[dict[str, Any]], iou: Any) -> dict[str, Any]:
    same = sum(a == b for a, b in (i["boxes"] for i in items))
    ious = [
        1.0 if a == b else (0.0 if a is None or b is None else float(iou(np.array(a), np.array(b))[0, 0]))
        for a, b in (i["boxes"] for i in items)
    ]
    return {
        "n": len(items),
        "max_abs_score": max(i["max"] for i in items),
        "mean_abs_score": float(np.mean([i["mean"] for i in items])),
        "mask_pixels_differing": sum(i["mask"] for i in items),
        "boxes_identical": same,
        "boxes_iou_090": sum(v >= 0.9 for v in ious),
        "min_iou": min(ious),
    }


if __name__ == "__main__":
    main()
