"""Known failures as one line and exit code 2, in the command's own words: library messages name
Python parameters (``input_size=16``), the command line shows its flags (``--input-size 16``)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import typer

from rpol_edge.cli.console import err


def _known_errors() -> tuple[type[BaseException], ...]:
    """Every module named here must import without torch: this runs on any error of any command.

    (``rpol_edge.backbones.BackboneError``, beside torch and timm, is a ValueError, caught below.)
    """
    from rpol_edge.core.export_formats import ExportError
    from rpol_edge.core.extras import MissingExtra
    from rpol_edge.core.metadata import MetadataError
    from rpol_edge.data import DatasetError
    from rpol_edge.data.images import ImageError
    from rpol_edge.exporters.trt.build import EngineBuildError
    from rpol_edge.integrations.triton.server_env import ServeError
    from rpol_edge.runtimes import InferenceError
    from rpol_edge.runtimes.cuda_mem import CudaError
    from rpol_edge.runtimes.trt_common import TrtUnavailable

    return (
        MissingExtra,
        DatasetError,
        ExportError,
        ImageError,
        MetadataError,
        InferenceError,
        TrtUnavailable,
        EngineBuildError,
        CudaError,
        ServeError,
        OSError,
        ValueError,
        # An optional module (matplotlib for explain figures, a timm classifier) that is not installed.
        ImportError,
    )


@dataclass(frozen=True)
class Flag:
    """How the command line spells one parameter."""

    name: str
    """``--input-size``"""
    off: str | None = None
    """An on/off flag's off form (``--no-simplify``)."""
    switch: bool = False
    """An on/off flag: it takes no value."""


def command_flags(params: Iterable[Any], aliases: Mapping[str, str] | None = None) -> dict[str, Flag]:
    """Parameter name -> flag, read from a command's declared options (what the user typed), so
    the mapping cannot drift from the declarations. ``aliases``: library names that differ from the
    command's parameter (``tau_mode`` -> ``tau``)."""
    flags = {}
    for p in params:
        longs = [o for o in getattr(p, "opts", []) if o.startswith("--")]
        if getattr(p, "param_type_name", "") != "option" or not longs or not p.name:
            continue
        off = next((o for o in getattr(p, "secondary_opts", []) if o.startswith("--")), None)
        flags[p.name] = Flag(longs[0], off, bool(getattr(p, "is_flag", False)))
    return _aliased(flags, aliases)


def _aliased(flags: dict[str, Flag], aliases: Mapping[str, str] | None) -> dict[str, Flag]:
    return flags | {library: flags[param] for library, param in (aliases or {}).items() if param in flags}


def to_flags(message: str, flags: Mapping[str, Flag]) -> str:
    """A library message in the command line's words. The library names Python parameters, as a
    Python caller wrote them: ``input_size=16`` becomes ``--input-size 16``, ``int8=True`` becomes
    ``--int8`` (``simplify=False``: ``--no-simplify``) and a name in backticks (`` `calib_root` ``)
    the bare flag. Names that are not this command's options stay as they are."""
    if not flags:
        return message
    names = "|".join(sorted(map(re.escape, flags), key=len, reverse=True))

    def switch(m: re.Match[str]) -> str:
        flag = flags[m[1]]
        if not flag.switch:
            return f"{flag.name} {m[2]}"
        return flag.name if m[2] == "True" else flag.off or m[0]

    message = re.sub(rf"(?<![\w-])({names})=(True|False)\b", switch, message)
    message = re.sub(rf"(?<![\w-])({names})=", lambda m: flags[m[1]].name + " ", message)
    return re.sub(rf"`({names})`", lambda m: flags[m[1]].name, message)


_COMMAND_FLAGS: ContextVar[dict[str, Flag] | None] = ContextVar("command_flags", default=None)


@contextmanager
def speaking_flags(params: Iterable[Any]) -> Iterator[None]:
    """While a command runs, `cli_errors` shows library messages in its flags (`to_flags`)."""
    token = _COMMAND_FLAGS.set(command_flags(params))
    try:
        yield
    finally:
        _COMMAND_FLAGS.reset(token)


@contextmanager
def cli_errors(aliases: Mapping[str, str] | None = None) -> Iterator[None]:
    """Known failures end as one line on stderr and exit code 2, never a traceback. The line is the
    library's, with its parameter names shown as this command's flags (`to_flags`): the one place
    where the two vocabularies meet. ``aliases``: library names that differ from the command's
    parameter names (fit's ``tau_mode`` is its ``--tau``)."""
    try:
        yield
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        raise typer.Exit(130) from None
    except _known_errors() as exc:
        line = "error: " + to_flags(str(exc), _aliased(_COMMAND_FLAGS.get() or {}, aliases))
        err.print(line, markup=False, highlight=False, soft_wrap=True, emoji=False)
        raise typer.Exit(2) from None
