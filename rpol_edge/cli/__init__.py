"""The command line: thin typer commands over the public Python API."""

from rpol_edge.cli.app import app, main

__all__ = ["app", "main"]
