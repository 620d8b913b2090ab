"""`rpol-edge client`: images or a live source through a Triton server, the files `predict` writes."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from rpol_edge.cli.console import err, out, report_skips
from rpol_edge.cli.errors import cli_errors
from rpol_edge.cli.progress import progress_bar


def client(
    url: Annotated[str, typer.Argument(help="the server: http://HOST:PORT or grpc://HOST:PORT")],
    images: Annotated[
        list[Path] | None,
        typer.Argument(help="image files, folders (every image under them, recursively) or quoted patterns"),
    ] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="folder for overlays and JSON")] = Path(
        "predictions"
    ),
    model: Annotated[str, typer.Option(help="model name on the server")] = "rpol",
    source: Annotated[
        str | None, typer.Option(help="a live source instead of images (camera, rtsp://, a video file)")
    ] = None,
    frames: Annotated[
        int, typer.Option(help="with --source: stop after this many frames (0: at its end)")
    ] = 0,
    timeout: Annotated[float, typer.Option(help="seconds each request may take")] = 30.0,
    json_out: Annotated[
        bool, typer.Option("--json", help="print the records as JSON lines instead of text")
    ] = False,
) -> None:
    """Boxes from a Triton server: for IMAGES, exactly the files `rpol-edge predict` writes."""
    from rpol_edge.integrations.triton.remote_model import RemoteModel, predict_remote

    with cli_errors():
        if bool(images) == bool(source):
            raise ValueError("give IMAGES or --source URI (one of them)")
        with RemoteModel(url, model, timeout_s=timeout) as remote:
            if source:
                from rpol_edge.integrations.triton.remote_stream import stream_remote

                count = stream_remote(remote, source, output, frames, lambda r: _show(r, json_out))
                err.print(f"{count} frame(s); records in {output / 'frames.jsonl'}", highlight=False)
                return
            from rpol_edge.data.folder import expand_images

            files = expand_images(images or [], exclude=[output])
            with progress_bar("client") as update:
                records, skipped = predict_remote(remote, files, output, progress=update)
        report_skips(skipped)
        for r in records:
            _show(r, json_out)
        (err if json_out else out).print(f"wrote {len(records)} overlay(s) and JSON file(s) to {output}")


def _show(record: dict[str, object], json_out: bool) -> None:
    if json_out:
        sys.stdout.write(json.dumps(record) + "\n")
    else:
        name = record.get("image", record.get("frame"))
        out.print(f"{name}: box={record['box']} score={record['score']:.3f}", highlight=False)  # type: ignore[str-format]
