"""The explanation figure in the layout of Fig. 8 of Song et al., ICCV 2023 (matplotlib, imported lazily).

Per query point one PNG: the query image with the point starred and its activation map; then one row
per chosen training image: importance alpha (zero-centred, red + / blue -), similarity f̂·f̂_q
(min-max), representer value r = alpha * similarity (zero-centred), each overlaid on the training
image as the backbone saw it, with the image's contribution written on it.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rpol_edge.core.files import write_bytes_atomic
from rpol_edge.core.geometry import resize_crop
from rpol_edge.data.images import ImageError, load_rgb
from rpol_edge.explain.explainer import Explanation
from rpol_edge.explain.representers import Contribution, Query


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("the explain figure needs matplotlib: pip install 'rpol-edge[explain]'") from None
    return plt


def _upsample(small: np.ndarray, size: int) -> np.ndarray:
    """A feature-grid map drawn over a size x size crop: nearest, so each cell stays one value."""
    return cv2.resize(np.asarray(small, np.float32), (size, size), interpolation=cv2.INTER_NEAREST)


def _train_frame(c: Contribution, resize: int, crop: int) -> np.ndarray:
    try:
        frame, _ = resize_crop(load_rgb(Path(c.path)), resize, crop)
    except ImageError:
        frame = np.full((crop, crop, 3), 127, np.uint8)
    return frame


def _zero_centred(values: np.ndarray) -> tuple[float, float]:
    m = float(np.abs(values).max()) or 1.0
    return -m, m


def render_query(ex: Explanation, q: Query, out: Path) -> None:
    """Write one query's figure to ``out`` (PNG, atomically)."""
    plt = _pyplot()
    # The K images with the lowest totals are inhibitory only when their total is negative: for a
    # strongly activated point every training image may push it up, and the titles say so.
    contribs = [("excitatory", c) for c in q.top_excitatory()] + [
        ("inhibitory" if c.total < 0 else "lowest (still +)", c) for c in q.top_inhibitory()
    ]
    n_rows = 1 + len(contribs)
    fig, axes = plt.subplots(n_rows, 3, figsize=(9.6, 3.1 * n_rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")

    ax = axes[0, 0]
    ax.imshow(ex.image)
    ax.plot([q.x], [q.y], marker="*", markersize=18, color="yellow", markeredgecolor="black")
    ax.set_title(f"query ({q.source}) at ({q.x:.0f}, {q.y:.0f})", fontsize=9)
    ax = axes[0, 1]
    ax.imshow(ex.image)
    ax.imshow(
        ex.transform.map_to_original(ex.score.astype(np.float32)), cmap="jet", alpha=0.5, vmin=0, vmax=1
    )
    ax.plot([q.x], [q.y], marker="*", markersize=18, color="yellow", markeredgecolor="black")
    ax.set_title(f"activation map; a_q = {q.a_q:+.4f}", fontsize=9)
    ax = axes[0, 2]
    ax.text(
        0.0,
        0.5,
        f"sum of r over {ex.meta['n_train_images']} training images\n"
        f"= {q.sum_r:+.7f}\n|sum r - a_q| = {abs(q.sum_r - q.a_q):.1e}\n"
        f"tau ({ex.meta['tau_mode']}) = {ex.meta['tau']:.4f}",
        fontsize=9,
        va="center",
        family="monospace",
    )

    resize, crop = ex.train_transform
    for i, (kind, c) in enumerate(contribs, start=1):
        frame = _train_frame(c, resize, crop)
        panels = (
            ("importance alpha", c.alpha, "bwr", _zero_centred(c.alpha)),
            ("similarity", c.sim, "viridis", (float(c.sim.min()), float(c.sim.max()) or 1.0)),
            ("representer value r", c.r, "bwr", _zero_centred(c.r)),
        )
        for j, (name, values, cmap, (lo, hi)) in enumerate(panels):
            ax = axes[i, j]
            ax.imshow(frame)
            ax.imshow(_upsample(values, crop), cmap=cmap, alpha=0.55, vmin=lo, vmax=hi)
            rank = i if kind == "excitatory" else i - len(q.excitatory)
            ax.set_title(f"{kind} #{rank}: {name}", fontsize=8)
            if j == 0:
                ax.text(4, 14, c.image_id, color="white", fontsize=8, backgroundcolor="black")
            if j == 2:
                ax.text(
                    4,
                    crop - 8,
                    f"contribution {c.total:+.2e}",
                    color="white",
                    fontsize=9,
                    backgroundcolor="black",
                )
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    write_bytes_atomic(out, buf.getvalue())


def write_explanation(ex: Explanation, out_dir: Path, figures: bool = True) -> list[Path]:
    """``explain.json`` (every number shown) and one ``<image>_q<i>_<source>.png`` per query point."""
    import json

    from rpol_edge.core.files import write_text_atomic

    out_dir = Path(out_dir)
    stem = Path(str(ex.meta["image"])).stem
    record = ex.record()
    written = []
    for i, (q, rec) in enumerate(zip(ex.queries, record["queries"], strict=True)):
        if figures:
            png = out_dir / f"{stem}_q{i}_{q.source}.png"
            render_query(ex, q, png)
            rec["figure"] = png.name
            written.append(png)
    path = out_dir / f"{stem}_explain.json"
    write_text_atomic(path, json.dumps(record, indent=1))
    written.append(path)
    return written
