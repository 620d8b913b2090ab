"""Thin typer CLI: each command parses its options and calls one library function."""

from __future__ import annotations

import sys
from typing import Annotated

from rpol_edge.core.extras import MissingExtra, require_opencv

try:  # before the imports below: they load OpenCV, and a missing one must be one line, not a traceback
    require_opencv()
except MissingExtra as exc:
    sys.stderr.write(f"error: {exc}\n")
    raise SystemExit(2) from None

import typer  # noqa: E402

from rpol_edge.cli.bench import bench  # noqa: E402
from rpol_edge.cli.client import client  # noqa: E402
from rpol_edge.cli.common import show_runtime_choices  # noqa: E402
from rpol_edge.cli.evaluate import compare, demo, eval_cmd  # noqa: E402
from rpol_edge.cli.explain import explain  # noqa: E402
from rpol_edge.cli.export import export  # noqa: E402
from rpol_edge.cli.fit import fit  # noqa: E402
from rpol_edge.cli.info import info  # noqa: E402
from rpol_edge.cli.predict import predict  # noqa: E402
from rpol_edge.cli.refit import refit  # noqa: E402
from rpol_edge.cli.run import run_command  # noqa: E402
from rpol_edge.cli.serve import serve  # noqa: E402

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Unsupervised object localization for the edge."
)


def _version(value: bool) -> None:
    if value:
        from rpol_edge import __version__

        typer.echo(f"rpol-edge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """Unsupervised object localization for the edge."""
    show_runtime_choices()


# Registration order is the order `rpol-edge --help` lists the commands in.
app.command()(fit)
app.command()(refit)
app.command()(info)
app.command("eval")(eval_cmd)
app.command()(predict)
app.command()(export)
app.command()(bench)
app.command()(compare)
app.command()(demo)
app.command()(explain)
app.command("run")(run_command)
app.command()(serve)
app.command()(client)


def main() -> None:
    app(prog_name="rpol-edge")


if __name__ == "__main__":
    main()
