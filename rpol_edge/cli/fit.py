"""`rpol-edge fit`: options -> `FitConfig`, then the fit job (one process or one torchrun rank)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from rpol_edge.cli.console import err, out, report_skips, report_source
from rpol_edge.cli.errors import cli_errors
from rpol_edge.cli.options import Device, Every, FitSource, Frames, Weights, Workers
from rpol_edge.cli.paths import check_writable
from rpol_edge.cli.progress import rank_progress
from rpol_edge.core.extras import require_torch
from rpol_edge.fitting.config import FitConfig

FIT = FitConfig()
"""The library's defaults: every default below is read from here, not typed again."""

# Library names (FitConfig's fields) that differ from this command's parameter names.
ALIASES = {"tau_mode": "tau"}
NOT_CONFIG = ("output", "checkpoint_every", "checkpoint_dir", "resume")
"""The command's options that are not the fit's: where the model and the checkpoints go."""


def fit_config(options: dict[str, Any]) -> FitConfig:
    """The command's options as the library's FitConfig: the same names, but ``--tau`` is its
    ``tau_mode``, and ``--threshold`` alone means the fixed rule at that threshold."""
    fields = {name: value for name, value in options.items() if name not in NOT_CONFIG}
    fields["tau_mode"] = fields.pop("tau")
    threshold = fields["threshold"]
    fields["operating_point"] = fields["operating_point"] or ("fixed" if threshold is not None else None)
    fields["threshold"] = FIT.threshold if threshold is None else threshold
    return FitConfig(**fields)


Output = Annotated[Path, typer.Option("-o", "--output", help="model file to write (.rpol)")]
Root = Annotated[Path | None, typer.Option("--root", help="data-set root folder", show_default=False)]
Data = Annotated[str, typer.Option("--data", help="cub | wsol | voc | folder", show_default="folder")]
Split = Annotated[
    str | None, typer.Option("--split", help="split name (train, test, ...)", show_default="train")
]
Backbone = Annotated[
    str, typer.Option(help="preset (lite0, moco_r50, dino_vits16, dino_r50, sup_r50) or timm name")
]
OutputStride = Annotated[
    int, typer.Option(help="backbone output stride 32/16/8 (ResNets: stride 1, EfficientNets: dilated)")
]
InputSize = Annotated[int, typer.Option(help="network input K (square)")]
ResizeSize = Annotated[int | None, typer.Option(help="resize S before the K crop (default K*480/448)")]
FitSize = Annotated[int | None, typer.Option(help="fit resolution (default: the input size)")]
ReferenceFit = Annotated[bool, typer.Option(help="the reference's fit: 224x224 resize, no crop")]
Head = Annotated[str, typer.Option(help="rpol | caam (baseline)")]
Tau = Annotated[str, typer.Option("--tau", help="joint (Eq. 25, default) | mean (plain mean feature norm)")]
Classwise = Annotated[bool, typer.Option(help="one w* per class label")]
SamplingRatio = Annotated[float, typer.Option(help="fit on this random fraction")]
Seed = Annotated[int, typer.Option(help="random seed of the --sampling-ratio draw")]
OperatingPoint = Annotated[
    str | None,
    typer.Option(
        help="mask rule: sign (label-free: w*^T f > 0; the default with --head rpol) | fixed (the "
        "paper's, at --threshold; the default with --head caam) | otsu | fraction (top --fraction) "
        "| scene (a fixed camera: fit on its own frames; evidence against the scene at --scene-level) "
        "| zscore (a fixed camera: w* response in its cell's standard deviations, above --zscore-level)"
    ),
]
Threshold = Annotated[
    float | None,
    typer.Option(help="a fixed operating threshold (implies --operating-point fixed; default 0.5)"),
]
Fraction = Annotated[float, typer.Option(help="share of each map the fraction rule keeps")]
SceneLevel = Annotated[float, typer.Option(help="scene rule: keep evidence above this share of its maximum")]
ZscoreLevel = Annotated[
    float, typer.Option(help="zscore rule: keep responses this many std above their cell's mean")
]
FitBatchSize = Annotated[int, typer.Option(help="images per backbone call")]
CheckpointEvery = Annotated[
    int, typer.Option(help="save each rank's partial sums every N of its images (0: only on SIGTERM)")
]
CheckpointDir = Annotated[Path | None, typer.Option(help="folder for the checkpoints (default: OUTPUT.ckpt)")]
Resume = Annotated[
    bool,
    typer.Option(
        help="continue from the checkpoints of the same command (a --source video or folder is read "
        "again and the frames already added are passed over; a live source goes on)"
    ),
]


def fit(
    root: Root = None,
    data: Data = FIT.data,
    split: Split = FIT.split,
    source: FitSource = FIT.source,
    frames: Frames = FIT.frames,
    every: Every = FIT.every,
    output: Output = Path("model.rpol"),
    backbone: Backbone = FIT.backbone,
    weights: Weights = None,
    output_stride: OutputStride = FIT.output_stride,
    input_size: InputSize = FIT.input_size,
    resize_size: ResizeSize = None,
    fit_size: FitSize = None,
    reference_fit: ReferenceFit = FIT.reference_fit,
    head: Head = FIT.head,
    tau: Tau = FIT.tau_mode,
    classwise: Classwise = FIT.classwise,
    sampling_ratio: SamplingRatio = FIT.sampling_ratio,
    seed: Seed = FIT.seed,
    operating_point: OperatingPoint = None,
    threshold: Threshold = None,
    fraction: Fraction = FIT.fraction,
    scene_level: SceneLevel = FIT.scene_level,
    zscore_level: ZscoreLevel = FIT.zscore_level,
    batch_size: FitBatchSize = FIT.batch_size,
    workers: Workers = FIT.workers,
    device: Device = FIT.device,
    checkpoint_every: CheckpointEvery = 0,
    checkpoint_dir: CheckpointDir = None,
    resume: Resume = False,
) -> None:
    """Fit w* on unlabeled images (closed form, frozen backbone) and write the model file.

    The images: a data set (--data, --root, --split) or --frames N frames of a camera, stream,
    video file or folder (--source), one every --every seconds. Ctrl-C saves a checkpoint; run
    again with --resume. Under torchrun (`torchrun --nproc-per-node N -m rpol_edge fit ...`) each
    rank fits its shard of a data set and rank 0 writes the file (docs/scale-out.md)."""
    options = dict(locals())  # the command's options by name, before any other local
    with cli_errors(ALIASES):
        require_torch("rpol-edge fit")
        from rpol_edge.api.jobs import fit_job
        from rpol_edge.fitting.checkpoint import CheckpointOptions, FitStopped

        cfg = fit_config(options)
        cfg.validate()
        check_writable(output)
        ckpt_dir = checkpoint_dir or output.with_name(output.name + ".ckpt")
        ckpt = CheckpointOptions(ckpt_dir, checkpoint_every, resume)
        ckpt.validate()
        try:
            result, ctx, counts = fit_job(cfg, output, ckpt, rank_progress("fit"))
        except FitStopped as exc:
            err.print(str(exc), markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(128 + exc.signum) from None
        m = result.artifact.meta
        if result.resumed_at is not None:
            where = f"{ctx.label}: " if ctx.enabled else ""
            at = f"frame {result.resumed_at}" if source else f"image {result.resumed_at} of its shard"
            err.print(f"{where}resumed at {at}", highlight=False)
        if ctx.is_main:
            report_skips(result.skipped, m.n_skipped)
            report_source(counts)
            out.print(
                f"wrote {output}: {m.backbone} K={m.input_size} tau={m.tau:.4f} ({m.tau_mode}) "
                f"images={m.n_images} skipped={m.n_skipped} operating point: {m.operating.label()}"
                + (f" ranks={ctx.world_size}" if ctx.enabled else "")
            )
