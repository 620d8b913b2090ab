"""mkdocs hooks: the CLI page is generated from the typer app at build time (docs/cli.md holds the
marker), so a command or flag added to the CLI is in the docs without anyone retyping it."""

from __future__ import annotations

from typing import Any

MARKER = "<!-- cli-reference -->"


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    if MARKER not in markdown:
        return markdown
    from rpol_edge.cli.reference import markdown as cli_markdown

    return markdown.replace(MARKER, cli_markdown())
