"""Thin typer CLI: each command parses its options and calls one library function."""

from __future__ import annotations

import inspect
import sys
from typing import Annotated, Any

from rpol_edge.core.extras import MissingExtra, require_opencv

try:  # before the imports below: they load OpenCV, and a missing one must be one line, not a traceback
    require_opencv()
except MissingExtra as exc:
    sys.stderr.write(f"error: {exc}\n")
    raise SystemExit(2) from None

import typer  # noqa: E402
from typer.core import TyperCommand, TyperGroup  # noqa: E402

from rpol_edge.cli.bench import bench  # noqa: E402
from rpol_edge.cli.client import client  # noqa: E402
from rpol_edge.cli.console import show_runtime_choices  # noqa: E402
from rpol_edge.cli.errors import speaking_flags  # noqa: E402
from rpol_edge.cli.evaluate import compare, demo, eval_cmd  # noqa: E402
from rpol_edge.cli.explain import explain  # noqa: E402
from rpol_edge.cli.export import export  # noqa: E402
from rpol_edge.cli.fit import fit  # noqa: E402
from rpol_edge.cli.info import info  # noqa: E402
from rpol_edge.cli.predict import predict  # noqa: E402
from rpol_edge.cli.refit import refit  # noqa: E402
from rpol_edge.cli.run import run_command  # noqa: E402
from rpol_edge.cli.serve import serve  # noqa: E402


def reflow(text: str | None) -> str | None:
    """Each paragraph of a docstring as one line. Typer's rich help keeps the source's line breaks,
    which at another terminal width break lines mid-phrase; one line a paragraph lets rich wrap it to
    the terminal. A paragraph that starts with ``\\b`` keeps its lines (click's convention)."""
    if not text:
        return text
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(p if p.startswith("\b") else " ".join(p.split()) for p in paragraphs)


def untyped_flags(params: list[Any]) -> list[Any]:
    """On/off flags take no value, so their help row shows no value type: typer would print
    ``--fp16 <bool>`` (even ``--help <bool>``), which reads as if ``--fp16 true`` were the way."""
    for p in params:
        if getattr(p, "is_flag", False) and not getattr(p, "count", False):
            p.metavar = ""
    return params


class Command(TyperCommand):
    """Every rpol-edge command: help that reads well at any width (`reflow`, `untyped_flags`), and
    errors in its own flags (`speaking_flags`: the library names Python parameters)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = reflow(self.help)
        # the whole first paragraph: click would cut it to 45 characters (the docs' command list)
        self.short_help = reflow(self.short_help) or (self.help or "").split("\n\n")[0]

    def get_params(self, ctx: Any) -> list[Any]:
        return untyped_flags(super().get_params(ctx))

    def invoke(self, ctx: Any) -> Any:
        with speaking_flags(self.params):
            return super().invoke(ctx)


class HelpGroup(TyperGroup):
    """The top level, with the same help rules as its commands (`Command`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = reflow(self.help)

    def get_params(self, ctx: Any) -> list[Any]:
        return untyped_flags(super().get_params(ctx))


app = typer.Typer(
    cls=HelpGroup,
    add_completion=False,
    no_args_is_help=True,
    help="Unsupervised object localization for the edge.",
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
app.command(cls=Command)(fit)
app.command(cls=Command)(refit)
app.command(cls=Command)(info)
app.command("eval", cls=Command)(eval_cmd)
app.command(cls=Command)(predict)
app.command(cls=Command)(export)
app.command(cls=Command)(bench)
app.command(cls=Command)(compare)
app.command(cls=Command)(demo)
app.command(cls=Command)(explain)
app.command("run", cls=Command)(run_command)
app.command(cls=Command)(serve)
app.command(cls=Command)(client)


def main() -> None:
    app(prog_name="rpol-edge")


if __name__ == "__main__":
    main()
