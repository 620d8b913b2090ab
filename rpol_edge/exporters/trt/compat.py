"""Static TensorRT-compatibility check of an ONNX graph, without TensorRT.

TensorRT cannot be installed on the machines this is developed on, so the rules its ONNX parser
applies are written down here as data and every node is checked against them: the op is in the
parser's support matrix of each targeted TensorRT version, the element type it sees is one that
row lists, the opset is in the version's range, UINT8 only enters or leaves the network through
a Cast, INT8 only appears between QuantizeLinear and DequantizeLinear (zero points 0), and the
inputs the matrix requires to be constant are. Element types come from ``onnx.shape_inference``.

The rules, as data, and their sources: rpol_edge/exporters/trt/compat_rules.py.
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
from rpol_edge.exporters.trt.compat_rules import (
    CONST_INPUTS,
    MATRIX,
    QUANTIZED,
    RESIZE_COORDS,
    RESIZE_MODES,
    SINCE,
    TYPE_NAMES,
)

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
        return TYPE_NAMES.get(code, f"type {code}" if code else "UNKNOWN")


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
