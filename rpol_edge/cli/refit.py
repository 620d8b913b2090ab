"""`rpol-edge refit`: fit w* again through an exported model's own runtime, no PyTorch needed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rpol_edge.cli.console import err, out, report_skips, report_source
from rpol_edge.cli.errors import cli_errors
from rpol_edge.cli.options import Device, Every, FitSource, Frames, RuntimeOpt
from rpol_edge.cli.paths import check_writable
from rpol_edge.cli.progress import progress_bar
from rpol_edge.refitting.job import RefitRequest


def refit(
    model: Annotated[Path, typer.Argument(help="exported model: .onnx, .xml (OpenVINO IR) or .engine")],
    output: Annotated[Path, typer.Option("-o", "--output", help="refitted model to write (same kind)")],
    data: Annotated[str, typer.Option("--data", help="cub | wsol | voc | folder (with --root)")] = "",
    root: Annotated[Path | None, typer.Option("--root", help="data-set root folder")] = None,
    split: Annotated[str, typer.Option("--split", help="split name (train, test, ...)")] = "train",
    source: FitSource = "",
    frames: Frames = 0,
    every: Every = 0.0,
    runtime: RuntimeOpt = "auto",
    device: Device = "auto",
    threads: Annotated[int | None, typer.Option(help="runtime threads (default: the runtime's)")] = None,
    batch_size: Annotated[int, typer.Option(help="frames per runtime call")] = RefitRequest.batch_size,
    workers: Annotated[int, typer.Option(help="decoding worker processes (--data)")] = 2,
    tau: Annotated[str, typer.Option("--tau", help="joint (Eq. 25, default) | mean")] = "joint",
    features_from: Annotated[
        Path | None,
        typer.Option(
            help="take the features from another export of the same model (an INT8 model's FP32 graph)"
        ),
    ] = None,
    checkpoint_every: Annotated[
        int, typer.Option(help="save the partial sums every N frames (0: on Ctrl-C)")
    ] = 0,
    checkpoint_dir: Annotated[
        Path | None, typer.Option(help="folder for the checkpoint (default: OUTPUT.ckpt)")
    ] = None,
    resume: Annotated[bool, typer.Option(help="continue from the checkpoint of the same command")] = False,
) -> None:
    """Refit w* and tau of an exported model on new images or a live view, through the model's
    own runtime (ONNX Runtime, OpenVINO; a TensorRT engine is rebuilt from its refitted ONNX).

    The sums come from the model's own graph, with its own pre-processing; the output is the same
    graph with the new w* and metadata. Ctrl-C saves a checkpoint; run again with --resume."""
    with cli_errors(aliases={"tau_mode": "tau"}):
        from rpol_edge.fitting.checkpoint import CheckpointOptions, FitStopped
        from rpol_edge.refitting.job import refit as run_refit

        req = RefitRequest(
            model=model, output=output, data=data, root=root, split=split, source=source, frames=frames,
            every=every, runtime=runtime, device=device, threads=threads, batch_size=batch_size,
            workers=workers, tau_mode=tau, features_from=features_from,
        )  # fmt: skip
        req.validate()
        check_writable(output)
        ckpt = CheckpointOptions(
            checkpoint_dir or output.with_name(output.name + ".ckpt"), checkpoint_every, resume
        )
        ckpt.validate()
        try:
            with progress_bar("refit") as update:
                result = run_refit(req, update, ckpt)
        except FitStopped as exc:
            err.print(str(exc), markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(128 + exc.signum) from None
        m = result.meta
        if result.resumed_at is not None:
            err.print(f"resumed at frame {result.resumed_at}", highlight=False)
        report_skips(result.skipped, len(result.skipped))
        report_source(result.counts)
        out.print(
            f"wrote {', '.join(str(p) for p in result.written)}: tau={m.tau:.4f} ({m.tau_mode}) "
            f"images={m.n_images} skipped={m.n_skipped} sums on {result.runtime} "
            f"operating point: {m.operating.label()}",
            highlight=False,
            soft_wrap=True,
        )
