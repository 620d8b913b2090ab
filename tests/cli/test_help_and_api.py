"""What a reader meets first: every --help page at 80 columns, progress rates, the Python API's
own words in its errors, the docs against the code, and the CPU runtime `auto` picks and why."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/cli_surface.py

from cli_surface import help_column, help_pages, panels  # noqa: E402

from rpol_edge.runtimes import InferenceError  # noqa: E402

COLUMNS = 80


def _words(text: str) -> str:
    return " ".join(text.split())


def _unfilled(lines: list[str], width: int) -> list[str]:
    """Lines of one paragraph that end before the width although the next word would have fitted:
    a line break in the middle of a phrase (rich wraps greedily; only a hard newline does this)."""
    bad = []
    for line, nxt in zip(lines, lines[1:], strict=False):
        if line and nxt and len(line) + 1 + len(nxt.split()[0]) <= width:
            bad.append(f"{line!r} before {nxt.split()[0]!r}")
    return bad


def _visible_params(cmd: Any) -> list[Any]:
    return [p for p in cmd.get_params(cmd.context_class(cmd)) if not getattr(p, "hidden", False)]


def _page_problems(name: str, cmd: Any, page: str) -> list[str]:
    where = f"rpol-edge {name} --help" if name else "rpol-edge --help"
    problems = [f"{where}: text cut with '…'"] if "…" in page else []
    boxes = panels(page)
    # the description above the panels: every paragraph in full, wrapped only where it must be
    lines = page.split("╭", 1)[0].splitlines()
    usage = next(i for i, ln in enumerate(lines) if "Usage:" in ln)
    body = "\n".join(ln.strip() for ln in lines[usage + 1 :])
    for para in filter(None, (p.splitlines() for p in body.strip().split("\n\n"))):
        problems += [f"{where}: line break mid-phrase: {b}" for b in _unfilled(para, COLUMNS - 2)]
    for text in (cmd.help or "").split("\n\n"):
        if _words(text) not in _words(body):
            problems.append(f"{where}: description paragraph not shown in full: {text[:40]!r}...")
    for title, kind in (("Arguments", "argument"), ("Options", "option")):
        params = [p for p in _visible_params(cmd) if p.param_type_name == kind]
        if not params:
            continue
        lines = boxes[title]
        if not params[0].help:
            problems.append(f"{where}: {params[0].opts[0]} has no description")
            continue
        start, column = help_column(lines, params[0].help)
        shown = _words(" ".join(column))
        for p in params:
            flag = p.opts[0] if kind == "option" else p.name
            row = next((ln for ln in lines if flag in ln[:start].split()), "")
            if not p.help:
                problems.append(f"{where}: {flag} has no description")
            elif _words(p.help) not in shown:
                problems.append(f"{where}: {flag}: description not shown in full: {p.help[:40]!r}...")
            if getattr(p, "is_flag", False) and "<bool>" in row:
                problems.append(f"{where}: on/off flag {flag} shown as taking a value: {row.strip()!r}")
    if "Commands" in boxes:
        lines = boxes["Commands"]
        subs = list(cmd.commands.values())
        start, column = help_column(lines, subs[0].help)
        cells: list[list[str]] = []
        for line, text in zip(lines, column, strict=True):
            if line[:start].strip():
                cells.append([])
            cells[-1].append(text)
        for sub, cell in zip(subs, cells, strict=True):
            first = sub.help.split("\n\n")[0]
            if _words(first) != _words(" ".join(cell)):
                problems.append(f"{where}: {sub.name}: {first[:40]!r}... not shown in full")
            width = len(lines[0]) - start - 1
            problems += [f"{where}: {sub.name}: line break mid-phrase: {b}" for b in _unfilled(cell, width)]
    return problems


def test_help_pages_say_everything_in_full_at_80_columns() -> None:
    """Every page at 80 columns: nothing cut with '…', no line broken mid-phrase, every option and
    argument described in full, and on/off flags shown as flags (not ``--fp16 <bool>``)."""
    pages = help_pages(COLUMNS)
    problems = [p for name, (cmd, page) in pages.items() for p in _page_problems(name, cmd, page)]
    assert not problems, "\n".join(problems)


def test_export_onnx_flag_is_accepted_but_not_offered() -> None:
    """``--onnx`` cannot be turned off (every format starts from the ONNX graph): help does not
    offer it, and the commands in scripts and docs that pass it keep working."""
    from typer.testing import CliRunner

    from rpol_edge.cli.app import app

    _, page = help_pages(COLUMNS)["export"]
    assert "--onnx " not in page and "always written" in page
    res = CliRunner().invoke(app, ["export", "missing.rpol", "--onnx", "-o", "out"])
    assert res.exit_code == 2 and "No such option" not in res.output, res.output


def _shown_rate(text: str) -> float:
    import re

    rates = re.findall(r"([\d.]+) img/s", text)
    assert rates, text
    return float(rates[-1])


def test_progress_rate_counts_the_work_not_the_first_report(capsys: pytest.CaptureFixture[str]) -> None:
    """Three images in one batch that took 0.3 s are 10 images a second, not hundreds (the rate
    counted from the first report, which comes when the batch is done); a library that loads first
    and then reports 0 done starts the clock there, so its loading is not counted either."""
    import time

    from rpol_edge.cli.progress import progress_bar

    with progress_bar("predict") as update:
        time.sleep(0.3)  # the first (only) batch
        update(3, 3)
    rate = _shown_rate(capsys.readouterr().err)
    assert 3 / 2.0 < rate <= 3 / 0.3 * 1.05, rate

    with progress_bar("fit") as update:
        time.sleep(1.0)  # loading the model and the data
        update(0, 3)  # the work starts
        time.sleep(0.2)
        update(3, 3)
    rate = _shown_rate(capsys.readouterr().err)
    assert 3 / 0.6 < rate <= 3 / 0.2 * 1.05, rate  # loading counted would be at most 3 / 1.2


PRE_LAYOUT = Path(__file__).resolve().parents[1] / "fixtures" / "pre_layout"
SAMPLE_PHOTO = sorted((PRE_LAYOUT.parents[2] / "rpol_edge" / "sample" / "JPEGImages").glob("*.jpg"))[0]


def _cli(*args: object) -> tuple[int, str]:
    from typer.testing import CliRunner

    from rpol_edge.cli.app import app

    res = CliRunner().invoke(app, [str(a) for a in args])
    return res.exit_code, res.output


def test_python_errors_name_parameters_and_the_cli_names_flags(tmp_path: Path) -> None:
    """A Python caller reads the names it typed (``boxes='foo'``, ``int8=True``), a shortened CLI
    name gets its suggestion (``tau`` -> ``tau_mode``), and the same errors on the command line name
    its flags (``--boxes 'foo'``, ``--int8``), translated in one place from the command's own options."""
    import rpol_edge
    from rpol_edge.core.export_formats import ExportError

    with pytest.raises(TypeError, match=r"^unknown option 'tau' \(did you mean tau_mode\?\)"):
        rpol_edge.fit(tmp_path, tmp_path / "m.rpol", tau="mean")
    with rpol_edge.load(PRE_LAYOUT / "exp" / "model.onnx", device="cpu") as model:
        with pytest.raises(ValueError) as boxes:
            model.predict(SAMPLE_PHOTO, boxes="foo")
    assert str(boxes.value) == "boxes='foo': choose largest, peak, all or objects"
    with pytest.raises(ExportError) as int8:
        rpol_edge.export(PRE_LAYOUT / "tiny.rpol", tmp_path / "o", int8=True)
    assert str(int8.value) == "int8=True needs calibration images: calib_data=KIND calib_root=DIR"
    with pytest.raises(InferenceError) as option:
        rpol_edge.load(PRE_LAYOUT / "exp" / "model.onnx", device="cpu", cuda_graph=True)
    assert str(option.value).startswith("runtime ort does not take cuda_graph=True ")

    onnx = PRE_LAYOUT / "exp" / "model.onnx"
    code, out = _cli("predict", onnx, SAMPLE_PHOTO, "-o", tmp_path / "p", "--boxes", "foo")
    want = "error: --boxes 'foo': choose largest, peak, all or objects"
    assert (code, out.strip().splitlines()[-1]) == (2, want), out
    code, out = _cli("export", PRE_LAYOUT / "tiny.rpol", "--int8", "-o", tmp_path / "o")
    want = "error: --int8 needs calibration images: --calib-data KIND --calib-root DIR"
    assert (code, out.strip().splitlines()[-1]) == (2, want), out
    code, out = _cli("fit", "--root", tmp_path, "--tau", "foo", "-o", tmp_path / "m.rpol")
    assert (code, out.strip().splitlines()[-1]) == (2, "error: --tau 'foo': choose joint or mean"), out
    code, out = _cli("run", onnx, "--source", SAMPLE_PHOTO, "--cuda-graph")
    assert code == 2 and "does not take --cuda-graph (it takes" in out, out


def test_to_flags_speaks_the_commands_flags() -> None:
    from rpol_edge.cli.errors import Flag, to_flags

    flags = {
        "simplify": Flag("--simplify", "--no-simplify", switch=True),
        "int8": Flag("--int8", switch=True),
        "calib_root": Flag("--calib-root"),
        "tau_mode": Flag("--tau"),
    }
    assert to_flags("simplify=False with int8=True", flags) == "--no-simplify with --int8"
    assert to_flags("`calib_root`: fixed; tau_mode='x'", flags) == "--calib-root: fixed; --tau 'x'"
    untouched = "my_calib_root=1 --calib-root=2 device=cpu"  # not a name, a flag already, not an option
    assert to_flags(untouched, flags) == untouched


AMX_XEON = (
    "model name\t: Intel(R) Xeon(R) Platinum 8480+\n"
    "flags\t\t: fpu sse avx2 avx512f avx512_vnni amx_bf16 amx_tile amx_int8\n"
)
AMD_EPYC = "model name\t: AMD EPYC 9654 96-Core Processor\nflags\t\t: fpu sse avx2 avx512f avx512_vnni\n"


@pytest.mark.parametrize(
    ("cpuinfo", "runtime", "line"),
    [
        (
            AMX_XEON,
            "openvino",
            "auto: OpenVINO for INT8 on Intel(R) Xeon(R) Platinum 8480+ (AMX): measured 1.24x faster than "
            "onnxruntime on an Intel Xeon with AMX, benchmarks/results/ladder.json",
        ),
        (
            AMD_EPYC,
            "ort",
            "auto: onnxruntime for INT8 on AMD EPYC 9654 96-Core Processor (no AMX): measured 1.29x faster "
            "than OpenVINO on an AMD EPYC (Zen 4, AVX-512 VNNI), benchmarks/results/cpu_batch_threads.json",
        ),
    ],
    ids=["amx", "no-amx"],
)
def test_runtime_auto_runs_int8_where_this_cpu_family_measured_faster(
    cpuinfo: str, runtime: str, line: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """The CPU's flags (as /proc/cpuinfo gives them) decide: OpenVINO on a CPU with AMX, ONNX
    Runtime on one without, each said in one line that cites its measurement; the record exists
    and was taken on that family. An FP32 graph stays on ONNX Runtime without a line."""
    pytest.importorskip("openvino", reason="the choice is between OpenVINO and ONNX Runtime")
    pytest.importorskip("onnxruntime", reason="the choice is between OpenVINO and ONNX Runtime")
    from rpol_edge.runtimes import cpu_auto, open_runtime

    fake = tmp_path / "cpuinfo"
    fake.write_text(cpuinfo)
    monkeypatch.setattr(cpu_auto, "CPUINFO", fake)
    with caplog.at_level("INFO", logger="rpol_edge.runtimes"):
        with open_runtime(PRE_LAYOUT / "exp-int8" / "model.int8.onnx", device="cpu") as rt:
            assert rt.name == runtime
        said = [r.getMessage() for r in caplog.records]
        assert len(said) == 1 and said[0].startswith(line + " ("), said
        caplog.clear()
        with open_runtime(PRE_LAYOUT / "exp" / "model.onnx", device="cpu") as rt:
            assert rt.name == "ort" and not caplog.records

    import json

    rule = cpu_auto.cpu_rule("int8", cpu_auto.this_cpu()[1])
    assert rule is not None
    record = json.loads((PRE_LAYOUT.parents[2] / rule.record).read_text())
    assert rule.runtime == runtime
    assert ("amx_int8" in record["machine"]["cpu_flags"]) == (rule.flag == "amx_int8")


REPO = PRE_LAYOUT.parents[2]
RUNTIME_NAME = r"(?:auto|torch|ort|openvino|trt)\b"
RUNTIME_LIST = re.compile(rf"\b{RUNTIME_NAME}(?:(?:\s*[|,/]\s*|\s+or\s+){RUNTIME_NAME}){{2,}}")
"""Three or more runtime names in a row (``auto|torch|ort|trt``, ``torch, ort, trt``): a list of
the choices, which must name every runtime the registry has."""


def _everything_installs() -> dict[str, str]:
    """Each place that says how to install everything, with the command it gives."""
    found = {}
    for name in ("README.md", "docs/getting-started.md"):
        for line in (REPO / name).read_text().splitlines():
            if line.startswith("| everything"):
                found[name] = re.findall(r"`(pip install [^`]+)`", line)[0]
            elif ".venv/bin/pip install -e '.[" in line:
                found[f"{name} (without make)"] = re.findall(r"pip install -e '[^']+'", line)[0]
    make = re.findall(r"pip install -q (-e '[^']+')", (REPO / "Makefile").read_text())[0]
    found["Makefile"] = f"pip install {make}"
    return found


def test_docs_say_what_the_code_does() -> None:
    """Where docs (and docstrings) list --runtime choices, every runtime of the registry is there;
    every table of JSON fields that lists a detection's fields lists all of them; the "everything"
    install is one command in README, getting-started and the Makefile."""
    from rpol_edge.results.detection import Detection, detection_record
    from rpol_edge.runtimes import RUNTIMES

    problems = []
    docs = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    for path in docs + sorted((REPO / "rpol_edge").rglob("*.py")):
        for m in RUNTIME_LIST.finditer(path.read_text()):
            missing = set(RUNTIMES) - set(re.findall(RUNTIME_NAME, m[0]))
            if missing:
                problems.append(f"{path.relative_to(REPO)}: {m[0]!r} leaves out {', '.join(sorted(missing))}")
    fields = set(detection_record(Detection((0, 0, 9, 9), 0.5, None)))
    for table in re.findall(r"(?:^\|.*\n)+", (REPO / "docs" / "outputs.md").read_text(), re.M):
        if "| `box`" in table or ", `box`" in table:
            missing = {f for f in fields if f"`{f}`" not in table}
            if missing:
                problems.append(f"docs/outputs.md: a record table without {sorted(missing)}: {table[:60]!r}")
    installs = _everything_installs()
    assert len(installs) == 4, installs
    if len(set(installs.values())) != 1:
        problems.append(f"the 'everything' install differs: {installs}")
    assert not problems, "\n".join(problems)
