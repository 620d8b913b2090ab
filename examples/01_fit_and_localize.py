"""Fit w* on unlabeled images and localize one photo, with the public API only.

    python examples/01_fit_and_localize.py [IMAGE_FOLDER] [PHOTO]

Defaults to the bundled sample photos.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import rpol_edge

folder = Path(sys.argv[1]) if len(sys.argv) > 1 else rpol_edge.SAMPLE_ROOT / "JPEGImages"
photo = Path(sys.argv[2]) if len(sys.argv) > 2 else sorted(folder.glob("*.jpg"))[0]

with tempfile.TemporaryDirectory() as tmp:
    # 1. No labels: a plain folder of images is enough to fit w* in closed form.
    with rpol_edge.fit(folder, Path(tmp) / "model.rpol", input_size=224, workers=0) as model:
        print(f"fitted on {model.meta.n_images} images, tau = {model.meta.tau:.3f}")
        # 2. One call per image; an exported .onnx or .engine opens and predicts the same way.
        det = model.predict(photo)
        print(f"{photo.name}: box {det.box} (original pixels), score {det.score:.3f} via {model.description}")
        print(f"score map {det.score_map.shape}, {int(det.mask.sum())} pixels above the operating point")
