"""The ``meta-supervisor`` command line (Typer + rich). Walkthrough: docs/CLI.md.

The app and its one error handler; each command lives in its own module of this package
(``demo``; ``decide``: allocate, supersede; ``review``: explain, history, diff, verify; ``policy``;
``override``; ``ingest``: ingest, quarantine; ``backtest``; ``sweep``: grids of backtests on
Ray; ``serve``: the live service) and is registered here. Common options: ``--root DIR`` (or
``META_SUPERVISOR_ROOT``: the original system's layout under DIR, e.g. the demo's
``demo-out``), ``--state-dir``, ``--config`` (policy TOML, or ``META_SUPERVISOR_POLICY``),
``--as-of`` (ISO-8601 with a zone) and ``--json`` (stable
machine output, schemas in docs/CLI.md; errors still go to stderr).

Exit codes:

== ==========================================================================================
0  success
1  the command ran but found a problem: ``verify`` found a broken chain, there is no decision
   or history yet, or a state file (decision, history) cannot be read; the message names the
   file and line or entry
2  bad usage or bad input: unknown option, command or agent, a bad ``--as-of``, a bad policy
   file (the key is named, with a did-you-mean), a bad overrides file (entry and field named)
3  another cycle holds the state lock (``state_dir/.lock``); retry, or pass ``--wait``
== ==========================================================================================
"""

from __future__ import annotations

import itertools
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup, TyperOption

from meta_supervisor import __version__
from meta_supervisor.cli.backtest import backtest
from meta_supervisor.cli.common import (
    console,
    emit_json,
    error_object,
    forget_emitted,
    json_emitted,
    report,
)
from meta_supervisor.cli.decide import allocate, supersede
from meta_supervisor.cli.demo import demo
from meta_supervisor.cli.ingest import ingest, quarantine
from meta_supervisor.cli.override import override_app
from meta_supervisor.cli.policy import policy_app
from meta_supervisor.cli.review import diff, explain, history, verify
from meta_supervisor.cli.serve import serve
from meta_supervisor.cli.sweep import sweep
from meta_supervisor.errors import MetaSupervisorError


def _plain_help(option: TyperOption | None) -> TyperOption | None:
    """``-h/--help`` without a ``<bool>`` type in the help table (a flag takes no value)."""
    if option is not None:
        option.metavar = ""
    return option


def _wants_json(args: list[str]) -> bool:
    """Whether the command line asks for machine output (``--json`` or ``--format json``)."""
    if "--json" in args or "--format=json" in args:
        return True
    return any(a == "--format" and b == "json" for a, b in itertools.pairwise(args))


def _plain_flags(params: list[Any]) -> None:
    """Flags (options without a value) show no type in the help table."""
    for param in params:
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""


class _Command(TyperCommand):
    """A command whose flags show no ``<bool>`` type in its help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _plain_flags(self.params)

    def get_help_option(self, ctx: typer.Context) -> TyperOption | None:  # type: ignore[override]
        return _plain_help(super().get_help_option(ctx))


class _Group(TyperGroup):
    """A group whose flags (typer's completion options included) show no ``<bool>`` type in
    its help."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        _plain_flags(params)
        return params

    def get_help_option(self, ctx: typer.Context) -> TyperOption | None:  # type: ignore[override]
        return _plain_help(super().get_help_option(ctx))


class _Handled(_Group):
    """The one error handler: a :class:`~meta_supervisor.errors.MetaSupervisorError` raised by
    any command (or anything it calls) is printed by :func:`~meta_supervisor.cli.common.report`
    and exits with the code its class carries; anything else is a bug and keeps its
    traceback. Under ``--json`` (or ``--format json``) the error is also printed on stdout as
    a JSON object (:func:`~meta_supervisor.cli.common.error_object`), usage errors included,
    so that a script reading stdout always gets JSON."""

    def invoke(self, ctx: Any) -> Any:
        as_json = _wants_json([*ctx._protected_args, *ctx.args])
        forget_emitted()
        try:
            return super().invoke(ctx)
        except MetaSupervisorError as err:
            report(err)
            if as_json and not json_emitted():
                emit_json(error_object(str(err), err.exit_code, err.hint))
            raise typer.Exit(err.exit_code) from None
        except typer.BadParameter as err:  # a usage error: click prints it on stderr
            if as_json:
                emit_json(error_object(err.format_message(), err.exit_code, None))
            raise
        except Exception as err:  # click's other usage errors (unknown option, missing value)
            code = getattr(err, "exit_code", None)
            if as_json and code == 2 and hasattr(err, "format_message"):
                emit_json(error_object(err.format_message(), code, None))
            raise


app = typer.Typer(
    cls=_Handled,
    name="meta-supervisor",
    help="Decide how much capital each trading agent gets, and say why.\n\n"
    "New here? Run 'meta-supervisor demo', then follow the commands it prints "
    "(walkthrough: docs/CLI.md).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="markdown",
)


def _version(value: bool) -> None:
    if value:
        console.print(f"meta-supervisor {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", metavar="", callback=_version, is_eager=True, help="Show the version."
        ),
    ] = False,
) -> None:
    """Decide how much capital each trading agent gets, and say why.

    New here? Run 'meta-supervisor demo' and follow the commands it prints
    (walkthrough: docs/CLI.md). Exit codes: 0 ok, 1 problem found (verify failed, no state
    yet), 2 bad usage or input (the file, line or key is named), 3 state lock busy.
    """


for command in (
    demo,
    allocate,
    supersede,
    explain,
    history,
    diff,
    verify,
    backtest,
    sweep,
    ingest,
    quarantine,
    serve,
):
    app.command(cls=_Command)(command)
for group in (policy_app, override_app):
    for info in group.registered_commands:
        if info.cls in (None, TyperCommand):
            info.cls = _Command
app.add_typer(policy_app, name="policy", cls=_Group)
app.add_typer(override_app, name="override", cls=_Group)
