"""`rpol-edge export`: model file -> ONNX (FP32, FP16, INT8) -> TensorRT, in one call."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rpol_edge.export.formats import FORMATS
from rpol_edge.export.onnx_export import ExportError, export_onnx, read_onnx_meta


@dataclass
class ExportRequest:
    model: Path
    out_dir: Path
    trt: bool = False
    fp16: bool = False
    int8: bool = False
    batch: tuple[int, int, int] = (1, 1, 1)
    opset: int | None = None
    exporter: str = "legacy"
    simplify: bool = True
    trt_targets: tuple[str, ...] | None = None
    """TensorRT versions every TensorRT-bound graph must pass the static check for (None: those
    whose opset range holds the exported opset)."""
    weights: Path | None = None
    calib_data: str = ""
    calib_root: Path | None = None
    calib_split: str = "train"
    workspace_mb: int = 1024
    frame_size: tuple[int, int] | None = None
    """(W, H): every graph takes raw W x H camera frames and resizes/crops them itself."""
    frame_format: str = "bgr"

    def validate(self) -> None:
        """Refuse impossible combinations before anything is traced or built."""
        if self.model.suffix != ".rpol":
            raise ExportError(f"{self.model}: export starts from a fitted .rpol model")
        if self.int8 and not (self.calib_data and self.calib_root):
            raise ExportError("--int8 needs calibration images: --calib-data KIND --calib-root DIR")
        if self.trt:
            from rpol_edge.export.trt_build import require_tensorrt

            require_tensorrt()
        if self.frame_format not in ("bgr", "rgb"):
            raise ExportError(f"--frame-format {self.frame_format!r}: choose bgr or rgb")
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise ExportError(f"{self.out_dir} exists and is not a folder")


@dataclass
class ExportResult:
    files: dict[str, Path] = field(default_factory=dict)
    trtexec: str = ""
    """The trtexec command that builds and times the same engine (with --trt)."""


def parse_batch(text: str) -> tuple[int, int, int]:
    """'4' -> (4, 4, 4) fixed; '1:4:8' -> min, opt, max (dynamic)."""
    try:
        parts = [int(p) for p in text.split(":")]
    except ValueError:
        raise ValueError(f"--batch {text!r}: give N or MIN:OPT:MAX") from None
    if len(parts) == 1:
        parts *= 3
    if len(parts) != 3 or not 1 <= parts[0] <= parts[1] <= parts[2]:
        raise ValueError(f"--batch {text!r}: need 1 <= MIN <= OPT <= MAX")
    return parts[0], parts[1], parts[2]


def run_export(req: ExportRequest) -> ExportResult:
    req.validate()
    res = ExportResult()
    frame = (*req.frame_size, req.frame_format) if req.frame_size else None

    def onnx(fmt: str, precision: str) -> Path:
        path = req.out_dir / FORMATS[fmt].filename
        export_onnx(
            req.model, path, opset=req.opset, batch=req.batch, precision=precision, exporter=req.exporter,
            simplify=req.simplify, weights=req.weights, frame=frame, trt_targets=req.trt_targets,
        )  # fmt: skip
        res.files[fmt] = path
        return path

    onnx_path = onnx("onnx", "fp32")
    if req.int8 and req.calib_root:
        from rpol_edge.export.int8 import quantize_int8

        # ONNX Runtime's CPU kernels want uint8 activations; TensorRT only takes symmetric int8.
        fmt = "onnx-int8-trt" if req.trt else "onnx-int8"
        path = req.out_dir / FORMATS[fmt].filename
        quantize_int8(
            onnx_path, path, req.calib_data, req.calib_root, req.calib_split, symmetric=req.trt,
            trt_targets=req.trt_targets,
        )  # fmt: skip
        res.files[fmt] = path
    if req.fp16:
        onnx("onnx-fp16", "fp16")
    if req.trt:
        from rpol_edge.export.trt_build import build_engine, fp16_strategy, tensorrt_version

        precision = "int8" if req.int8 else ("fp16" if req.fp16 else "fp32")
        source = onnx_path
        if precision == "fp16" and fp16_strategy(tensorrt_version()) == "strongly_typed":
            source = res.files["onnx-fp16"]
        if precision == "int8":
            source = res.files["onnx-int8-trt"]
        engine = req.out_dir / FORMATS["trt"].filename
        build_engine(
            source,
            engine,
            precision=precision,
            batch=req.batch,
            workspace_mb=req.workspace_mb,
            timing_cache=req.out_dir / "timing.cache",
        )
        res.files["trt"] = engine
        from rpol_edge.export.trtexec import trtexec_command

        res.trtexec = trtexec_command(
            source, read_onnx_meta(source).input_shape(), precision, tensorrt_version(), req.batch,
            req.workspace_mb, timing_cache=req.out_dir / "timing.cache",
        )  # fmt: skip
    return res
