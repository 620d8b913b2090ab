"""Deploy without PyTorch: the commands that run exported graphs never import torch or timm, and a
fresh environment without them runs `rpol-edge run` and `predict` on an ONNX file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rpol_edge.core.onnx_props import OnnxFormatError, input_dims, metadata_props

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "rpol_edge" / "sample"
HEAVY = ("torch", "timm", "torchvision")

# Runs CLI commands one after the other in one fresh process and records, after each, its exit
# code and which of torch/timm/torchvision are in sys.modules, so the first command that loads
# one of them is the one named.
COMMANDS_CHILD = """
import json, sys
from rpol_edge.cli.app import app
log = []
for argv in json.loads(sys.argv[1]):
    try:
        app(argv, prog_name="rpol-edge")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    log.append({"argv": argv, "code": code, "heavy": sorted(m for m in HEAVY if m in sys.modules)})
open(sys.argv[2], "w").write(json.dumps(log))
""".replace("HEAVY", repr(HEAVY))


def first_image() -> Path:
    return sorted((SAMPLE / "JPEGImages").glob("*.jpg"))[0]


def test_commands_on_exported_graphs_never_import_torch(sample_onnx: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason="the ort runtime needs the ort extra")
    onnx, out = str(sample_onnx), tmp_path
    commands = [
        (["info", onnx], 0),
        (["predict", onnx, str(first_image()), "-o", str(out / "pred")], 0),
        (["eval", onnx, "--root", str(SAMPLE), "--workers", "1", "--json", str(out / "m.json")], 0),
        (["bench", onnx, "--iters", "2", "--warmup", "1"], 0),
        (["compare", onnx, onnx, "--root", str(SAMPLE), "--workers", "0"], 0),
        (
            [
                "run",
                onnx,
                "--source",
                str(SAMPLE / "JPEGImages"),
                "--max-frames",
                "3",
                "--jsonl",
                str(out / "run.jsonl"),
            ],
            0,
        ),
        (["eval", onnx, "--root", str(out / "no-such-root")], 2),  # the one-line error path
        (["info", str(out / "missing.engine")], 2),
        # An engine is built from a copied ONNX on the device without PyTorch; no TensorRT here.
        (["export", onnx, "--trt", "-o", str(out / "engine")], 2),
    ]
    log_path = out / "log.json"
    proc = subprocess.run(
        [sys.executable, "-c", COMMANDS_CHILD, json.dumps([c for c, _ in commands]), str(log_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = json.loads(log_path.read_text())
    for (argv, code), rec in zip(commands, log, strict=True):
        assert rec["code"] == code, (argv, proc.stderr[-2000:])
        assert rec["heavy"] == [], f"rpol-edge {' '.join(argv[:1])} imported {rec['heavy']}"
    assert len((out / "run.jsonl").read_text().splitlines()) == 3
    assert json.loads((out / "m.json").read_text())["n_images"] == 12


def test_missing_torch_is_one_line_naming_the_extra(sample_model: Path, tmp_path: Path) -> None:
    """torch blocked in the child (``sys.modules[name] = None`` makes its import fail); the real
    absence is checked in the fresh environment below."""
    block = f"import sys\nfor m in {HEAVY!r}: sys.modules[m] = None\n"
    cases = [
        (
            ["fit", "--root", str(SAMPLE), "--data", "voc", "-o", str(tmp_path / "m.rpol")],
            "error: rpol-edge fit needs PyTorch: pip install 'rpol-edge[torch]'",
        ),
        (
            ["export", str(sample_model), "-o", str(tmp_path / "exp")],
            "error: rpol-edge export needs PyTorch: pip install 'rpol-edge[torch]'",
        ),
        (["info", str(sample_model)], "pip install 'rpol-edge[torch]'"),
        (
            ["predict", str(sample_model), str(first_image()), "-o", str(tmp_path / "p")],
            "error: runtime torch needs torch, timm: pip install 'rpol-edge[torch]'",
        ),
    ]
    for argv, expected in cases:
        code = block + f"from rpol_edge.cli.app import main\nsys.argv[1:] = {argv!r}\nmain()"
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, (argv, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], (argv, proc.stderr)


def test_onnx_fields_read_without_onnx_match_onnx(sample_onnx: Path, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx", reason="the cross-check needs the onnx package")
    model = onnx.load(str(sample_onnx))
    assert metadata_props(sample_onnx) == {p.key: p.value for p in model.metadata_props}
    frames = next(i for i in model.graph.input if i.name == "frames")
    want = [d.dim_value or d.dim_param for d in frames.type.tensor_type.shape.dim]
    assert input_dims(sample_onnx, "frames") == want and isinstance(want[0], str)  # dynamic batch
    with pytest.raises(OnnxFormatError):
        input_dims(sample_onnx, "no_such_input")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(sample_onnx.read_bytes()[:5000])
    with pytest.raises(OnnxFormatError):
        metadata_props(broken)


# --- a fresh environment without torch -----------------------------------------------------------


def _pip(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "-q",
            "--no-compile",
            "--disable-pip-version-check",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


UNREACHABLE = (
    "Could not fetch URL",
    "NewConnectionError",
    "Max retries exceeded",
    "Name or service not known",
    "Temporary failure in name resolution",
    "No matching distribution found",
)
"""pip's messages when the registry cannot be reached (or does not have a package)."""


@pytest.fixture(scope="module")
def bare_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """python -m venv, then the base dependencies and the ``ort`` extra by name from pyproject
    (from the package registry; pip's cache makes it fast), then the package itself, no deps."""
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python >= 3.11")
    root = tmp_path_factory.mktemp("bare")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + project["optional-dependencies"]["ort"]
    got = _pip(venv, *deps)
    if got.returncode != 0:
        if any(s in got.stderr for s in UNREACHABLE):
            pytest.skip(f"package registry unreachable: {got.stderr.strip().splitlines()[-1]}")
        pytest.fail(f"pip install {' '.join(deps)} failed: {got.stderr[-1500:]}")
    src = root / "src"  # a copy, so the build leaves no build/ or egg-info in the checkout
    shutil.copytree(REPO / "rpol_edge", src / "rpol_edge", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    got = _pip(venv, "--no-deps", str(src))
    if got.returncode != 0:
        if any(s in got.stderr for s in UNREACHABLE):
            last = got.stderr.strip().splitlines()[-1]
            pytest.skip(f"package registry unreachable (build backend): {last}")
        pytest.fail(f"pip install --no-deps of the project failed: {got.stderr[-1500:]}")
    return venv


def _bare(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(venv / "bin" / "rpol-edge"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=venv.parent,
    )


def write_mp4(path: Path, frames: int) -> None:
    """A real MP4 (mp4v) made of the sample photos, one per frame, at 320x240."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (320, 240))
    photos = sorted((SAMPLE / "JPEGImages").glob("*.jpg"))
    for i in range(frames):
        writer.write(cv2.resize(cv2.imread(str(photos[i % len(photos)])), (320, 240)))
    writer.release()


def test_fresh_environment_without_torch_runs_and_predicts(
    bare_venv: Path, sample_onnx: Path, sample_model: Path, tmp_path: Path
) -> None:
    py = str(bare_venv / "bin" / "python")
    probe = f"import importlib.util as u; print([m for m in {HEAVY + ('onnx',)!r} if u.find_spec(m)])"
    assert subprocess.run([py, "-c", probe], capture_output=True, text=True).stdout.strip() == "[]"
    model = tmp_path / "model.onnx"
    shutil.copy2(sample_onnx, model)  # built with torch in the main environment, handed over

    video = tmp_path / "video.mp4"
    write_mp4(video, 6)
    jsonl = tmp_path / "boxes.jsonl"
    got = _bare(bare_venv, "run", str(model), "--source", str(video), "--jsonl", str(jsonl))
    assert got.returncode == 0, got.stderr[-2000:]
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(records) == 6
    boxes = [r["box"] for r in records if r["box"] is not None]
    assert boxes and all(len(b) == 4 and 0 <= b[0] <= b[2] < 320 and 0 <= b[1] <= b[3] < 240 for b in boxes)

    image = first_image()
    got = _bare(bare_venv, "predict", str(model), str(image), "-o", str(tmp_path / "out"))
    assert got.returncode == 0, got.stderr[-2000:]
    record = json.loads((tmp_path / "out" / f"{image.stem}.json").read_text())
    assert record["box"] is not None and record["width"] > record["box"][2]
    assert (tmp_path / "out" / f"{image.stem}.png").stat().st_size > 1000

    got = _bare(bare_venv, "fit", "--root", str(SAMPLE), "--data", "voc", "-o", str(tmp_path / "m.rpol"))
    assert got.returncode == 2
    assert got.stderr.strip() == "error: rpol-edge fit needs PyTorch: pip install 'rpol-edge[torch]'"
    got = _bare(bare_venv, "info", str(sample_model))
    assert got.returncode == 2 and "pip install 'rpol-edge[torch]'" in got.stderr.strip().splitlines()[-1]
    assert len(got.stderr.strip().splitlines()) == 1


# The modules whose torch imports the import-linter contract ignores (lazy, inside functions) and
# the ones the CLI loads at start-up: importing them must not load torch, which the static
# contract cannot see once an edge is ignored.
LAZY = [
    "rpol_edge.core.artifact", "rpol_edge.runtimes", "rpol_edge.fitting.distributed",
    "rpol_edge.backbones.classifier", "rpol_edge.fitting.config", "rpol_edge.exporters.orchestrator",
    "rpol_edge.cli.app",
]  # fmt: skip


@pytest.mark.parametrize("module", LAZY)
def test_modules_with_lazy_torch_imports_do_not_import_it(module: str) -> None:
    code = f"import sys, {module}; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == "[]", f"{module} imports {got.stdout.strip()}"
