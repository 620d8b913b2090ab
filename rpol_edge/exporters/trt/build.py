"""Build a TensorRT engine from the exported ONNX graph, with its metadata in a JSON sidecar.

The engine is written as a plain serialized plan (``trtexec --loadEngine`` and any TensorRT tool
open it unchanged) and ``<engine>.json`` beside it holds :class:`EngineMeta`: the model's
metadata record plus what the plan is tied to (TensorRT version, GPU, batch profile). Runtimes
read the sidecar and refuse a plan built for another TensorRT or GPU before deserializing it,
since TensorRT would otherwise fail with an opaque message (or not at all).

FP16 has two routes, chosen by :func:`fp16_strategy` from the TensorRT version: before 10.12 the
FP32 graph is built with ``BuilderFlag.FP16`` (weak typing, the builder picks layer precisions);
from 10.12 on (weak typing is deprecated there, gone in 11) a strongly typed network is built
from the FP16-cast ONNX the exporter writes, so the graph's own types decide. :func:`choose_onnx`
maps that onto the two files for the caller.

The version branches (8.6 on JetPack 6.0, 10.3 on JetPack 6.1/6.2, 10.x and 11.x on PCs) live in
small pure functions -- :func:`network_flags`, :func:`fast_precisions`, :func:`parse_errors` --
so the tests run them against per-version stand-ins of the ``tensorrt`` module.

TensorRT and cuda-python are imported only inside the functions that need them, so this module
imports (and its pure functions test) anywhere.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rpol_edge.core.engine_meta import EngineMeta, device_model, sidecar_path
from rpol_edge.core.files import file_sha256, write_bytes_atomic
from rpol_edge.core.metadata import ModelMeta
from rpol_edge.core.onnx_meta import INPUT, MAP_OUTPUTS, OUTPUTS, read_onnx_meta
from rpol_edge.runtimes.trt_common import dims, require_tensorrt, trt_logger, version_tuple

if TYPE_CHECKING:
    import tensorrt as trt

PRECISIONS = ("fp32", "fp16", "int8")

Fp16Strategy = Literal["builder_flag", "strongly_typed"]


class EngineBuildError(RuntimeError):
    """The ONNX graph could not be parsed or built into an engine, or the request is refused."""


def fp16_strategy(trt_version: str) -> Fp16Strategy:
    """How FP16 is requested on this TensorRT: ``builder_flag`` (< 10.12: FP16 flag over the FP32
    graph) or ``strongly_typed`` (>= 10.12 and 11.x: strongly typed network over the FP16 graph)."""
    return "strongly_typed" if version_tuple(trt_version) >= (10, 12) else "builder_flag"


def choose_onnx(precision: str, trt_version: str, fp32_onnx: Path, fp16_onnx: Path | None) -> Path:
    """The ONNX file ``build_engine`` must parse for ``precision`` on this TensorRT version."""
    if precision == "fp16" and fp16_strategy(trt_version) == "strongly_typed":
        if fp16_onnx is None:
            raise EngineBuildError(
                f"TensorRT {trt_version} builds FP16 from the FP16-cast ONNX (strongly typed); export it too"
            )
        return fp16_onnx
    return fp32_onnx


def network_flags(trt_mod: Any, version: str, strongly_typed: bool) -> int:
    """``Builder.create_network`` flags for this TensorRT.

    - below 10, 0 means an implicit-batch network, which the 8.6 ONNX parser refuses ("only
      supports TensorRT INetworkDefinitions with an explicit batch dimension"): EXPLICIT_BATCH;
    - 10.x: every network is explicit-batch (EXPLICIT_BATCH is deprecated and ignored, so not
      passed); ``strongly_typed`` sets STRONGLY_TYPED;
    - 11.x: every network is strongly typed and EXPLICIT_BATCH is gone; STRONGLY_TYPED is kept
      only as an ignored, deprecated flag (and renumbered), so nothing is passed.

    Bits are always ``1 << int(flag)`` of the installed module: the numbers differ by version."""
    flag = trt_mod.NetworkDefinitionCreationFlag
    major = version_tuple(version)[0]
    flags = 0
    if major < 10:
        flags |= 1 << int(flag.EXPLICIT_BATCH)
    if strongly_typed and major == 10:
        flags |= 1 << int(flag.STRONGLY_TYPED)
    return flags


def fast_precisions(cc: str) -> tuple[bool, bool]:
    """(fast FP16, fast INT8) for a compute capability "major.minor", as TensorRT's hardware
    support matrix lists them: FP16 on 5.3 (Jetson TX1/Nano), 6.0, 6.2 (TX2) and 7.0 on; INT8 on
    6.1 and from 7.0 on (Xavier 7.2, Turing 7.5, Ampere, Orin 8.7, Hopper, Blackwell).

    ``Builder.platform_has_fast_fp16/int8`` answered this before; they are deprecated since
    TensorRT 10.5 and not bound in 11, so the answer comes from the capability the build reads."""
    major, minor = version_tuple(cc)
    fp16 = (major, minor) in ((5, 3), (6, 0), (6, 2)) or major >= 7
    int8 = (major, minor) == (6, 1) or major >= 7
    return fp16, int8


def parse_errors(parser: Any) -> str:
    """The ONNX parser's errors, one line each. ``node_name``/``node_operator`` exist from 10.0 on;
    8.6's ParserError has only the node index, so they are asked for only where bound."""
    lines = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        node = int(err.node())
        if node < 0:
            where = "graph"
        else:
            name = err.node_name() if hasattr(err, "node_name") else ""
            op = err.node_operator() if hasattr(err, "node_operator") else ""
            where = f"node {node}" + (f" {name!r}" if name else "") + (f" ({op})" if op else "")
        lines.append(f"  {where}: {err.desc()}")
    return "\n".join(lines)


TIMING_CACHE_GLOB = "timing-*.cache"
"""Every name `timing_cache_name` gives."""


def timing_cache_name(trt_version: str, gpu_name: str, cc: str) -> str:
    """A timing cache per TensorRT version and GPU (``timing-10.3.0.30-Orin-sm87.cache``): a cache
    copied from a PC, or left by a JetPack upgrade, then never meets the build it does not fit."""
    gpu = re.sub(r"[^A-Za-z0-9.]+", "-", gpu_name).strip("-") or "gpu"
    return f"timing-{trt_version}-{gpu}-sm{cc.replace('.', '')}.cache"


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise EngineBuildError(f"precision {precision!r}: choose {', '.join(PRECISIONS)}")


def _check_batch(batch: tuple[int, int, int]) -> tuple[int, int, int]:
    lo, opt, hi = (int(b) for b in batch)
    if not 1 <= lo <= opt <= hi:
        raise EngineBuildError(f"batch (min, opt, max) = {batch}: need 1 <= min <= opt <= max")
    return lo, opt, hi


def _check_network(
    network: trt.INetworkDefinition, frame: tuple[int, int, int], batch: tuple[int, int, int]
) -> None:
    """The ONNX contract: ``frames`` uint8 (N, *frame) -- (K, K, 3), or (H, W, 3) for a raw-frame
    graph; ``score`` float32, ``mask`` uint8 and ``peak`` float32 (absent from older graphs)."""
    import tensorrt as trt

    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    outputs = {network.get_output(i).name: network.get_output(i) for i in range(network.num_outputs)}
    if [t.name for t in inputs] != [INPUT] or set(outputs) not in (set(OUTPUTS), set(MAP_OUTPUTS)):
        raise EngineBuildError(
            f"graph has inputs {[t.name for t in inputs]} and outputs {sorted(outputs)}; expected "
            f"[{INPUT}] and {list(OUTPUTS)} (export it with rpol-edge export MODEL --onnx)"
        )
    frames = inputs[0]
    shape = dims(frames.shape)
    if frames.dtype != trt.DataType.UINT8 or len(shape) != 4 or shape[1:] != frame:
        raise EngineBuildError(f"input {INPUT} is {frames.dtype} {shape}, expected uint8 (N, *{frame})")
    if shape[0] != -1 and not batch[0] == batch[2] == shape[0]:
        raise EngineBuildError(f"the ONNX batch is fixed at {shape[0]}; build with batch=({shape[0]},) * 3")
    expected = {"score": trt.DataType.FLOAT, "mask": trt.DataType.UINT8, "peak": trt.DataType.FLOAT}
    for name, dtype in expected.items():
        if name in outputs and outputs[name].dtype != dtype:
            raise EngineBuildError(f"output {name} is {outputs[name].dtype}, expected {dtype}")


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    precision: str = "fp16",
    batch: tuple[int, int, int] = (1, 1, 1),
    workspace_mb: int = 1024,
    timing_cache: Path | None = None,
    source_beside: bool | None = None,
) -> EngineMeta:
    """Build ``engine_path`` (plan) and ``<engine_path>.json`` (:class:`EngineMeta`) on this GPU.

    ``onnx_path`` must be the file :func:`choose_onnx` picks: the FP16-cast ONNX for FP16 on
    TensorRT >= 10.12, the FP32 one otherwise (checked against the ONNX's own metadata).
    ``batch`` is the (min, opt, max) optimization profile. ``timing_cache``, when given, is read
    if it exists and rewritten after the build, which makes rebuilds much faster; name it with
    :func:`timing_cache_name` (a foreign one is set aside with a warning, never fatal). FP32
    engines are built with TF32 off.

    INT8 is explicit quantization: ``onnx_path`` is the symmetric QDQ graph the exporter writes
    (``model.int8.trt.onnx``, calibrated on fit images), so the Q/DQ scales decide what runs in
    INT8; implicit calibrated INT8 is deprecated in TensorRT 10 and gone in 11. Refused on GPUs
    without fast INT8 (:func:`fast_precisions`).

    A source ONNX beside the engine is named in the sidecar, so the runtime can refuse the engine
    once that ONNX is exported again. ``source_beside`` says whether it will be, where the engine
    is written elsewhere first (an export's temporary folder); default: whether it is now.
    """
    require_tensorrt()
    import tensorrt as trt

    from rpol_edge.runtimes import cuda_mem

    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if source_beside is None:
        source_beside = onnx_path.parent.resolve() == engine_path.parent.resolve()
    _check_precision(precision)
    lo, opt, hi = _check_batch(batch)
    version = trt.__version__
    strategy = fp16_strategy(version)
    onnx_meta = read_onnx_meta(onnx_path)
    _check_onnx_precision(precision, strategy, version, onnx_path.name, onnx_meta)
    gpu_name, cc = cuda_mem.device_info(0)
    _check_gpu(precision, gpu_name, cc)
    logger = trt_logger()
    builder = trt.Builder(logger)
    # Strongly typed from 10.12 on: the graph's own types (FP16 casts, Q/DQ) decide precisions.
    typed = precision in ("fp16", "int8") and strategy == "strongly_typed"
    frame = onnx_meta.input_shape()
    network = _parse_network(builder, logger, onnx_path, version, typed, frame, (lo, opt, hi))
    config = _builder_config(builder, precision, typed, workspace_mb, frame, (lo, opt, hi))
    if timing_cache is not None:
        _use_timing_cache(config, Path(timing_cache))

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineBuildError(f"TensorRT {version} failed to build {onnx_path.name} (see its log above)")
    plan_bytes = bytes(memoryview(plan))

    meta = EngineMeta(
        tensorrt_version=version,
        gpu_name=gpu_name,
        compute_capability=cc,
        precision=precision,
        min_batch=lo,
        opt_batch=opt,
        max_batch=hi,
        input_size=onnx_meta.input_size,
        onnx_sha256=file_sha256(onnx_path),
        model=onnx_meta.replace(precision=precision),
        engine_sha256=hashlib.sha256(plan_bytes).hexdigest(),
        fp16_strategy=strategy if precision == "fp16" else "",
        onnx_name=onnx_path.name if source_beside else "",
        device_model=device_model(),
    )
    _write_engine(engine_path, plan_bytes, meta)
    # Only after the plan is safe on disk: a cache that cannot be written costs the next build time,
    # never this build's result.
    if timing_cache is not None:
        _save_timing_cache(config, Path(timing_cache))
    return meta


def _check_onnx_precision(
    precision: str, strategy: Fp16Strategy, version: str, name: str, onnx_meta: ModelMeta
) -> None:
    """The ONNX file must be the one :func:`choose_onnx` picks for ``precision`` on this TensorRT."""
    onnx_precision, extra = onnx_meta.precision, onnx_meta.extra
    if precision == "fp16" and strategy == "strongly_typed" and onnx_precision != "fp16":
        raise EngineBuildError(
            f"TensorRT {version} builds FP16 as a strongly typed network: pass the FP16-cast ONNX "
            f"(rpol-edge export MODEL --onnx --fp16 --trt writes it), "
            f"not {name} ({onnx_precision})"
        )
    if precision == "fp32" and onnx_precision != "fp32":
        raise EngineBuildError(f"an FP32 engine needs the FP32 ONNX; {name} is {onnx_precision}")
    if precision == "int8" and (onnx_precision != "int8" or extra.get("int8_scheme") != "symmetric"):
        raise EngineBuildError(
            f"a TensorRT INT8 engine builds from the symmetric QDQ ONNX "
            f"(rpol-edge export MODEL --int8 --trt writes model.int8.trt.onnx), not {name}"
        )


def _check_gpu(precision: str, gpu_name: str, cc: str) -> None:
    """INT8 is refused on a GPU without fast INT8; FP16 without fast FP16 only warns."""
    fast_fp16, fast_int8 = fast_precisions(cc)
    if precision == "int8" and not fast_int8:
        raise EngineBuildError(f"{gpu_name} (sm {cc}) has no fast INT8; build fp16 instead")
    if precision == "fp16" and not fast_fp16:
        warnings.warn(
            f"{gpu_name} (sm {cc}) has no fast FP16; the fp16 engine may be slower than fp32", stacklevel=3
        )


def _parse_network(
    builder: trt.Builder,
    logger: trt.ILogger,
    onnx_path: Path,
    version: str,
    typed: bool,
    frame: tuple[int, int, int],
    batch: tuple[int, int, int],
) -> trt.INetworkDefinition:
    """The network parsed from ``onnx_path``, checked against the ONNX contract."""
    import tensorrt as trt

    network = builder.create_network(network_flags(trt, version, typed))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        raise EngineBuildError(f"TensorRT {version} could not parse {onnx_path}:\n{parse_errors(parser)}")
    _check_network(network, frame, batch)
    return network


def _builder_config(
    builder: trt.Builder,
    precision: str,
    typed: bool,
    workspace_mb: int,
    frame: tuple[int, int, int],
    batch: tuple[int, int, int],
) -> trt.IBuilderConfig:
    """Workspace, precision flags and the (min, opt, max) batch profile."""
    import tensorrt as trt

    lo, opt, hi = batch
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if precision == "fp32":
        # TF32 is on by default in every builder config: Ampere, Orin and later would run the
        # convolutions with 10-bit mantissas. An "fp32" engine means FP32 (trtexec: --noTF32).
        config.clear_flag(trt.BuilderFlag.TF32)
    if precision == "fp16" and not typed:
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8" and not typed:
        config.set_flag(trt.BuilderFlag.INT8)  # lets the weakly typed builder honour the Q/DQ nodes
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT, trt.Dims([lo, *frame]), trt.Dims([opt, *frame]), trt.Dims([hi, *frame]))
    config.add_optimization_profile(profile)
    return config


def _write_engine(engine_path: Path, plan_bytes: bytes, meta: EngineMeta) -> None:
    """The plan, then its sidecar, each written atomically."""
    side = sidecar_path(engine_path)
    side.unlink(missing_ok=True)  # never leave an old sidecar describing the new plan
    write_bytes_atomic(engine_path, plan_bytes)
    write_bytes_atomic(side, meta.to_json().encode())


def _use_timing_cache(config: trt.IBuilderConfig, path: Path) -> None:
    """Read ``path`` into the builder config; one made by another TensorRT or GPU (or damaged) is
    set aside with a warning and the build starts from an empty cache, which is written back."""
    data = b""
    if path.is_file():
        try:
            data = path.read_bytes()
        except OSError as exc:
            warnings.warn(f"timing cache {path} unreadable ({exc}); building without it", stacklevel=3)
    cache = config.create_timing_cache(data) if data else None
    if data and (cache is None or not config.set_timing_cache(cache, False)):
        warnings.warn(
            f"timing cache {path} was made by another TensorRT version or GPU (or is damaged); "
            "building without it, and it will be rewritten for this one",
            stacklevel=3,
        )
        cache = None
    if cache is None:
        cache = config.create_timing_cache(b"")
        if cache is None or not config.set_timing_cache(cache, False):
            warnings.warn("TensorRT refused an empty timing cache; building without one", stacklevel=3)


def _save_timing_cache(config: trt.IBuilderConfig, path: Path) -> None:
    cache = config.get_timing_cache()  # None when no cache was set
    if cache is None:
        return
    blob = cache.serialize()
    if blob is None:
        warnings.warn(f"TensorRT could not serialize the timing cache; {path} not written", stacklevel=3)
        return
    try:
        write_bytes_atomic(path, bytes(memoryview(blob)))
    except OSError as exc:
        warnings.warn(f"timing cache {path} not written ({exc})", stacklevel=3)
