"""Fit w* on unlabeled images and localize one photo, with the public API only.

    python examples/01_fit_and_localize.py [IMAGE_FOLDER] [PHOTO]

Defaults to the bundled sample photos.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from rpol_edge.demo import SAMPLE_ROOT
from rpol_edge.fit import FitConfig, fit
from rpol_edge.geometry import resize_crop
from rpol_edge.images import load_rgb
from rpol_edge.predict import detect
from rpol_edge.runtimes import infer_all, open_runtime

folder = Path(sys.argv[1]) if len(sys.argv) > 1 else SAMPLE_ROOT / "JPEGImages"
photo = Path(sys.argv[2]) if len(sys.argv) > 2 else sorted(folder.glob("*.jpg"))[0]

# 1. No labels: a plain folder of images is enough to fit w* in closed form.
result = fit(FitConfig(data="folder", root=folder, split="", input_size=224, workers=0))
print(f"fitted on {result.artifact.meta.n_images} images, tau = {result.artifact.meta.tau:.3f}")

with tempfile.TemporaryDirectory() as tmp:
    model = Path(tmp) / "model.rpol"
    result.artifact.save(model)
    # 2. Any runtime (torch here; an exported .onnx or .engine works the same way).
    with open_runtime(model, "auto", device="auto") as rt:
        image = load_rgb(photo)
        frame, transform = resize_crop(image, rt.meta.resize_size, rt.meta.input_size)
        out = infer_all(rt, frame[None])
        det = detect(out.score[0, 0], out.mask[0, 0], transform)
        print(f"{photo.name}: box {det.box} (original pixels), score {det.score:.3f} via {rt.description}")
