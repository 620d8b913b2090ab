"""`rpol-edge export`: model file -> ONNX (FP32, FP16, INT8) -> TensorRT, in one call.

Or, on the device, an exported ``.onnx`` -> TensorRT engine: the ONNX was written on a PC (fit and
export need PyTorch), the engine is built where it runs (plans are tied to the TensorRT version
and GPU), and that step needs neither PyTorch nor the ``onnx`` package.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rpol_edge.core.onnx_meta import read_onnx_meta
from rpol_edge.exporters.formats import DEEPSTREAM_INT8, FORMATS, ExportError, check_frame_covers_input
from rpol_edge.exporters.onnx_export import export_onnx


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
    openvino: bool = False
    """Also write OpenVINO IRs (``model.xml``; ``model.int8.xml`` with ``int8``)."""
    openvino_precision: str = "f32"
    """What the IR of the FP32 graph runs at: ``f32`` (exact) or ``bf16`` (AMX / AVX-512 BF16 CPUs)."""
    triton: Path | None = None
    """Also write a Triton model repository here (`rpol_edge.exporters.triton`)."""
    triton_name: str = "rpol"
    deepstream: Path | None = None
    """Also write the DeepStream hand-off here: the nvinfer graph, config, record and README
    (`rpol_edge.exporters.deepstream`)."""

    @property
    def from_onnx(self) -> bool:
        return self.model.suffix.lower() == ".onnx"

    def validate(self) -> None:
        """Refuse impossible combinations before anything is traced or built."""
        if self.deepstream is not None:
            self._validate_deepstream()
        if self.from_onnx:
            if not self.trt and not self.triton:
                raise ExportError(
                    f"{self.model} is already ONNX: add trt=True to build a TensorRT engine from it on this "
                    "device; the other formats are exported from the fitted .rpol model"
                )
            options = {
                "frame_size": self.frame_size,
                "calib_root": self.calib_root,
                "weights": self.weights,
                "openvino": self.openvino,
            }
            given = [f"`{name}`" for name, value in options.items() if value]
            if given:
                raise ExportError(
                    f"{', '.join(given)}: fixed when {self.model.name} was exported; "
                    "export again from the .rpol"
                )
        elif self.model.suffix != ".rpol":
            raise ExportError(
                f"{self.model}: export starts from a fitted .rpol model "
                "(or, with trt=True, an exported .onnx)"
            )
        if self.int8 and not self.from_onnx and not (self.calib_data and self.calib_root):
            raise ExportError("int8=True needs calibration images: calib_data=KIND calib_root=DIR")
        if self.trt:
            from rpol_edge.runtimes.trt_common import require_tensorrt

            require_tensorrt()
        if self.openvino:
            if self.openvino_precision not in ("f32", "bf16"):
                raise ExportError(f"openvino_precision={self.openvino_precision!r}: choose f32 or bf16")
            try:
                import openvino  # noqa: F401
            except ImportError:
                raise ExportError("openvino=True needs OpenVINO: pip install 'rpol-edge[openvino]'") from None
        if self.frame_format not in ("bgr", "rgb"):
            raise ExportError(f"frame_format={self.frame_format!r}: choose bgr or rgb")
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise ExportError(f"{self.out_dir} exists and is not a folder")
        if self.triton:
            self._validate_triton()

    def _validate_deepstream(self) -> None:
        assert self.deepstream is not None
        if self.from_onnx:
            raise ExportError(
                "`deepstream`: the nvinfer graph is traced from the fitted .rpol model, "
                "not from an exported .onnx"
            )
        if self.int8:
            raise ExportError(DEEPSTREAM_INT8)
        if self.frame_size:
            raise ExportError(
                "`deepstream` with `frame_size`: nvinfer scales every frame to the network size itself; "
                "export the hand-off without `frame_size`"
            )
        if self.deepstream.exists() and not self.deepstream.is_dir():
            raise ExportError(f"deepstream={self.deepstream}: exists and is not a folder")

    def _validate_triton(self) -> None:
        from rpol_edge.exporters.triton import check_name, model_config_pb2

        model_config_pb2()  # the serve extra, before anything is traced
        check_name(self.triton_name)
        if not self.from_onnx and self.batch[0] == self.batch[2]:
            raise ExportError(
                f"`triton`: Triton batches requests into a batch range, batch={self.batch[0]} is fixed: "
                "give batch=MIN:OPT:MAX (e.g. 1:4:8)"
            )
        if self.triton and self.triton.exists() and not self.triton.is_dir():
            raise ExportError(f"triton={self.triton}: exists and is not a folder")


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
        raise ValueError(f"batch={text!r}: give N or MIN:OPT:MAX") from None
    if len(parts) == 1:
        parts *= 3
    if len(parts) != 3 or not 1 <= parts[0] <= parts[1] <= parts[2]:
        raise ValueError(f"batch={text!r}: need 1 <= MIN <= OPT <= MAX")
    return parts[0], parts[1], parts[2]


def onnx_precision(path: Path, fp16: bool, int8: bool) -> str:
    """The engine precision an exported ONNX builds: its own, or fp16 from an fp32 graph (--fp16)."""
    meta = read_onnx_meta(path)
    if meta.precision == "int8" and meta.extra.get("int8_scheme") != "symmetric":
        raise ExportError(
            f"{path.name} is the ONNX Runtime (CPU) INT8 graph, not a TensorRT source; use "
            f"{FORMATS['onnx-int8-trt'].filename} (rpol-edge export MODEL --int8 --trt)"
        )
    if int8 and meta.precision != "int8":
        raise ExportError(
            f"--int8: {path.name} is {meta.precision}; build from {FORMATS['onnx-int8-trt'].filename}"
        )
    if fp16 and meta.precision == "fp32":
        return "fp16"
    if fp16 and meta.precision != "fp16":
        raise ExportError(f"--fp16: {path.name} is {meta.precision}")
    return meta.precision


def run_export(req: ExportRequest) -> ExportResult:
    req.validate()
    if req.from_onnx:
        done = _engine_from_onnx(req) if req.trt else ExportResult()
        if req.triton:
            _triton(req, req.model, done)
        return done
    res = ExportResult()
    frame = (*req.frame_size, req.frame_format) if req.frame_size else None
    if req.frame_size:
        from rpol_edge.core.model_file import read_meta

        check_frame_covers_input(req.frame_size, read_meta(req.model).input_size)

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
        from rpol_edge.exporters.int8 import quantize_int8

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
    if req.openvino:
        from rpol_edge.runtimes.openvino_runtime import write_ir

        res.files["openvino"] = req.out_dir / FORMATS["openvino"].filename
        write_ir(onnx_path, res.files["openvino"], req.openvino_precision)
        if "onnx-int8" in res.files:  # the asymmetric QDQ graph: OpenVINO's INT8 kernels take it
            res.files["openvino-int8"] = req.out_dir / FORMATS["openvino-int8"].filename
            write_ir(res.files["onnx-int8"], res.files["openvino-int8"], "f32")
    if req.trt:
        from rpol_edge.exporters.trt_build import fp16_strategy
        from rpol_edge.runtimes.trt_common import tensorrt_version

        precision = "int8" if req.int8 else ("fp16" if req.fp16 else "fp32")
        source = onnx_path
        if precision == "fp16" and fp16_strategy(tensorrt_version()) == "strongly_typed":
            source = res.files["onnx-fp16"]
        if precision == "int8":
            source = res.files["onnx-int8-trt"]
        _build(req, source, precision, req.batch, res)
    if req.deepstream is not None:
        from rpol_edge.exporters.deepstream import export_deepstream

        res.files.update(
            export_deepstream(
                req.model, req.deepstream, batch=req.batch, precision="fp16" if req.fp16 else "fp32",
                opset=req.opset, exporter=req.exporter, simplify=req.simplify, weights=req.weights,
                trt_targets=req.trt_targets, workspace_mb=req.workspace_mb,
            )
        )  # fmt: skip
    if req.triton:
        _triton(req, onnx_path, res)
    return res


def _triton(req: ExportRequest, onnx_path: Path, res: ExportResult) -> None:
    """The Triton repository from the graph just written (and the engine, where one was built)."""
    from rpol_edge.exporters.triton import RepositoryRequest, export_repository

    assert req.triton is not None
    max_batch = req.batch[2] if req.batch != (1, 1, 1) else 8  # an .onnx given as is: its range decides
    repo = RepositoryRequest(req.triton, req.triton_name, max_batch)
    export_repository(repo, onnx_path, res.files.get("trt"))
    res.files["triton"] = req.triton


def _engine_from_onnx(req: ExportRequest) -> ExportResult:
    from rpol_edge.core.onnx_meta import onnx_batch_range
    from rpol_edge.exporters.trt_build import choose_onnx
    from rpol_edge.runtimes.trt_common import tensorrt_version

    res = ExportResult()
    precision = onnx_precision(req.model, req.fp16, req.int8)
    source = req.model
    if precision == "fp16" and read_onnx_meta(req.model).precision == "fp32":
        # FP16 from the FP32 graph (builder flag, < 10.12) or from the FP16-cast one beside it.
        sibling = req.model.with_name(FORMATS["onnx-fp16"].filename)
        source = choose_onnx("fp16", tensorrt_version(), req.model, sibling if sibling.is_file() else None)
    lo, hi = onnx_batch_range(source)
    batch = req.batch
    if hi is not None and batch != (lo, lo, hi):
        if batch != (1, 1, 1):
            raise ExportError(f"{source.name} has a fixed batch of {lo}: --batch {lo} (or leave --batch out)")
        batch = (lo, lo, hi)  # the default --batch 1 means "the graph's own batch"
    _build(req, source, precision, batch, res)
    return res


def _build(
    req: ExportRequest, source: Path, precision: str, batch: tuple[int, int, int], res: ExportResult
) -> None:
    """The engine (+ sidecar) from ``source``, and the trtexec line that builds the same one."""
    from rpol_edge.exporters.trt_build import build_engine, timing_cache_name
    from rpol_edge.exporters.trtexec import trtexec_command
    from rpol_edge.runtimes import cuda_mem
    from rpol_edge.runtimes.trt_common import tensorrt_version

    version = tensorrt_version()
    engine = req.out_dir / FORMATS["trt"].filename
    cache = req.out_dir / timing_cache_name(version, *cuda_mem.device_info(0))
    req.out_dir.mkdir(parents=True, exist_ok=True)
    build_engine(source, engine, precision, batch, req.workspace_mb, timing_cache=cache)
    res.files["trt"] = engine
    res.trtexec = trtexec_command(
        source, read_onnx_meta(source).input_shape(), precision, version, batch, req.workspace_mb,
        timing_cache=cache,
    )  # fmt: skip
