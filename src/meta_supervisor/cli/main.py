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

from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from meta_supervisor import __version__
from meta_supervisor.cli.backtest import backtest
from meta_supervisor.cli.common import console, report
from meta_supervisor.cli.decide import allocate, supersede
from meta_supervisor.cli.demo import demo
from meta_supervisor.cli.ingest import ingest, quarantine
from meta_supervisor.cli.override import override_app
from meta_supervisor.cli.policy import policy_app
from meta_supervisor.cli.review import diff, explain, history, verify
from meta_supervisor.cli.serve import serve
from meta_supervisor.cli.sweep import sweep
from meta_supervisor.errors import MetaSupervisorError


class _Handled(TyperGroup):
    """The one error handler: a :class:`~meta_supervisor.errors.MetaSupervisorError` raised by
    any command (or anything it calls) is printed by :func:`~meta_supervisor.cli.common.report`
    and exits with the code its class carries; anything else is a bug and keeps its
    traceback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except MetaSupervisorError as err:
            report(err)
            raise typer.Exit(err.exit_code) from None


app = typer.Typer(
    cls=_Handled,
    name="meta-supervisor",
    help="Decide how much capital each trading agent gets, and say why.\n\n"
    "New here? Run 'meta-supervisor demo', then follow the commands it prints "
    "(walkthrough: docs/CLI.md).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
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
    app.command()(command)
app.add_typer(policy_app, name="policy")
app.add_typer(override_app, name="override")
