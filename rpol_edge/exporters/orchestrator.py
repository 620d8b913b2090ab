"""`rpol-edge export`: model file -> ONNX (FP32, FP16, INT8) -> TensorRT, in one call.

Or, from an exported ``.onnx``, the formats made from the graph alone, without PyTorch: a TensorRT
engine (on the device: the ONNX was written on a PC, the engine is built where it runs, since
plans are tied to the TensorRT version and GPU; this step needs neither PyTorch nor the ``onnx``
package), an OpenVINO IR and a Triton repository. What the graph fixed when it was traced (its
precision, the INT8 calibration, raw-frame input, the DeepStream graph) comes from the ``.rpol``.

Every file is written into temporary folders and moved into place at the end
(`rpol_edge.exporters.staging`): a failed export leaves the output folders as they were.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from rpol_edge.core.export_formats import DEEPSTREAM_INT8, FORMATS, ExportError, check_frame_covers_input
from rpol_edge.core.onnx_meta import read_onnx_meta
from rpol_edge.exporters.onnx_export import export_onnx
from rpol_edge.exporters.staging import Staging, staged

FROM_RPOL = "the FP16 and INT8 graphs, `frame_size` and `deepstream` are exported from the fitted .rpol"
"""What an exported .onnx cannot give (said in the errors that refuse them)."""


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
    """Also write a Triton model repository here (`rpol_edge.integrations.triton.repository`)."""
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
            self._validate_onnx_source()
        elif self.model.suffix != ".rpol":
            raise ExportError(
                f"{self.model}: export starts from a fitted .rpol model (or an exported .onnx, for "
                "trt=True, openvino=True and triton=DIR)"
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
        self._validate_inputs()

    def _validate_onnx_source(self) -> None:
        if not (self.trt or self.openvino or self.triton):
            raise ExportError(
                f"{self.model} is already ONNX: add trt=True (a TensorRT engine, built on this device), "
                f"openvino=True (an OpenVINO IR) or triton=DIR (a Triton repository); {FROM_RPOL}"
            )
        options = {
            "frame_size": self.frame_size,
            "calib_root": self.calib_root,
            "weights": self.weights,
        }
        given = [f"`{name}`" for name, value in options.items() if value]
        if given:
            raise ExportError(
                f"{', '.join(given)}: fixed when {self.model.name} was exported; export again from the .rpol"
            )
        precision = [f"`{name}`" for name, on in (("fp16", self.fp16), ("int8", self.int8)) if on]
        if precision and not self.trt:
            raise ExportError(
                f"{precision[0]}: from an exported .onnx it sets the TensorRT engine's precision (add "
                f"trt=True); {FROM_RPOL}"
            )

    def _validate_inputs(self) -> None:
        """The files the export reads are there, and the calibration images are listed, now: not
        after the FP32 graph has been traced."""
        if not self.model.is_file():
            raise ExportError(f"{self.model}: no such model file")
        if self.weights is not None and not self.weights.is_file():
            raise ExportError(f"weights={self.weights}: no such file")
        if self.int8 and not self.from_onnx and self.calib_root is not None:
            from rpol_edge.data import DatasetError, read_dataset

            try:
                read_dataset(self.calib_data, self.calib_root, self.calib_split)
            except DatasetError as exc:
                raise ExportError(f"INT8 calibration images: {exc}") from None

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
        from rpol_edge.integrations.triton.repository import check_name, model_config_pb2

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
    engine_build: tuple[Path, str, tuple[int, int, int], int, Path] | None = field(default=None, repr=False)
    """(source, precision, batch, workspace MB, timing cache) of the engine built: the trtexec line
    is made from them once the files are in place, so that it names where they are."""


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
    """Every format ``req`` asks for, written into temporary folders and moved into place only
    when all of them are: a failed export leaves the output folders as they were."""
    req.validate()
    folders = [req.out_dir, *(p for p in (req.triton, req.deepstream) if p is not None)]
    with staged(folders) as stage:
        work = replace(
            req,
            out_dir=stage[req.out_dir],
            triton=stage[req.triton] if req.triton else None,
            deepstream=stage[req.deepstream] if req.deepstream else None,
        )
        _carry_timing_caches(req.out_dir, work.out_dir)
        res = _from_onnx(work, stage) if req.from_onnx else _from_rpol(work, stage)
    res.files = {fmt: stage.final(path) for fmt, path in res.files.items()}
    if res.engine_build is not None:
        from rpol_edge.exporters.trt.trtexec import trtexec_command
        from rpol_edge.runtimes.trt_common import tensorrt_version

        source, precision, batch, workspace_mb, cache = res.engine_build
        source, cache = stage.final(source), stage.final(cache)
        res.trtexec = trtexec_command(
            source, read_onnx_meta(source).input_shape(), precision, tensorrt_version(), batch,
            workspace_mb, timing_cache=cache,
        )  # fmt: skip
    return res


def _carry_timing_caches(out_dir: Path, work_dir: Path) -> None:
    """TensorRT timing caches already in the output folder, copied where the engine is built:
    a rebuild reuses them (much faster), and they go back, updated, with the other files."""
    import shutil

    from rpol_edge.exporters.trt.build import TIMING_CACHE_GLOB

    for cache in sorted(out_dir.glob(TIMING_CACHE_GLOB)) if out_dir.is_dir() else []:
        work_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cache, work_dir / cache.name)


def _from_onnx(req: ExportRequest, stage: Staging) -> ExportResult:
    """The formats made from an exported graph alone: engine, OpenVINO IR, Triton repository."""
    res = _engine_from_onnx(req, stage) if req.trt else ExportResult()
    if req.openvino:
        _openvino_from_onnx(req, res)
    if req.triton:
        _triton(req, req.model, res)
    return res


def _openvino_from_onnx(req: ExportRequest, res: ExportResult) -> None:
    """The IR of an exported graph, as `_from_rpol` writes it from the graph it has just exported
    (the same `write_ir`, so the same metadata record): ``model.int8.xml`` for an INT8 graph."""
    from rpol_edge.runtimes.openvino_runtime import write_ir

    precision = read_onnx_meta(req.model).precision
    if precision != "fp32" and req.openvino_precision != "f32":
        raise ExportError(
            f"--openvino-precision {req.openvino_precision}: for the FP32 graph; {req.model.name} is "
            f"{precision} (its IR runs as the graph is)"
        )
    fmt = "openvino-int8" if precision == "int8" else "openvino"
    res.files[fmt] = req.out_dir / FORMATS[fmt].filename
    write_ir(req.model, res.files[fmt], req.openvino_precision)


def _from_rpol(req: ExportRequest, stage: Staging) -> ExportResult:
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
        from rpol_edge.exporters.trt.build import fp16_strategy
        from rpol_edge.runtimes.trt_common import tensorrt_version

        precision = "int8" if req.int8 else ("fp16" if req.fp16 else "fp32")
        source = onnx_path
        if precision == "fp16" and fp16_strategy(tensorrt_version()) == "strongly_typed":
            source = res.files["onnx-fp16"]
        if precision == "int8":
            source = res.files["onnx-int8-trt"]
        _build(req, source, precision, req.batch, res, stage)
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
    from rpol_edge.integrations.triton.repository import RepositoryRequest, export_repository

    assert req.triton is not None
    max_batch = req.batch[2] if req.batch != (1, 1, 1) else 8  # an .onnx given as is: its range decides
    repo = RepositoryRequest(req.triton, req.triton_name, max_batch)
    export_repository(repo, onnx_path, res.files.get("trt"))
    res.files["triton"] = req.triton


def _engine_from_onnx(req: ExportRequest, stage: Staging) -> ExportResult:
    from rpol_edge.core.onnx_meta import onnx_batch_range
    from rpol_edge.exporters.trt.build import choose_onnx
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
    _build(req, source, precision, batch, res, stage)
    return res


def _build(
    req: ExportRequest,
    source: Path,
    precision: str,
    batch: tuple[int, int, int],
    res: ExportResult,
    stage: Staging,
) -> None:
    """The engine (+ sidecar) from ``source``; `run_export` makes the trtexec line that builds the
    same one once the files are in place."""
    from rpol_edge.exporters.trt.build import build_engine, timing_cache_name
    from rpol_edge.runtimes import cuda_mem
    from rpol_edge.runtimes.trt_common import tensorrt_version

    version = tensorrt_version()
    engine = req.out_dir / FORMATS["trt"].filename
    cache = req.out_dir / timing_cache_name(version, *cuda_mem.device_info(0))
    req.out_dir.mkdir(parents=True, exist_ok=True)
    # Where both will be once in place: the engine is written to a temporary folder first.
    beside = stage.final(source).parent.resolve() == stage.final(req.out_dir).resolve()
    build_engine(source, engine, precision, batch, req.workspace_mb, timing_cache=cache, source_beside=beside)
    res.files["trt"] = engine
    res.engine_build = (source, precision, batch, req.workspace_mb, cache)
