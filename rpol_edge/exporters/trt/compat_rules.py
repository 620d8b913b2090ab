"""The TensorRT ONNX parser's rules as data, per op: the element types each row of the support
matrix lists (8.x and 10.x), the version an op first appears in, the inputs that must be
build-time constants, the Resize modes, and the ONNX element-type names. The checker that applies
them is rpol_edge/exporters/trt/compat.py.

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
"""

from __future__ import annotations

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

TYPE_NAMES = {
    1: "FP32", 2: "UINT8", 3: "INT8", 5: "INT16", 6: "INT32", 7: "INT64", 9: "BOOL", 10: "FP16",
    11: "DOUBLE", 12: "UINT32", 13: "UINT64", 16: "BF16", 17: "FP8", 18: "FP8", 19: "FP8", 20: "FP8",
    21: "UINT4", 22: "INT4", 23: "FP4",
}  # fmt: skip
QUANTIZED = {"INT8", "INT4", "FP8", "FP4"}
