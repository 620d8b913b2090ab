"""The registry decides devices from what each runtime declares: its device kinds, its CUDA probe
(imported only when ``device=auto`` asks) and its part in the CPU auto policy."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from rpol_edge.runtimes import RUNTIMES, InferenceError, check_device, cuda_available, resolve_device

PROBED: list[str] = []


def reaches_cuda() -> bool:
    """A CUDA probe that says yes (and records that it was asked)."""
    PROBED.append("yes")
    return True


def reaches_none() -> bool:
    PROBED.append("no")
    return False


def test_auto_takes_the_first_declared_kind_it_can_reach() -> None:
    ort = RUNTIMES["ort"]
    here = dataclasses.replace(ort, cuda_probe=f"{__name__}:reaches_cuda")
    absent = dataclasses.replace(ort, cuda_probe=f"{__name__}:reaches_none")
    PROBED.clear()
    assert resolve_device(here, "auto") == "cuda" and resolve_device(absent, "auto") == "cpu"
    assert PROBED == ["yes", "no"]
    assert resolve_device(here, "cpu") == "cpu" and resolve_device(here, "cuda:1") == "cuda:1"
    assert PROBED == ["yes", "no"]  # an explicit device asks no probe
    assert resolve_device(RUNTIMES["openvino"], "auto") == "cpu"  # its first kind, no probe
    assert resolve_device(RUNTIMES["trt"], "auto") == "cuda"  # the only kind it runs on


def test_the_declared_probes_answer_as_their_libraries_do() -> None:
    import onnxruntime
    import torch

    gpu = {"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(onnxruntime.get_available_providers())
    assert cuda_available(RUNTIMES["ort"]) == bool(gpu)
    assert cuda_available(RUNTIMES["torch"]) == torch.cuda.is_available()
    assert resolve_device(RUNTIMES["torch"], "auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    missing = dataclasses.replace(RUNTIMES["ort"], cuda_probe="no_such_module_here:probe")
    assert cuda_available(missing) is False and resolve_device(missing, "auto") == "cpu"


def test_a_kind_the_runtime_does_not_declare_is_refused_by_name() -> None:
    with pytest.raises(InferenceError) as ov:
        resolve_device(RUNTIMES["openvino"], "cuda:0")
    assert str(ov.value) == (
        "device 'cuda:0' is not an OpenVINO device: it runs on cpu, gpu, gpu.N or npu (Intel); "
        "for an NVIDIA GPU use runtime=ort or trt"
    )
    with pytest.raises(InferenceError) as trt:
        resolve_device(RUNTIMES["trt"], "cpu")
    assert str(trt.value) == "device 'cpu' is not a TensorRT device: it runs on cuda or cuda:N"


def test_extra_kinds_are_taken_only_where_declared() -> None:
    assert check_device("GPU.1", "openvino") == "gpu.1" and check_device("npu", "openvino") == "npu"
    for runtime in ("ort", "torch", "trt", ""):
        with pytest.raises(InferenceError, match=r"device 'gpu\.1' \(did you mean cuda\?\)"):
            check_device("gpu.1", runtime)
    npu_ort = dataclasses.replace(RUNTIMES["ort"], devices=("cpu", "npu"))
    assert resolve_device(npu_ort, "npu") == "npu"
    with pytest.raises(InferenceError, match="it runs on cpu or npu"):
        resolve_device(npu_ort, "cuda")


def test_one_default_and_the_candidates_of_the_cpu_policy() -> None:
    from rpol_edge.runtimes.cpu_auto import CPU_AUTO

    roles = {name: info.cpu_auto for name, info in RUNTIMES.items()}
    assert list(roles.values()).count("default") == 1
    for rows in CPU_AUTO.values():  # every runtime a measured rule names has a part in the policy
        assert all(roles[r.runtime] in ("default", "candidate") for r in rows)


def test_the_registry_imports_no_probe_until_asked() -> None:
    code = (
        "import sys\n"
        "from rpol_edge.runtimes import RUNTIMES, resolve_device\n"
        "for name in RUNTIMES: resolve_device(RUNTIMES[name], 'cuda' if name == 'trt' else 'cpu')\n"
        "before = 'torch' in sys.modules or 'onnxruntime' in sys.modules\n"
        "resolve_device(RUNTIMES['torch'], 'auto')\n"
        "print(before, 'torch' in sys.modules)"
    )
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert got.returncode == 0, got.stderr
    assert got.stdout.split() == ["False", "True"]
