"""Export a fitted model to ONNX and check it against the PyTorch reference, public API only.

    python examples/02_export_and_compare.py MODEL.rpol [DATA_ROOT]

DATA_ROOT is a Pascal VOC folder (default: the bundled sample); its test split is used.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from rpol_edge.compare import compare, dataset_frames
from rpol_edge.demo import SAMPLE_ROOT
from rpol_edge.export.onnx_export import export_onnx
from rpol_edge.runtimes import open_runtime

model = Path(sys.argv[1])
root = Path(sys.argv[2]) if len(sys.argv) > 2 else SAMPLE_ROOT

with tempfile.TemporaryDirectory() as tmp:
    onnx_path = Path(tmp) / "model.onnx"
    meta = export_onnx(model, onnx_path, batch=(1, 4, 8))
    print(f"exported {onnx_path.name}: opset {meta.opset}, input {meta.input_size}, t={meta.threshold}")
    with open_runtime(model, "torch") as ref, open_runtime(onnx_path, "ort") as cand:
        frames = dataset_frames(ref.meta, "voc", root, "test")
        print(compare(ref, cand, frames).to_dict())
