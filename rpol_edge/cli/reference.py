"""The CLI reference as Markdown, generated from the typer app (the docs site's CLI page).

typer's own generator writes it, so the page always shows the commands, arguments, options and
defaults that ``rpol-edge COMMAND --help`` shows.
"""

from __future__ import annotations

import typer
import typer.cli

from rpol_edge.cli.app import app


def markdown(prog_name: str = "rpol-edge") -> str:
    cmd = typer.main.get_command(app)
    text = typer.cli.get_docs_for_click(obj=cmd, ctx=typer.Context(cmd), name=prog_name)
    # One level down: the page keeps its own title; a bare | would split a Markdown table row.
    return "\n".join("#" + line if line.startswith("#") else line for line in text.splitlines())
