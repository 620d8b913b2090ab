"""Frames of a live source (camera, network stream, video file, image folder) through a Triton
server: one request per frame, one JSON record per frame (``frames.jsonl``)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rpol_edge.core.files import write_text_atomic
from rpol_edge.integrations.triton.remote_model import RemoteModel
from rpol_edge.integrations.triton.server_env import ServeError
from rpol_edge.live.source_registry import parse_source
from rpol_edge.live.sources import CorruptFrame, StreamDropped, open_source
from rpol_edge.results.detection import detection_record

RECORDS = "frames.jsonl"


def stream_remote(
    model: RemoteModel,
    uri: str,
    out_dir: Path,
    limit: int = 0,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    open_timeout_s: float = 10.0,
) -> int:
    """Send the source's frames until its end (or ``limit`` frames); returns the frames answered.
    The records are written when the source ends, when the limit is reached, on Ctrl-C and when
    the server stops answering (then the error counts them); nothing when the server was never
    reached."""
    source = parse_source(uri, exclude=[out_dir])
    records: list[dict[str, Any]] = []
    model.meta  # noqa: B018 - reaches the server (and its model) before the source is opened
    open_source(source, open_timeout_s)
    failed = True
    try:
        with source:
            index = 0
            while not limit or index < limit:
                try:
                    cap = source.read()
                except CorruptFrame:
                    continue
                except StreamDropped:
                    break
                if cap is None:
                    break
                rgb = (
                    cap.image if getattr(cap, "is_rgb", False) else np.ascontiguousarray(cap.image[..., ::-1])
                )
                start = time.perf_counter()
                d = model.detect(rgb)
                h, w = rgb.shape[:2]
                rec = {
                    "frame": index,
                    "source": cap.name or uri,
                    "width": w,
                    "height": h,
                    **detection_record(d),
                    "latency_ms": round((time.perf_counter() - start) * 1000, 3),
                }
                records.append(rec)
                if on_record:
                    on_record(rec)
                index += 1
        failed = False
    except ServeError as exc:
        if not records:
            raise
        raise ServeError(
            f"{exc}; after {len(records)} frame(s) answered, their records are in {out_dir / RECORDS}"
        ) from None
    finally:
        if records or not failed:
            out_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(out_dir / RECORDS, "".join(json.dumps(r) + "\n" for r in records))
    return len(records)
