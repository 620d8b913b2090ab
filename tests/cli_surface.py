"""The CLI's surface: every command's parameters (name, flags, default, kind) and its --help text
at 100 columns, with the repository path replaced by <REPO>. ``python tests/cli_surface.py OUT.json``
records it; tests/test_compat_artifacts.py compares the current CLI with the recorded one."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ENV = {"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"}


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
