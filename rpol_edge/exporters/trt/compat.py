"""Static TensorRT-compatibility check of an ONNX graph, without TensorRT.

TensorRT cannot be installed on the machines this is developed on, so the rules its ONNX parser
applies are written down here as data and every node is checked against them: the op is in the
parser's support matrix of each targeted TensorRT version, the element type it sees is one that
row lists, the opset is in the version's range, UINT8 only enters or leaves the network through
a Cast, INT8 only appears between QuantizeLinear and DequantizeLinear (zero points 0), and the
inputs the matrix requires to be constant are. Element types come from ``onnx.shape_inference``.

Sources (onnx/onnx-tensorrt, ``docs/operators.md`` and ``docs/Changelog.md``):
- 8.x rows: ``docs/operators.md`` of the 8.4/8.5 release branches (``release/8.5-GA``: "TensorRT
  8.5 supports operators up to Opset 17"; the 8.6 file keeps "up to Opset 17"). Changelog: 8.5 GA
  "Added support for importing ONNX networks with UINT8 I/O types"; 8.6 EA "All cast operations
  will now use the new CastLayer"; 9.0 EA "Added support for INT64 data type. The ONNX parser no
  longer automatically casts INT64 to INT32", i.e. 8.6 reads INT64 as INT32 (checked as INT32).
- 10.x rows: ``docs/operators.md`` of ``release/10.x-GA`` (the 10.15 file: "supports operators in
  the inclusive range of opset 9 to opset 24"; "UINT8 is only supported as network input or
  output tensor types"; "INT8, INT4, FP8 and FP4 are treated as Quantized Types ... available only
  through quantization"). The 10.0 file gives opset 9 to 20, the range taken for 10.3 (JetPack
  6.1/6.2); ops the changelog adds after 10.3 (window functions 10.4, STFT 10.5, Attention 10.14,
  RotaryEmbedding/RMSNormalization/TensorScatter 10.15) carry their first version in ``SINCE``.
JetPack 6.0 ships TensorRT 8.6, JetPack 6.1 and 6.2 ship 10.3 (NVIDIA JetPack release notes).
Ops missing from the table are reported as unsupported: the table is deliberately limited to ops
a vision backbone, our head and the Q/DQ path use, so a new op is looked up before it is trusted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rpol_edge.core.export_formats import ExportError
from rpol_edge.core.metadata import ModelMeta

URL_8X = "https://github.com/onnx/onnx-tensorrt/blob/release/8.6-GA/docs/operators.md"
URL_10X = "https://github.com/onnx/onnx-tensorrt/blob/release/10.x-GA/docs/operators.md"
URL_CHANGELOG = "https://github.com/onnx/onnx-tensorrt/blob/main/docs/Changelog.md"


@dataclass(frozen=True)
class TrtTarget:
    version: str
    platform: str
    family: str
    """Which matrix applies: "8" or "10"."""
    opset_min: int
    opset_max: int
    source: str


TARGETS: dict[str, TrtTarget] = {
    "8.6": TrtTarget("8.6", "JetPack 6.0", "8", 7, 17, URL_8X),
    "10.3": TrtTarget("10.3", "JetPack 6.1/6.2", "10", 9, 20, URL_10X),
    "10.15": TrtTarget("10.15", "current 10.x (desktop, JetPack Thor)", "10", 9, 24, URL_10X),
}
DEFAULT_TARGETS: tuple[str, ...] = tuple(TARGETS)

# Element-type tokens as the matrix spells them.
_F = "FP32, FP16"
_F10 = "FP32, FP16, BF16"
_I8 = "FP32, FP16, INT32"  # 8.x numeric ops
_I10 = "FP32, FP16, BF16, INT32, INT64"
_ALL8 = "FP32, FP16, INT32, INT8, BOOL"
_ALL10 = "FP32, FP16, BF16, INT32, INT64, BOOL"

# op -> (8.x types, 10.x types); "" means not supported in that family.
MATRIX: dict[str, tuple[str, str]] = {
    "Abs": (_I8, _I10),
    "Add": (_I8, _I10),
    "And": ("BOOL", "BOOL"),
    "ArgMax": (_I8, _I10),
    "ArgMin": (_I8, _I10),
    "AveragePool": ("FP32, FP16, INT8, INT32", _F10),
    "BatchNormalization": (_F, _F10),
    "Cast": ("FP32, FP16, INT32, INT8, UINT8, BOOL", "FP32, FP16, BF16, INT32, INT64, UINT8, BOOL"),
    "Ceil": (_F, _F10),
    "Clip": ("FP32, FP16, INT8", _F10),
    "Concat": (_ALL8, _ALL10),
    "Constant": (_ALL8, _ALL10),
    "ConstantOfShape": ("FP32", _ALL10),
    "Conv": ("FP32, FP16, INT8", _F10),
    "ConvTranspose": ("FP32, FP16, INT8", _F10),
    "DepthToSpace": (_I8, _I10),
    "DequantizeLinear": ("INT8", "INT8, FP8, FP4, INT4"),
    "Div": (_I8, _I10),
    "Dropout": (_F, _F10),
    "Einsum": (_F, _F10),
    "Elu": ("FP32, FP16, INT8", _F10),
    "Equal": (_I8, _I10),
    "Erf": (_F, _F10),
    "Exp": (_F, _F10),
    "Expand": ("FP32, FP16, INT32, BOOL", _ALL10),
    "Flatten": ("FP32, FP16, INT32, BOOL", _ALL10),
    "Floor": (_F, _F10),
    "Gather": ("FP32, FP16, INT8, INT32", _ALL10),
    "GatherElements": ("FP32, FP16, INT8, INT32", _ALL10),
    "GatherND": ("FP32, FP16, INT8, INT32", _ALL10),
    "Gelu": ("", "FP32, FP16, BF16, INT8, INT32, INT64"),
    "Gemm": ("FP32, FP16, INT8", _F10),
    "GlobalAveragePool": ("FP32, FP16, INT8", _F10),
    "GlobalMaxPool": ("FP32, FP16, INT8", _F10),
    "Greater": (_I8, _I10),
    "GreaterOrEqual": (_I8, _I10),
    "HardSigmoid": ("FP32, FP16, INT8", _F10),
    "HardSwish": (_F, _F10),
    "Identity": (_ALL8, _ALL10),
    "LayerNormalization": (_F, _F10),
    "LeakyRelu": ("FP32, FP16, INT8", _F10),
    "Less": (_I8, _I10),
    "LessOrEqual": (_I8, _I10),
    "Log": (_F, _F10),
    "MatMul": (_F, _F10),
    "Max": (_I8, _I10),
    "MaxPool": ("FP32, FP16, INT8", _F10),
    "Min": (_I8, _I10),
    "Mul": (_I8, _I10),
    "Neg": (_I8, _I10),
    "Not": ("BOOL", "BOOL"),
    "Or": ("BOOL", "BOOL"),
    "Pad": ("FP32, FP16, INT8, INT32", _I10),
    "Pow": (_F, _I10),
    "PRelu": ("FP32, FP16, INT8", _F10),
    "QuantizeLinear": (_F, _F10),
    "Range": (_I8, _I10),
    "Reciprocal": ("", _F10),
    "ReduceL1": (_F, _I10),
    "ReduceProd": (_F, _I10),
    "ReduceL2": (_F, _I10),
    "ReduceMax": (_F, _I10),
    "ReduceMean": (_F, _I10),
    "ReduceMin": (_F, _I10),
    "ReduceSum": (_F, _I10),
    "ReduceSumSquare": (_F, _I10),
    "Relu": ("FP32, FP16, INT8", _I10),
    "Reshape": (_ALL8, _ALL10),
    "Round": ("FP32, FP16, INT8", _F10),
    "ScatterND": ("FP32, FP16, INT8, INT32", _I10),
    "Sign": ("FP32, FP16, INT8, INT32", _I10),
    "Sin": (_F, _F10),
    "Cos": (_F, _F10),
    "CumSum": (_F, _F10),
    "InstanceNormalization": (_F, _F10),
    "Softplus": ("FP32, FP16, INT8", _F10),
    "Resize": (_F, _F10),
    "Shape": (_ALL8, _ALL10),
    "Sigmoid": ("FP32, FP16, INT8", _F10),
    "Slice": (_ALL8, _ALL10),
    "Softmax": (_F, _F10),
    "Split": ("FP32, FP16, INT32, BOOL", _ALL10),
    "Sqrt": (_F, _F10),
    "Squeeze": (_ALL8, _ALL10),
    "Sub": (_I8, _I10),
    "Sum": (_I8, _I10),
    "Tanh": ("FP32, FP16, INT8", _F10),
    "Tile": ("FP32, FP16, INT32, BOOL", _ALL10),
    "TopK": (_F, _I10),
    "Transpose": (_ALL8, _ALL10),
    "Unsqueeze": (_ALL8, _ALL10),
    "Where": ("FP32, FP16, INT32, BOOL", _ALL10),
    # Listed "N" in both matrices; kept so the message says so rather than "not in the table".
    "NonZero": ("", "FP32, FP16"),
    "Unique": ("", ""),
    "ConvInteger": ("", ""),
    "MatMulInteger": ("", ""),
    "QLinearConv": ("", ""),
    "QLinearMatMul": ("", ""),
    "DynamicQuantizeLinear": ("", ""),
    "BitShift": ("", ""),
}
"""The 8.x column lists INT8 for many ops because 8.x accepted INT8 I/O with dynamic ranges; in
explicit quantization (the only INT8 rpol-edge uses) INT8 still only flows between Q and DQ."""

SINCE: dict[str, str] = {"Gelu": "10.0", "Reciprocal": "10.0"}
"""First TensorRT version whose matrix row says Y, where that is later than a target's family."""

CONST_INPUTS: dict[str, tuple[int, str]] = {
    **{op: (1, "`axes` must be an initializer") for op in (
        "ReduceL2", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceSum", "ReduceSumSquare",
    )},
    "Squeeze": (1, "`axes` must be resolvable to a constant"),
    "Unsqueeze": (1, "`axes` must be resolvable to a constant"),
    "Conv": (1, "weights `W` must be an initializer (or Q/DQ of one)"),
    "TopK": (1, "`K` input must be an initializer"),
}  # fmt: skip
"""Inputs the matrix's Restrictions column requires to be build-time constants."""

RESIZE_MODES = {"nearest", "linear"}
RESIZE_COORDS = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}

_TYPE_NAMES = {
    1: "FP32", 2: "UINT8", 3: "INT8", 5: "INT16", 6: "INT32", 7: "INT64", 9: "BOOL", 10: "FP16",
    11: "DOUBLE", 12: "UINT32", 13: "UINT64", 16: "BF16", 17: "FP8", 18: "FP8", 19: "FP8", 20: "FP8",
    21: "UINT4", 22: "INT4", 23: "FP4",
}  # fmt: skip
QUANTIZED = {"INT8", "INT4", "FP8", "FP4"}


@dataclass(frozen=True)
class Violation:
    target: str
    node: str
    op: str
    dtype: str
    rule: str

    def __str__(self) -> str:
        what = f"node {self.node!r} ({self.op})" if self.node else "graph"
        typ = f" on {self.dtype}" if self.dtype else ""
        return f"TensorRT {self.target}: {what}{typ}: {self.rule}"


class TrtCompatError(ExportError):
    """The graph breaks a rule of the TensorRT ONNX parser of a targeted version."""


def parse_targets(text: str | Sequence[str]) -> tuple[str, ...]:
    """'8.6,10.3' -> ('8.6', '10.3'); unknown versions are refused with the known ones."""
    items = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    unknown = [t for t in items if t not in TARGETS]
    if unknown or not items:
        raise ValueError(
            f"TensorRT target(s) {', '.join(unknown) or '(none)'}: choose from {', '.join(TARGETS)}"
        )
    return tuple(dict.fromkeys(items))


def _version(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split("."))


def _types(token: str) -> set[str]:
    return {t.strip() for t in token.split(",") if t.strip()}


class _Graph:
    """Element types, producers, consumers and constants of an ONNX graph after shape inference."""

    def __init__(self, model: Any) -> None:
        import onnx

        try:
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
        except Exception as exc:  # onnx raises its own InferenceError types
            raise TrtCompatError(f"shape inference failed, types cannot be checked: {exc}") from None
        g = inferred.graph
        self.graph = g
        self.dtype: dict[str, int] = {}
        for vi in [*g.input, *g.output, *g.value_info]:
            if vi.type.HasField("tensor_type"):
                self.dtype[vi.name] = vi.type.tensor_type.elem_type
        self.const: dict[str, Any] = {t.name: t for t in g.initializer}
        for t in g.initializer:
            self.dtype[t.name] = t.data_type
        for n in g.node:
            if n.op_type == "Constant" and n.output:
                for a in n.attribute:
                    if a.name == "value":
                        self.const[n.output[0]] = a.t
                        self.dtype[n.output[0]] = a.t.data_type
        self.inputs = {i.name for i in g.input} - set(self.const)
        self.outputs = {o.name for o in g.output}
        self.opset = next((o.version for o in inferred.opset_import if o.domain in ("", "ai.onnx")), 0)

    def type_name(self, tensor: str) -> str:
        code = self.dtype.get(tensor, 0)
        return _TYPE_NAMES.get(code, f"type {code}" if code else "UNKNOWN")


def _attr(node: Any, name: str, default: Any) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _is_zero(tensor: Any) -> bool:
    import onnx

    return not onnx.numpy_helper.to_array(tensor).any()


def _node_violations(g: _Graph, node: Any, target: TrtTarget) -> Iterable[tuple[str, str]]:
    """(dtype, rule) for each rule ``node`` breaks on ``target``."""
    op = node.op_type
    if node.domain not in ("", "ai.onnx"):
        yield "", f"custom domain {node.domain!r}: TensorRT needs a plugin for it"
        return
    row = MATRIX.get(op)
    if row is None:
        yield "", f"op {op} is not in rpol-edge's table of TensorRT-supported ops ({target.source})"
        return
    allowed = _types(row[0] if target.family == "8" else row[1])
    since = SINCE.get(op)
    if not allowed or (since and _version(target.version) < _version(since)):
        yield "", f"op {op} is not supported by the TensorRT {target.version} ONNX parser ({target.source})"
        return
    outs = [t for t in node.output if t]
    # The type column is about the data tensor: a ConstantOfShape's is its output (input: a shape).
    data = outs[:1] if op == "ConstantOfShape" else [t for t in node.input[:1] if t]
    # UINT8: only as a network input read by a Cast, or a network output written by a Cast.
    for t in [*node.input, *node.output]:
        if t and g.type_name(t) == "UINT8":
            at_io = (t in g.inputs and t in node.input) or (t in g.outputs and t in node.output)
            if op != "Cast" or not at_io:
                yield "UINT8", "UINT8 is only supported as network input or output, converted by a Cast"
    # Quantized types: only produced by QuantizeLinear and consumed by DequantizeLinear.
    qdq = op in ("QuantizeLinear", "DequantizeLinear")
    for i, t in enumerate(node.input):
        if qdq and i > 0:
            continue  # scale and zero point: judged by the zero-point rule below
        if t and g.type_name(t) in QUANTIZED and op != "DequantizeLinear":
            yield g.type_name(t), "INT8/INT4/FP8 only through QuantizeLinear/DequantizeLinear"
    for t in outs:
        if g.type_name(t) in QUANTIZED and op not in ("QuantizeLinear", "Constant"):
            yield g.type_name(t), "INT8/INT4/FP8 only through QuantizeLinear/DequantizeLinear"
    if op in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2 and node.input[2]:
        zp = g.const.get(node.input[2])
        if zp is None or not _is_zero(zp):
            yield g.type_name(node.input[2]), "Q/DQ zero point must be an initializer equal to 0"
        zp_type = g.type_name(node.input[2])
        if zp_type not in QUANTIZED:
            yield zp_type, "Q/DQ must quantize to a signed quantized type (INT8), not " + zp_type
    # The matrix's type column, on the op's data input (and a Cast's output).
    for t in data + (outs if op == "Cast" else []):
        name = g.type_name(t)
        if name == "UNKNOWN":
            yield name, f"element type of {t!r} unknown after shape inference; cannot prove it supported"
            continue
        seen = "INT32" if (name == "INT64" and target.family == "8") else name  # 8.x casts INT64 down
        if name == "UINT8" or (name in QUANTIZED and op == "DequantizeLinear"):
            continue  # judged by the I/O and Q/DQ rules above
        if name == "DOUBLE" or seen not in allowed:
            yield name, f"{op} takes {', '.join(sorted(allowed))} in TensorRT {target.version}"
    if op in CONST_INPUTS:
        idx, why = CONST_INPUTS[op]
        if len(node.input) > idx and node.input[idx]:
            src = node.input[idx]
            if src not in g.const and not _dq_of_const(g, src):
                yield g.type_name(src), why
    if op == "Resize":
        mode = _attr(node, "mode", b"nearest")
        coord = _attr(node, "coordinate_transformation_mode", b"half_pixel")
        mode, coord = (v.decode() if isinstance(v, bytes) else str(v) for v in (mode, coord))
        if mode not in RESIZE_MODES or coord not in RESIZE_COORDS:
            yield "", f"Resize mode {mode!r} / coordinate mode {coord!r} not supported"
        if int(_attr(node, "antialias", 0)):
            yield "", "Resize antialiasing is not supported"


def _dq_of_const(g: _Graph, tensor: str) -> bool:
    """Whether ``tensor`` is a DequantizeLinear of an initializer (quantized Conv weights)."""
    for n in g.graph.node:
        if tensor in n.output:
            return n.op_type == "DequantizeLinear" and n.input[0] in g.const
    return False


def check_model(model: Any, targets: Sequence[str] = DEFAULT_TARGETS) -> list[Violation]:
    """Every violation of the parser rules of each target (empty list: the graph should parse)."""
    g = _Graph(model)
    found: list[Violation] = []
    for version in targets:
        target = TARGETS[version]
        if not target.opset_min <= g.opset <= target.opset_max:
            found.append(
                Violation(
                    version, "", "", "",
                    f"opset {g.opset} outside {target.opset_min}..{target.opset_max} ({target.platform}); "
                    "export with --exporter legacy (opset 17) or drop this --trt-targets entry",
                )
            )  # fmt: skip
        for i, node in enumerate(g.graph.node):
            name = node.name or f"#{i}"
            for dtype, rule in dict.fromkeys(_node_violations(g, node, target)):
                found.append(Violation(version, name, node.op_type, dtype, rule))
    return found


def check_onnx_file(path: Path, targets: Sequence[str] = DEFAULT_TARGETS) -> list[Violation]:
    import onnx

    return check_model(onnx.load(str(path)), targets)


def require_compatible(model: Any, targets: Sequence[str] = DEFAULT_TARGETS, what: str = "graph") -> None:
    """Raise :class:`TrtCompatError` naming the first violation (and how many more there are)."""
    found = check_model(model, targets)
    if found:
        more = f" (+{len(found) - 1} more)" if len(found) > 1 else ""
        raise TrtCompatError(f"{what} is not TensorRT-compatible: {found[0]}{more}")


def targets_for_opset(opset: int) -> tuple[str, ...]:
    """The claimed TensorRT versions whose parsers take this opset (dynamo's 18 excludes 8.6)."""
    found = tuple(v for v, t in TARGETS.items() if t.opset_min <= opset <= t.opset_max)
    if not found:
        raise ExportError(f"opset {opset} is outside every claimed TensorRT version's range")
    return found


def recorded_targets(meta: ModelMeta) -> tuple[str, ...]:
    """The TensorRT versions a file was checked for at export (``trt_targets``), or, for files
    written before that was recorded, every claimed version that takes its opset."""
    recorded = meta.extra.get("trt_targets", "")
    return parse_targets(recorded) if recorded else targets_for_opset(meta.opset)
