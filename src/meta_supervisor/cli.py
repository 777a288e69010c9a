"""The ``meta-supervisor`` command line (Typer + rich).

Exit codes: 0 ok; 1 the command ran but found a problem (``verify`` failed, nothing usable);
2 bad usage, a bad policy or input file (the message names the file, line or key);
3 another cycle holds the state lock.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from meta_supervisor import __version__
from meta_supervisor.config import Paths
from meta_supervisor.cycle import run_cycle
from meta_supervisor.decision import Decision, parse_iso
from meta_supervisor.demo import DEMO_AS_OF, write_demo_fleet
from meta_supervisor.policy import PolicyError, load_policy
from meta_supervisor.state import LockBusy, verify_history
from meta_supervisor.views import explanation_panel, print_decision

app = typer.Typer(
    name="meta-supervisor",
    help="Decide how much capital each trading agent gets, and say why.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)

StateDir = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="State directory (default: META_SUPERVISOR_STATE_DIR or meta_supervisor/state).",
    ),
]
AsOf = Annotated[
    str | None, typer.Option("--as-of", help="Decide as of this ISO-8601 instant (default: now).")
]
Config = Annotated[Path | None, typer.Option("--config", help="Policy TOML file.")]
JsonOut = Annotated[bool, typer.Option("--json", help="Print the decision as JSON.")]


def _fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def _paths(
    state_dir: Path | None, records: Path | None = None, telemetry: Path | None = None
) -> Paths:
    base = Paths.from_env()
    return Paths(
        records=records or base.records,
        telemetry=telemetry or base.telemetry,
        state_dir=state_dir or base.state_dir,
        policy=base.policy,
    )


def _as_of(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_iso(text)
    except ValueError as err:
        raise _fail(f"--as-of: {err}") from None


def _version(value: bool) -> None:
    if value:
        console.print(f"meta-supervisor {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Decide how much capital each trading agent gets, and say why."""


@app.command()
def demo(
    out: Annotated[
        Path, typer.Option(help="Where to write the example fleet and its state.")
    ] = Path("demo-out"),
    json_out: JsonOut = False,
) -> None:
    """Generate the example fleet, run one cycle on it and print the decision.

    Example: meta-supervisor demo --out /tmp/fleet
    """
    paths = write_demo_fleet(out)
    decision, ledger = run_cycle(paths, DEMO_AS_OF)
    if json_out:
        sys.stdout.write(decision.to_json() + "\n")
        return
    console.print(
        f"Example fleet: {ledger.records.height} records, {ledger.telemetry.height} telemetry runs "
        f"({ledger.refused} refused, {ledger.duplicates} duplicates) in {out}/"
    )
    print_decision(decision, console)
    console.print(
        f"State written to {paths.state_dir}/. "
        f"Try: meta-supervisor explain cygnus --state-dir {paths.state_dir}"
    )


@app.command()
def allocate(
    as_of: AsOf = None,
    config: Config = None,
    state_dir: StateDir = None,
    records: Annotated[
        Path | None, typer.Option(help="Reconciled records (JSONL/CSV/Parquet).")
    ] = None,
    telemetry: Annotated[
        Path | None, typer.Option(help="Telemetry events (JSONL/CSV/Parquet).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Decide but write nothing.")] = False,
    wait: Annotated[float, typer.Option(help="Seconds to wait for another cycle's lock.")] = 0.0,
    json_out: JsonOut = False,
) -> None:
    """Run one cycle: read the ledger, decide, record the decision, print the table.

    Example: meta-supervisor allocate --as-of 2026-01-15T00:00:00Z
    """
    paths = _paths(state_dir, records, telemetry)
    try:
        policy = load_policy(config or paths.policy)
        decision, ledger = run_cycle(
            paths, _as_of(as_of), policy, write=not dry_run, lock_timeout_s=wait
        )
    except PolicyError as err:
        raise _fail(str(err)) from None
    except LockBusy as err:
        raise _fail(str(err), code=3) from None
    if json_out:
        sys.stdout.write(decision.to_json() + "\n")
        return
    if ledger.refused:
        err_console.print(
            f"[yellow]{ledger.refused} input rows refused[/]: "
            "see the quarantine ('meta-supervisor ingest --dry-run')"
        )
    print_decision(decision, console)


def _load_decision(paths: Paths) -> Decision:
    if not paths.decision.exists():
        raise _fail(f"{paths.decision}: no decision yet; run 'meta-supervisor allocate' first", 1)
    return Decision.from_dict(json.loads(paths.decision.read_text(encoding="utf-8")))


@app.command()
def explain(
    agent: Annotated[str | None, typer.Argument(help="Agent to explain (default: all).")] = None,
    state_dir: StateDir = None,
    json_out: JsonOut = False,
) -> None:
    """Show every factor behind the latest decision.

    Example: meta-supervisor explain cygnus
    """
    decision = _load_decision(_paths(state_dir))
    names = [agent] if agent else sorted(decision.agents)
    for name in names:
        if name not in decision.agents:
            known = ", ".join(sorted(decision.agents))
            raise _fail(f"agent {name!r} is not in the decision of {decision.as_of} ({known})")
    if json_out:
        sys.stdout.write(
            json.dumps({n: decision.agents[n] for n in names}, indent=2, sort_keys=True) + "\n"
        )
        return
    for name in names:
        console.print(explanation_panel(decision, name))


@app.command()
def verify(state_dir: StateDir = None) -> None:
    """Check the hash chain of the decision history; exit 1 naming the first bad entry."""
    paths = _paths(state_dir)
    ok, message = verify_history(paths.history)
    if ok:
        console.print(f"[green]ok[/]: {paths.history}: {message}")
        return
    raise _fail(f"{paths.history}: {message}", 1)
