"""The CLI's surface: every command's parameters (name, flags, default, kind) and its --help text
at 100 columns, with the repository path replaced by <REPO>. ``python tests/cli_surface.py OUT.json``
records it; tests/test_compat_artifacts.py compares the current CLI with the recorded one.

`help_pages` renders every page at a given width and `help_column` reads one column of a help
panel back as text, for tests of what a reader sees in a narrow terminal."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ENV = {"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"}


def help_pages(columns: int) -> dict[str, tuple[Any, str]]:
    """Every help page at ``columns`` wide: ``""`` (the top level) and each command name, mapped to
    (the click command, the page as printed)."""
    import typer
    from typer.testing import CliRunner

    from rpol_edge.cli.app import app

    top = typer.main.get_command(app)
    env = {"COLUMNS": str(columns), "NO_COLOR": "1", "TERM": "dumb"}
    runner = CliRunner()
    pages = {"": (top, runner.invoke(app, ["--help"], env=env).output)}
    for name, sub in top.commands.items():  # type: ignore[attr-defined]
        res = runner.invoke(app, [name, "--help"], env=env)
        assert res.exit_code == 0, res.output
        pages[name] = (sub, res.output)
    return pages


def panels(page: str) -> dict[str, list[str]]:
    """The boxed panels of a rich help page by title, each as its inner lines (borders removed)."""
    out: dict[str, list[str]] = {}
    title = None
    for line in page.splitlines():
        if line.startswith("╭─"):
            title = line.strip("╭─╮ ").split(" ─")[0].strip()
            out[title] = []
        elif line.startswith("╰"):
            title = None
        elif title is not None and line.startswith("│"):
            out[title].append(line.rstrip()[1:-1])
    return out


def help_column(lines: list[str], first_help: str) -> tuple[int, list[str]]:
    """Where a panel's help column starts (found from the first row's help text) and its lines."""
    start = lines[0].find(first_help[:12])
    assert start > 0, f"{first_help[:12]!r} not on the first row: {lines[0]!r}"
    return start, [line[start:].strip() for line in lines]


def surface() -> dict[str, Any]:
    import typer
    from typer.testing import CliRunner

    from rpol_edge.cli.app import app

    cmd = typer.main.get_command(app)
    runner = CliRunner()
    snap: dict[str, Any] = {}
    for name, sub in sorted(cmd.commands.items()):  # type: ignore[attr-defined]
        params = []
        for p in sub.params:
            d = p.default
            params.append(
                {
                    "name": p.name,
                    "opts": list(p.opts) + list(getattr(p, "secondary_opts", [])),
                    "default": d if isinstance(d, (int, float, str, bool, type(None))) else repr(d),
                    "type": str(getattr(p, "type", "")),
                    "required": bool(getattr(p, "required", False)),
                    "multiple": bool(getattr(p, "multiple", False)),
                    "kind": type(p).__name__,
                }
            )
        res = runner.invoke(app, [name, "--help"], env=ENV)
        snap[name] = {"params": params, "help": res.output}
    return json.loads(json.dumps(snap).replace(str(REPO), "<REPO>"))


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(json.dumps(surface(), indent=1, sort_keys=True))
