"""The ``trtexec`` command that builds and times the same engine as ``rpol-edge export --trt``.

So a Jetson user can cross-check rpol-edge's engine and latency with NVIDIA's own tool. Every
flag mirrors a decision of :func:`rpol_edge.exporters.trt.build.build_engine`:

- precision: FP16 is ``--fp16`` over the FP32 graph before TensorRT 10.12 and ``--stronglyTyped``
  over the FP16-cast graph from 10.12 on (:func:`fp16_strategy`); INT8 is the symmetric QDQ graph
  with ``--int8`` before 10.12, ``--stronglyTyped`` after. TensorRT 11's trtexec has no
  ``--fp16``/``--int8`` and its ``--stronglyTyped`` is a deprecated no-op (every network is
  strongly typed), so 11.x lines carry neither. FP32 passes ``--noTF32``: TensorRT
  enables TF32 by default, and rpol-edge builds its FP32 engines with TF32 off.
- shapes: the optimization profile (``--minShapes/--optShapes/--maxShapes``) for a dynamic
  batch, ``--shapes`` for a fixed one; timing runs at the opt batch.
- ``--memPoolSize=workspace:<MiB>`` and ``--timingCacheFile`` as the builder uses them (a cache per
  TensorRT version, and per GPU where the GPU is known: :func:`timing_cache_name`).
- ``--saveEngine`` writes beside, not over, rpol-edge's engine (that one has a sidecar).
- no ``--noDataTransfers``: rpol-edge's infer time includes the uint8 upload and the two maps'
  download, and trtexec then reports H2D / GPU compute / D2H separately, so both the comparable
  end-to-end latency and the bare engine time are printed.
- CUDA graphs as rpol-edge's runtime runs them (its ``cuda_graph`` option; off by default):
  ``--useCudaGraph`` to turn them on before 11; from 11 trtexec uses graphs by default, so
  ``--noCudaGraph`` turns them off.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from rpol_edge.core.onnx_meta import INPUT
from rpol_edge.exporters.trt.build import fp16_strategy


def trtexec_args(
    onnx_path: Path,
    input_shape: int | tuple[int, int, int],
    precision: str,
    trt_version: str,
    batch: tuple[int, int, int] = (1, 1, 1),
    workspace_mb: int = 1024,
    engine_path: Path | None = None,
    timing_cache: Path | None = None,
    cuda_graph: bool = False,
) -> list[str]:
    """argv of the trtexec run; ``onnx_path`` must be the file ``build_engine`` parses for this
    precision on ``trt_version`` (:func:`rpol_edge.exporters.trt.build.choose_onnx`). ``input_shape``:
    (H, W, 3) of one frame (``ModelMeta.input_shape()``: a raw-frame graph takes whole frames), or
    K for K x K."""
    onnx_path = Path(onnx_path)
    lo, opt, hi = batch
    h, w, _ = (input_shape, input_shape, 3) if isinstance(input_shape, int) else input_shape

    def shape(n: int) -> str:
        return f"{INPUT}:{n}x{h}x{w}x3"

    args = ["trtexec", f"--onnx={onnx_path}"]
    if lo == hi:
        args.append(f"--shapes={shape(lo)}")
    else:
        args += [f"--minShapes={shape(lo)}", f"--optShapes={shape(opt)}", f"--maxShapes={shape(hi)}"]
    typed = fp16_strategy(trt_version) == "strongly_typed"
    major = _major(trt_version)
    if precision in ("fp16", "int8"):
        if not typed:
            args.append(f"--{precision}")
        elif major < 11:
            args.append("--stronglyTyped")
    elif precision == "fp32":
        args.append("--noTF32")
    else:
        raise ValueError(f"precision {precision!r}: choose fp32, fp16 or int8")
    args.append(f"--memPoolSize=workspace:{int(workspace_mb)}")
    folder = onnx_path.parent
    args.append(f"--timingCacheFile={timing_cache or folder / f'timing-{trt_version}.cache'}")
    args.append(f"--saveEngine={engine_path or folder / 'model.trtexec.engine'}")
    if cuda_graph and major < 11:
        args.append("--useCudaGraph")
    elif not cuda_graph and major >= 11:
        args.append("--noCudaGraph")
    return args


def _major(trt_version: str) -> int:
    try:
        return int(trt_version.strip().split(".")[0])
    except ValueError:
        raise ValueError(f"not a TensorRT version: {trt_version!r}") from None


def trtexec_command(*args: object, **kwargs: object) -> str:
    """:func:`trtexec_args` as one shell line."""
    return " ".join(shlex.quote(a) for a in trtexec_args(*args, **kwargs))  # type: ignore[arg-type]


def trtexec_lines(onnx_path: Path, opt_batch: int = 1, workspace_mb: int = 1024) -> list[tuple[str, str]]:
    """(label, command) for each engine this exported ONNX file is the source of, per TensorRT
    version it was checked for (``trt_targets`` in its metadata). Empty for the CPU INT8 graph."""
    from rpol_edge.core.onnx_meta import read_onnx_header
    from rpol_edge.exporters.trt.compat import recorded_targets

    meta, (lo, hi) = read_onnx_header(onnx_path)
    # A dynamic graph gets the profile rpol-edge builds for --batch 1:OPT:max(OPT, 8).
    batch = (1, max(opt_batch, 1), max(opt_batch, 8)) if hi is None else (lo, lo, hi)
    targets = recorded_targets(meta)
    if meta.precision == "int8" and meta.extra.get("int8_scheme") != "symmetric":
        return []
    lines = []
    for version in targets:
        typed = fp16_strategy(version) == "strongly_typed"
        wanted = {"fp32": ["fp32"] + ([] if typed else ["fp16"]), "fp16": ["fp16"] if typed else []}
        for precision in wanted.get(meta.precision, [meta.precision]):
            cmd = trtexec_command(onnx_path, meta.input_shape(), precision, version, batch, workspace_mb)
            lines.append((f"TensorRT {version} {precision}", cmd))
    return lines
