"""What a TensorRT engine file is and what it is tied to: the JSON sidecar beside the plan.

A plan is specific to a TensorRT version, a GPU and (on Orin) the module; the sidecar records them
with the model's metadata so a wrong combination is refused, with the rebuild command, before
TensorRT sees the plan. Pure Python: ``info`` reads it anywhere."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rpol_edge.core.files import file_sha256
from rpol_edge.core.metadata import MetadataError, ModelMeta, json_object

SIDECAR_SUFFIX = ".json"


REBUILD_HINT = "rebuild it on this device: rpol-edge export MODEL --onnx --trt -o DIR"


@dataclass(frozen=True)
class EngineMeta:
    """What an engine file is, and what it is tied to; stored as ``<engine>.json``."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    """"major.minor", e.g. "8.7" for Orin."""
    precision: str
    min_batch: int
    opt_batch: int
    max_batch: int
    input_size: int
    onnx_sha256: str
    model: ModelMeta
    engine_sha256: str = ""
    """sha256 of the plan, so a sidecar left beside another engine is caught."""
    fp16_strategy: str = ""
    onnx_name: str = ""
    """File name of the ONNX it was built from (beside the engine), for the staleness check."""
    device_model: str = ""
    """The board (``/proc/device-tree/model``, e.g. "NVIDIA Jetson Orin Nano Developer Kit"); empty
    off Jetson. Every Orin module reports the GPU "Orin" / sm 8.7, so only this tells an engine
    tuned on an AGX Orin from one tuned on an Orin Nano."""

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["model"] = self.model.to_dict()
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=1)

    @classmethod
    def from_json(cls, text: str, source: str = "engine sidecar") -> EngineMeta:
        data = json_object(text, source)
        if not isinstance(data.get("model"), dict):
            raise MetadataError(f"{source}: not an rpol-edge engine sidecar (no model record)")
        names = {f.name for f in dataclasses.fields(cls)}
        kept = {k: v for k, v in data.items() if k in names}
        kept["model"] = ModelMeta.from_dict(data["model"], source)
        try:
            return cls(**kept)
        except TypeError as exc:
            raise MetadataError(f"{source}: malformed engine sidecar ({exc}); {REBUILD_HINT}") from None


def check_engine_fresh(meta: EngineMeta, engine_path: Path) -> None:
    """Refuse an engine whose source ONNX (still beside it) was re-exported after the build: the
    engine would silently run the old w*, threshold or preprocessing."""
    if not meta.onnx_name:
        return
    src = Path(engine_path).parent / meta.onnx_name
    if src.is_file() and file_sha256(src) != meta.onnx_sha256:
        raise MetadataError(f"{engine_path} is stale: {src.name} changed after it was built; {REBUILD_HINT}")


def sidecar_path(engine_path: Path) -> Path:
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + SIDECAR_SUFFIX)


def read_engine_meta(engine_path: Path) -> EngineMeta:
    """The sidecar of an engine; a missing or unreadable one means the engine must be rebuilt."""
    side = sidecar_path(engine_path)
    if not side.is_file():
        raise MetadataError(
            f"{engine_path}: no metadata sidecar {side.name} (engine not built by rpol-edge, or the "
            f"sidecar was not copied with it); {REBUILD_HINT}"
        )
    return EngineMeta.from_json(side.read_text(), str(side))


def check_engine_compatible(
    meta: EngineMeta, trt_version: str, gpu_name: str, cc: str, source: str = "engine", device_model: str = ""
) -> None:
    """Refuse a plan built by another TensorRT version, for another GPU or on another Jetson module
    (TensorRT plans are neither forward/backward compatible nor portable across device models by
    default; for two Orin modules TensorRT itself only warns). ``device_model`` is compared only when
    both the sidecar and this machine name one (older sidecars and non-Jetson hosts have none)."""
    problems = []
    if meta.tensorrt_version != trt_version:
        problems.append(f"TensorRT {meta.tensorrt_version}, this machine has {trt_version}")
    if meta.compute_capability != cc or meta.gpu_name != gpu_name:
        problems.append(
            f"GPU {meta.gpu_name} (sm {meta.compute_capability}), this machine has {gpu_name} (sm {cc})"
        )
    elif meta.device_model and device_model and meta.device_model != device_model:
        problems.append(f"the board {meta.device_model!r}, this machine is {device_model!r}")
    if problems:
        raise MetadataError(f"{source} was built for {'; '.join(problems)}: {REBUILD_HINT}")


def device_model(path: Path = Path("/proc/device-tree/model")) -> str:
    """The board's model string on Jetson (and other device-tree boards); "" where there is none."""
    try:
        return path.read_bytes().split(b"\0", 1)[0].decode(errors="replace").strip()
    except OSError:
        return ""
