"""The typer app as a click command, for the generated CLI reference (mkdocs-click reads it)."""

import typer

from rpol_edge.cli.app import app

command = typer.main.get_command(app)
