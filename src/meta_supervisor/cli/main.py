"""The ``meta-supervisor`` command line (Typer + rich). Walkthrough: docs/CLI.md.

Commands: ``demo``, ``allocate``, ``explain``, ``history``, ``diff``, ``verify``,
``policy show|validate``, ``override add|list|remove`` (and those other modules register at
the end of this file). Common options: ``--root DIR`` (or ``META_SUPERVISOR_ROOT``: the
original system's layout under DIR, e.g. the demo's ``demo-out``), ``--state-dir``,
``--config`` (policy TOML, or ``META_SUPERVISOR_POLICY``), ``--as-of`` (ISO-8601 with a zone)
and ``--json`` (stable machine output, schemas in docs/CLI.md; errors still go to stderr).

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

import difflib
import json
import shlex
import shutil
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from meta_supervisor import __version__
from meta_supervisor.allocate.decision import Decision, canonical_json, fingerprint, iso, parse_iso
from meta_supervisor.config import Paths
from meta_supervisor.cycle.run import OutOfOrder, run_cycle
from meta_supervisor.ledger.store import LedgerStore
from meta_supervisor.policy.model import Policy, PolicyError, load_policy
from meta_supervisor.research.demo import DEMO_AS_OF, DEMO_CYCLES, write_demo_fleet
from meta_supervisor.state import overrides as overrides_file
from meta_supervisor.state.files import (
    HistoryEntry,
    LockBusy,
    StateLock,
    check_current,
    read_history,
    verify_history,
)
from meta_supervisor.views.attribution import cash_breakdown, compare_decisions, weight_history
from meta_supervisor.views.memo import decision_memo
from meta_supervisor.views.terminal import (
    agent_history_table,
    cash_table,
    diff_view,
    explanation_panel,
    history_table,
    overrides_table,
    policy_fields,
    policy_table,
    policy_toml,
    print_decision,
)

app = typer.Typer(
    name="meta-supervisor",
    help="Decide how much capital each trading agent gets, and say why.\n\n"
    "New here? Run 'meta-supervisor demo', then follow the commands it prints "
    "(walkthrough: docs/CLI.md).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
policy_app = typer.Typer(help="Show, render and validate the policy (TOML).", no_args_is_help=True)
override_app = typer.Typer(
    help="Exclude or cap an agent by hand, with a reason and an expiry.", no_args_is_help=True
)
app.add_typer(policy_app, name="policy")
app.add_typer(override_app, name="override")

console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

EXPLAIN_SCHEMA = "meta-supervisor/explain/1"
HISTORY_SCHEMA = "meta-supervisor/history/1"
DIFF_SCHEMA = "meta-supervisor/diff/1"

StateDir = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="State directory (default: META_SUPERVISOR_STATE_DIR, else "
        "ROOT/meta_supervisor/state).",
    ),
]
Root = Annotated[
    Path | None,
    typer.Option(
        "--root",
        help="Base of the default layout, e.g. the demo's output directory "
        "(default: META_SUPERVISOR_ROOT, else the working directory).",
    ),
]
AsOf = Annotated[
    str | None, typer.Option("--as-of", help="Act as of this ISO-8601 instant (default: now).")
]
Config = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="Policy TOML file (default: META_SUPERVISOR_POLICY, else built-in defaults).",
    ),
]
JsonOut = Annotated[
    bool, typer.Option("--json", metavar="", help="Machine output (JSON; schema in docs/CLI.md).")
]
Wait = Annotated[float, typer.Option("--wait", help="Seconds to wait for another cycle's lock.")]


class Format(StrEnum):
    """Output formats of ``explain``."""

    TABLE = "table"
    JSON = "json"
    MD = "md"


# ---------------------------------------------------------------- helpers


def _fail(message: str, code: int = 2) -> typer.Exit:
    # soft_wrap: one line per error, whatever the width, so that scripts can grep it; a message
    # of several lines (e.g. several policy errors) gives several lines, each with its prefix.
    for line in message.splitlines() or [""]:
        err_console.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _warn(message: str) -> None:
    for line in message.splitlines() or [""]:
        err_console.print(f"[yellow]warning:[/] {escape(line)}", highlight=False, soft_wrap=True)


def _emit_json(value: Any) -> None:
    sys.stdout.write(canonical_json(value, indent=2) + "\n")


def _paths(
    state_dir: Path | None,
    records: Path | None = None,
    telemetry: Path | None = None,
    root: Path | None = None,
) -> Paths:
    """Environment defaults; ``--root`` re-bases the layout; explicit options win."""
    base = Paths.from_env()
    if root is not None:
        base = replace(Paths.under(root), policy=base.policy)
    return Paths(
        records=records or base.records,
        telemetry=telemetry or base.telemetry,
        state_dir=state_dir or base.state_dir,
        policy=base.policy,
        # Files named on the command line are what the operator wants read, not the store.
        ledger=None if records or telemetry else base.ledger,
    )


def _as_of(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_iso(text)
    except ValueError as err:
        raise _fail(f"--as-of: {err}") from None


def _now(text: str | None) -> datetime:
    """``--as-of``, else the clock read once, in whole seconds (all output shows this one)."""
    return _as_of(text) or datetime.now(UTC).replace(microsecond=0)


def _policy(config: Path | None, paths: Paths) -> Policy:
    try:
        return load_policy(config or paths.policy)
    except PolicyError as err:
        raise _fail(str(err)) from None


def _history(paths: Paths) -> list[HistoryEntry]:
    try:
        entries = read_history(paths.history)
    except ValueError as err:
        raise _fail(f"{err}; run 'meta-supervisor verify'", 1) from None
    if not entries:
        raise _fail(
            f"{paths.history}: no decision in the history yet; run 'meta-supervisor allocate' "
            "(or 'meta-supervisor demo') first",
            1,
        )
    return entries


def _by_seq(entries: list[HistoryEntry], seq: int, paths: Paths) -> HistoryEntry:
    if not 1 <= seq <= len(entries):
        raise _fail(f"{paths.history}: no entry {seq} (entries 1 to {len(entries)})")
    return entries[seq - 1]


def _by_time(entries: list[HistoryEntry], at: datetime, paths: Paths) -> HistoryEntry:
    """The decision in force at ``at``: the latest as_of ≤ at (the last committed on ties)."""
    known = [e for e in entries if parse_iso(e.decision["as_of"]) <= at]
    if not known:
        first = min(e.decision["as_of"] for e in entries)
        raise _fail(f"{paths.history}: no decision at or before {iso(at)} (first: {first})")
    return max(known, key=lambda e: (parse_iso(e.decision["as_of"]), e.seq))


def _selector(text: str, entries: list[HistoryEntry], paths: Paths) -> HistoryEntry:
    """A history entry by sequence number (``7``) or by instant (``2026-01-15T00:00Z``)."""
    if text.strip().lstrip("#").isdigit():
        return _by_seq(entries, int(text.strip().lstrip("#")), paths)
    try:
        at = parse_iso(text)
    except ValueError:
        raise _fail(
            f"{text!r} is neither a history sequence number nor an ISO-8601 instant"
        ) from None
    return _by_time(entries, at, paths)


def _latest(paths: Paths) -> tuple[dict[str, Any], HistoryEntry | None]:
    """The latest decision (``decision.json``, else the history's last entry) and its entry."""
    entries: list[HistoryEntry] = []
    try:
        entries = read_history(paths.history)
    except ValueError as err:
        _warn(f"{err}; run 'meta-supervisor verify'")
    if paths.decision.exists():
        try:
            decision = json.loads(paths.decision.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise _fail(
                f"{paths.decision}: line {err.lineno}: not valid JSON: {err.msg}", 1
            ) from None
        digest = fingerprint(decision)
        entry = next((e for e in reversed(entries) if fingerprint(e.decision) == digest), None)
        return decision, entry
    if entries:
        return entries[-1].decision, entries[-1]
    raise _fail(
        f"{paths.decision}: no decision yet; run 'meta-supervisor allocate' "
        "(or 'meta-supervisor demo') first",
        1,
    )


def _check_agent(name: str, decision: dict[str, Any], what: str = "decision") -> None:
    if name in decision["agents"]:
        return
    known = sorted(decision["agents"])
    hint = difflib.get_close_matches(name, known, n=1)
    suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
    raise _fail(
        f"agent {name!r} is not in the {what} of {decision['as_of']}{suggestion} "
        f"(agents: {', '.join(known)})"
    )


def _overrides_line(decision: Decision) -> str | None:
    active = [e["override"] for e in decision.agents.values() if e.get("override")]
    if not active:
        return None
    items = []
    for o in sorted(active, key=lambda o: o["agent"]):
        what = "excluded" if o["action"] == "exclude" else f"capped at {o['cap']:.2%}"
        items.append(f"{o['agent']} {what} until {o['expires_at']} ({o['reason']})")
    return "Operator overrides in force: " + "; ".join(items) + "."


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


# ---------------------------------------------------------------- demo and allocate


@app.command()
def demo(
    out: Annotated[
        Path, typer.Option(help="Where to write the example fleet and its state.")
    ] = Path("demo-out"),
    json_out: JsonOut = False,
) -> None:
    """Generate the example fleet, run two cycles on it (6 h apart) and print the decision.

    The fleet (8 agents, 21 days of records) is written under OUT in the original system's
    layout, so every other command works on it with --root OUT.

    Examples:

      meta-supervisor demo

      meta-supervisor demo --out /tmp/fleet --json
    """
    paths = write_demo_fleet(out)
    decisions = []
    for as_of in DEMO_CYCLES:
        decision, ledger = run_cycle(paths, as_of)
        decisions.append(decision)
    decision = decisions[-1]
    if json_out:
        sys.stdout.write(decision.to_json() + "\n")
        return
    console.print(
        f"Example fleet: {ledger.records.height} records, {ledger.telemetry.height} telemetry runs "
        f"({ledger.refused} refused, {ledger.duplicates} duplicates) in {out}/. "
        f"Ran {len(decisions)} cycles: {', '.join(d.as_of for d in decisions)}."
    )
    print_decision(decision, console)
    line = _overrides_line(decision)
    if line:
        console.print(line, highlight=False)
    root = shlex.quote(str(out))
    as_of_next = iso(DEMO_AS_OF + timedelta(hours=6))
    run = _invocation()
    how = (
        ""
        if run == "meta-supervisor"
        else " (as shown here; 'meta-supervisor ...' once .venv is activated)"
    )
    console.print(
        f"\nState written to {paths.state_dir}/. Next, try{how}:\n"
        f"  {run} explain cygnus --root {root}      # every factor behind one weight\n"
        f"  {run} history --root {root}             # weights over time\n"
        f"  {run} diff --root {root}                # what changed, and why\n"
        f"  {run} explain --format md --root {root} > memo.md   # the memo for LPs\n"
        f"  {run} override add fornax --cap 0.02 --reason 'sim under review' "
        f"--for 24h --as-of {iso(DEMO_AS_OF)} --root {root}\n"
        f"  {run} allocate --as-of {as_of_next} --root {root}   # one more cycle\n"
        f"  {run} verify --root {root}              # check the history's hash chain",
        highlight=False,
        soft_wrap=True,
    )


def _invocation() -> str:
    """How to run this tool from here: the command on PATH, ``./dev cli`` in a checkout, or
    ``python -m meta_supervisor`` with this interpreter (e.g. after ``./dev demo``)."""
    if shutil.which("meta-supervisor"):
        return "meta-supervisor"
    if Path("dev").is_file() and Path("pyproject.toml").is_file():
        return "./dev cli"
    return f"{shlex.quote(sys.executable)} -m meta_supervisor"


def _engine_line(run: Any) -> str:
    """How the statistics were obtained: the saved state advanced, or rebuilt and why."""
    took = sum(run.seconds.get(k, 0.0) for k in ("load", "advance", "frames"))
    if run.mode == "warm":
        return (
            f"statistics: saved state advanced ({run.new_segments} new segment(s), "
            f"{run.late_records} late record(s)) in {took * 1e3:.0f} ms"
        )
    return (
        f"statistics: rebuilt from the ledger in {run.chunks} chunk(s), {took:.1f} s ({run.reason})"
    )


def _warn_stale(ledger: Any, as_of: datetime, policy: Policy) -> None:
    """Say so when the newest record is older than the stats window (e.g. the demo, run today)."""
    newest = ledger.newest()
    if newest is None:
        _warn("no records in the ledger: every agent is gated, everything in cash")
        return
    if newest < as_of - timedelta(hours=policy.lookback_hours):
        _warn(
            f"the newest record matured at {iso(newest)}, more than "
            f"{policy.lookback_hours:g} h before --as-of {iso(as_of)}: agents have no evidence "
            "in the window (for the demo fleet pass --as-of near 2026-01-15T00:00:00Z)"
        )


#: Refused rows quoted in the warning after ``allocate``; the command it prints lists them all.
REFUSED_SHOWN = 3


def _refused_message(quarantine: Any, paths: Paths) -> str:
    """The refused rows: count per file, the first few with line and reason, a command for all."""
    counts: dict[str, int] = {}
    for source in quarantine["source"].to_list():
        counts[source or "?"] = counts.get(source or "?", 0) + 1
    per_file = ", ".join(f"{n} in {source}" for source, n in counts.items())
    lines = [f"{quarantine.height} input rows refused ({per_file}), left out of this decision:"]
    for row in quarantine.head(REFUSED_SHOWN).iter_rows(named=True):
        where = "" if row["line"] is None else f" line {row['line']}"
        lines.append(f"  {row['source']}{where}: {row['field']}: {row['reason']}")
    if quarantine.height > REFUSED_SHOWN:
        lines.append(f"  ... and {quarantine.height - REFUSED_SHOWN} more")
    if paths.ledger is not None and LedgerStore(paths.ledger).exists():
        command = f"meta-supervisor quarantine --ledger {shlex.quote(str(paths.ledger))}"
    else:
        files = " ".join(shlex.quote(str(s)) for s in counts if s != "?")
        command = f"meta-supervisor ingest --dry-run {files}"
    lines.append(f"  all of them: {command}")
    return "\n".join(lines)


@app.command()
def allocate(
    as_of: AsOf = None,
    config: Config = None,
    state_dir: StateDir = None,
    root: Root = None,
    records: Annotated[
        Path | None,
        typer.Option(help="Reconciled records (JSONL/CSV/Parquet), read instead of the store."),
    ] = None,
    telemetry: Annotated[
        Path | None,
        typer.Option(help="Telemetry events (JSONL/CSV/Parquet), read instead of the store."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", metavar="", help="Decide but write nothing.")
    ] = False,
    wait: Wait = 0.0,
    json_out: JsonOut = False,
) -> None:
    """Run one cycle: read the ledger, decide, record the decision, print the table.

    The decision is appended to the hash-chained history (the commit point), then written to
    decision.json and the seed's allocation.json. Active operator overrides apply.

    Examples:

      meta-supervisor allocate --root demo-out --as-of 2026-01-15T06:00:00Z

      meta-supervisor allocate --config policy.toml --json > decision.json

      meta-supervisor allocate --root demo-out --as-of 2026-01-15T06:00:00Z --dry-run
    """
    for option, named in (("--records", records), ("--telemetry", telemetry)):
        if named is not None and not named.exists():
            # A typo here would otherwise decide on no evidence and put the fleet in cash.
            raise _fail(f"{option}: {named}: no such file")
    paths = _paths(state_dir, records, telemetry, root)
    policy = _policy(config, paths)
    moment = _now(as_of)
    try:
        decision, ledger = run_cycle(paths, moment, policy, write=not dry_run, lock_timeout_s=wait)
    except LockBusy as err:
        raise _fail(str(err), code=3) from None
    except OutOfOrder as err:
        raise _fail(str(err)) from None
    except overrides_file.OverrideError as err:
        raise _fail(str(err)) from None
    except ValueError as err:
        # the only other ValueError here is an unreadable history line (state corruption)
        raise _fail(f"{err}; run 'meta-supervisor verify'", 1) from None
    _warn_stale(ledger, moment, policy)
    if ledger.refused:
        _warn(_refused_message(ledger.quarantine, paths))
    if json_out:
        sys.stdout.write(decision.to_json() + "\n")
        return
    print_decision(decision, console)
    line = _overrides_line(decision)
    if line:
        console.print(line, highlight=False)
    if ledger.engine is not None:
        console.print(_engine_line(ledger.engine), style="dim", highlight=False)
    if dry_run:
        console.print("[yellow]dry run: nothing written[/]")


# ---------------------------------------------------------------- explain


def _explain_json(
    decision: dict[str, Any], names: list[str], entry: HistoryEntry | None
) -> dict[str, Any]:
    return {
        "schema": EXPLAIN_SCHEMA,
        "as_of": decision["as_of"],
        "profile": decision["profile"],
        "seq": None if entry is None else entry.seq,
        "hash": None if entry is None else entry.hash,
        "digest": fingerprint(decision),
        "gross": decision["gross"],
        "cash": decision["cash"],
        "cash_breakdown": cash_breakdown(decision),
        "portfolio": decision["portfolio"],
        "overrides": sorted(
            (e["override"] for e in decision["agents"].values() if e.get("override")),
            key=lambda o: o["agent"],
        ),
        "provenance": decision["provenance"],
        "agents": {n: decision["agents"][n] for n in names},
    }


@app.command()
def explain(
    agent: Annotated[str | None, typer.Argument(help="Agent to explain (default: all).")] = None,
    at: Annotated[
        str | None,
        typer.Option("--at", help="The decision in force at this ISO-8601 instant (history)."),
    ] = None,
    seq: Annotated[
        int | None, typer.Option("--seq", help="The decision with this history sequence number.")
    ] = None,
    output: Annotated[
        Format, typer.Option("--format", help="table (terminal), json, or md (memo for LPs).")
    ] = Format.TABLE,
    state_dir: StateDir = None,
    root: Root = None,
    json_out: JsonOut = False,
) -> None:
    """Show every factor behind a decision: gates, factors, the weight after every step.

    Default: the latest decision. --at picks the decision in force at an instant (the latest
    with as_of at or before it), --seq a history entry. --format md writes a Markdown memo
    readable without the tool.

    Examples:

      meta-supervisor explain cygnus --root demo-out

      meta-supervisor explain --seq 1 --root demo-out

      meta-supervisor explain --format md --root demo-out > memo.md

      meta-supervisor explain hydra --at 2026-01-14T20:00:00Z --json --root demo-out
    """
    paths = _paths(state_dir, root=root)
    if at is not None and seq is not None:
        raise _fail("give --at or --seq, not both")
    entry: HistoryEntry | None
    if at is not None or seq is not None:
        entries = _history(paths)
        moment = _as_of(at)
        entry = (
            _by_seq(entries, seq, paths) if seq is not None else _by_time(entries, moment, paths)
        )  # type: ignore[arg-type]
        decision = entry.decision
    else:
        decision, entry = _latest(paths)
    if agent is not None:
        _check_agent(agent, decision)
    names = (
        [agent]
        if agent
        else sorted(decision["agents"], key=lambda n: (-decision["agents"][n]["weight"], n))
    )
    fmt = Format.JSON if json_out else output
    if fmt is Format.JSON:
        _emit_json(_explain_json(decision, names, entry))
        return
    if fmt is Format.MD:
        sys.stdout.write(
            decision_memo(
                decision,
                agents=names,
                seq=None if entry is None else entry.seq,
                entry_hash=None if entry is None else entry.hash,
                version=__version__,
            )
        )
        return
    view = Decision.from_dict(decision)
    where = f" (history entry #{entry.seq})" if entry is not None else ""
    console.print(
        f"[bold]Decision as of {view.as_of}[/]{where}: deployed {view.gross:.2%}, "
        f"cash {view.cash:.2%}: {view.portfolio['reason']}.",
        highlight=False,
    )
    if agent is None:
        console.print(cash_table(view))
    line = _overrides_line(view)
    if line:
        console.print(line, highlight=False)
    for name in names:
        console.print(explanation_panel(view, name))


# ---------------------------------------------------------------- history and diff


@app.command()
def history(
    agent: Annotated[
        str | None, typer.Option("--agent", help="One agent: its weight and factors over time.")
    ] = None,
    last: Annotated[
        int, typer.Option("--last", min=0, help="Show the last N decisions (0 = all).")
    ] = 20,
    state_dir: StateDir = None,
    root: Root = None,
    json_out: JsonOut = False,
) -> None:
    """Weights over time, from the hash-chained history.

    Examples:

      meta-supervisor history --root demo-out

      meta-supervisor history --agent borealis --last 48 --root demo-out

      meta-supervisor history --json --root demo-out | jq '.entries[-1].weights'
    """
    paths = _paths(state_dir, root=root)
    entries = _history(paths)
    if agent is not None and not any(agent in e.decision["agents"] for e in entries):
        _check_agent(agent, entries[-1].decision, "history, e.g. the decision")
    shown = entries[-last:] if last else entries
    rows = weight_history([(e.seq, e.hash, e.decision) for e in shown], agent)
    if json_out:
        _emit_json({"schema": HISTORY_SCHEMA, "agent": agent, "entries": rows})
        return
    if agent is None:
        console.print(history_table(rows))
    else:
        console.print(agent_history_table(agent, rows))
    if len(shown) < len(entries):
        console.print(f"(last {len(shown)} of {len(entries)} decisions; --last 0 shows all)")


def _label(entry: HistoryEntry) -> str:
    return f"#{entry.seq} as of {entry.decision['as_of']}"


@app.command()
def diff(
    old: Annotated[
        str | None,
        typer.Argument(
            help="Earlier decision: history seq (e.g. 3) or ISO instant "
            "(default: the one before NEW)."
        ),
    ] = None,
    new: Annotated[
        str | None,
        typer.Argument(help="Later decision: seq or ISO instant (default: the latest)."),
    ] = None,
    agent: Annotated[str | None, typer.Option("--agent", help="Only this agent.")] = None,
    state_dir: StateDir = None,
    root: Root = None,
    json_out: JsonOut = False,
) -> None:
    """What changed between two decisions, per agent: old -> new weight and what moved it.

    For each agent, the gates that flipped, overrides that started or ended, every factor that
    moved (with its effect on the pre-cap target, e.g. x0.93), the rest of the fleet
    (Σ quality), and the cap / gross cap / stability steps.

    Examples:

      meta-supervisor diff --root demo-out

      meta-supervisor diff 1 2 --agent borealis --root demo-out

      meta-supervisor diff 2026-01-14T18:00:00Z 2026-01-15T00:00:00Z --json --root demo-out
    """
    paths = _paths(state_dir, root=root)
    entries = _history(paths)
    newer = _selector(new, entries, paths) if new else entries[-1]
    if old:
        older = _selector(old, entries, paths)
    else:
        if newer.seq < 2:
            raise _fail(f"{paths.history}: entry #{newer.seq} has no decision before it", 1)
        older = entries[newer.seq - 2]
    result = compare_decisions(older.decision, newer.decision)
    if agent is not None:
        if agent not in result["agents"]:
            _check_agent(agent, newer.decision)
        result["agents"] = {agent: result["agents"][agent]}
    if json_out:
        _emit_json(
            {
                "schema": DIFF_SCHEMA,
                "from": {"seq": older.seq, "as_of": older.decision["as_of"], "hash": older.hash},
                "to": {"seq": newer.seq, "as_of": newer.decision["as_of"], "hash": newer.hash},
            }
            | result
        )
        return
    console.print(diff_view(result, _label(older), _label(newer)))


# ---------------------------------------------------------------- verify


@app.command()
def verify(state_dir: StateDir = None, root: Root = None, json_out: JsonOut = False) -> None:
    """Check the hash chain of the decision history; exit 1 naming the first bad entry.

    Also holds decision.json against the history's last entry: a chain cut short is still a
    valid chain, and the current decision shows it.

    Examples:

      meta-supervisor verify --root demo-out

      meta-supervisor verify --json --root demo-out
    """
    paths = _paths(state_dir, root=root)
    ok, message = verify_history(paths.history)
    if ok:
        # the chain cannot show its newest entries cut off; decision.json can
        ok, current = check_current(paths.history, paths.decision)
        message = f"{message}; {current}" if ok else current
    if json_out:
        _emit_json({"ok": ok, "path": str(paths.history), "message": message})
        if not ok:
            raise typer.Exit(1)
        return
    if ok:
        console.print(f"[green]ok[/]: {paths.history}: {message}", highlight=False)
        return
    raise _fail(f"{paths.history}: {message}", 1)


# ---------------------------------------------------------------- policy


@policy_app.command("show")
def policy_show(
    config: Config = None,
    root: Root = None,
    toml: Annotated[
        bool,
        typer.Option("--toml", metavar="", help="Print a complete, commented policy file instead."),
    ] = False,
    json_out: JsonOut = False,
) -> None:
    """Every policy field: value, default, allowed range and description.

    Examples:

      meta-supervisor policy show

      meta-supervisor policy show --toml > policy.toml

      meta-supervisor policy show --config policy.toml --json
    """
    policy = _policy(config, _paths(None, root=root))
    if toml:
        sys.stdout.write(policy_toml(policy))
    elif json_out:
        _emit_json(
            {
                "schema": "meta-supervisor/policy/1",
                "fingerprint": policy.fingerprint(),
                "fields": policy_fields(policy),
            }
        )
    else:
        console.print(policy_table(policy))
        console.print(f"fingerprint {policy.fingerprint()}", highlight=False)


@policy_app.command("validate")
def policy_validate(
    file: Annotated[Path, typer.Argument(help="Policy TOML file to check.")],
    json_out: JsonOut = False,
) -> None:
    """Check a policy file; exit 2 naming the file and key at fault (with a did-you-mean).

    Examples:

      meta-supervisor policy validate policy.toml
    """
    try:
        policy = load_policy(file)
    except PolicyError as err:
        if json_out:
            _emit_json({"ok": False, "path": str(file), "errors": str(err).splitlines()})
        raise _fail(str(err)) from None
    changed = [f["name"] for f in policy_fields(policy) if f["value"] != f["default"]]
    if json_out:
        _emit_json(
            {"ok": True, "path": str(file), "changed": changed, "fingerprint": policy.fingerprint()}
        )
        return
    console.print(
        f"[green]ok[/]: {file}: valid; {len(changed)} keys differ from the defaults"
        f"{': ' + ', '.join(changed) if changed else ''}; fingerprint {policy.fingerprint()}",
        highlight=False,
    )


# ---------------------------------------------------------------- overrides


@override_app.command("add")
def override_add(
    agent: Annotated[str, typer.Argument(help="Agent to exclude or cap.")],
    exclude: Annotated[
        bool, typer.Option("--exclude", metavar="", help="Give the agent weight 0.")
    ] = False,
    cap: Annotated[
        float | None, typer.Option("--cap", help="Cap the agent's weight (fraction, 0 to 1).")
    ] = None,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why (required; shown in every explanation).")
    ] = None,
    expires: Annotated[
        str | None, typer.Option("--expires", help="When it ends (ISO-8601 instant).")
    ] = None,
    duration: Annotated[
        str | None, typer.Option("--for", help="How long from --as-of: 90m, 24h, 3d, 1w.")
    ] = None,
    by: Annotated[str, typer.Option("--by", help="Who decided (recorded).")] = "operator",
    allow_unknown: Annotated[
        bool,
        typer.Option(
            "--allow-unknown", metavar="", help="Accept an agent not in the latest decision."
        ),
    ] = False,
    as_of: AsOf = None,
    state_dir: StateDir = None,
    root: Root = None,
    wait: Wait = 0.0,
    json_out: JsonOut = False,
) -> None:
    """Exclude or cap an agent until an expiry; then it returns to evidence-based allocation.

    One override per agent: adding replaces the agent's previous one. The expiry must be
    after --as-of (default: now). Takes effect at the next 'allocate'.

    Examples:

      meta-supervisor override add hydra --exclude --reason "venue outage" --for 24h
      --as-of 2026-01-15T00:00:00Z --root demo-out

      meta-supervisor override add fornax --cap 0.02 --reason "sim review"
      --expires 2026-02-01T00:00:00Z --root demo-out
    """
    paths = _paths(state_dir, root=root)
    if exclude == (cap is not None):
        raise _fail("give exactly one of --exclude or --cap X")
    if (expires is None) == (duration is None):
        raise _fail("give exactly one of --expires ISO or --for DURATION")
    if not reason or not reason.strip():
        raise _fail("--reason is required: say why (it is shown in every explanation)")
    now = _now(as_of)
    try:
        if expires is not None:
            try:
                expires_at = parse_iso(expires)
            except ValueError as err:
                raise overrides_file.OverrideError(f"--expires: {err}") from None
        else:
            expires_at = now + overrides_file.parse_duration(duration or "")
        override = overrides_file.make_override(
            agent,
            action="exclude" if exclude else "cap",
            reason=reason,
            expires_at=expires_at,
            now=now,
            cap=cap,
            created_by=by,
        )
        if not allow_unknown and paths.decision.exists():
            latest, _ = _latest(paths)
            if agent not in latest["agents"]:
                hint = difflib.get_close_matches(agent, sorted(latest["agents"]), n=1)
                suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
                raise overrides_file.OverrideError(
                    f"agent {agent!r} is not in the latest decision{suggestion} "
                    "(pass --allow-unknown for an agent not seen yet)"
                )
        with StateLock(paths.lock, wait):
            replaced = overrides_file.add_override(paths.overrides, override)
    except overrides_file.OverrideError as err:
        raise _fail(str(err)) from None
    except LockBusy as err:
        raise _fail(str(err), 3) from None
    if json_out:
        _emit_json({"added": override.to_dict(), "replaced": replaced and replaced.to_dict()})
        return
    what = "excluded" if exclude else f"capped at {override.cap:.2%}"
    console.print(
        f"{agent} {what} until {iso(override.expires_at)}: {override.reason} "
        f"(in {paths.overrides}; applies from the next 'allocate')",
        highlight=False,
    )
    if replaced is not None:
        console.print(f"replaced the previous override ({replaced.action}: {replaced.reason})")


def _latest_quietly(paths: Paths) -> dict[str, Any] | None:
    """The latest decision if one can be read, else None (no message: it is optional here)."""
    try:
        if paths.decision.exists():
            return json.loads(paths.decision.read_text(encoding="utf-8"))
        entries = read_history(paths.history)
    except (ValueError, OSError):
        return None
    return entries[-1].decision if entries else None


@override_app.command("list")
def override_list(
    as_of: AsOf = None,
    state_dir: StateDir = None,
    root: Root = None,
    json_out: JsonOut = False,
) -> None:
    """List overrides: active or expired at --as-of (default: now), and whether the latest
    decision applied each one (an override added since takes effect at the next 'allocate').

    Examples:

      meta-supervisor override list --root demo-out

      meta-supervisor override list --root demo-out --as-of 2026-01-15T06:00:00Z
    """
    paths = _paths(state_dir, root=root)
    now = _now(as_of)
    try:
        items = overrides_file.load_overrides(paths.overrides)
    except overrides_file.OverrideError as err:
        raise _fail(str(err)) from None
    latest = _latest_quietly(paths)
    applied = {} if latest is None else _applied_overrides(latest)
    if json_out:
        _emit_json(
            {
                "as_of": iso(now),
                "latest_decision_as_of": None if latest is None else latest["as_of"],
                "overrides": [
                    o.to_dict()
                    | {
                        "active": o.active(now),
                        "in_latest_decision": None
                        if latest is None
                        else applied.get(o.agent) == o.to_dict(),
                    }
                    for o in items
                ],
            }
        )
        return
    if not items:
        console.print(f"no overrides in {paths.overrides}", highlight=False)
        return
    console.print(
        overrides_table(
            items,
            now,
            latest_as_of=None if latest is None else latest["as_of"],
            applied=applied,
        )
    )


def _applied_overrides(decision: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The overrides a decision applied, by agent (as recorded in its explanations)."""
    return {
        name: e["override"]
        for name, e in decision.get("agents", {}).items()
        if isinstance(e, dict) and e.get("override")
    }


@override_app.command("remove")
def override_remove(
    agent: Annotated[str, typer.Argument(help="Agent whose override to remove.")],
    state_dir: StateDir = None,
    root: Root = None,
    wait: Wait = 0.0,
) -> None:
    """Remove an agent's override now (it applies until the next 'allocate').

    Examples:

      meta-supervisor override remove hydra --root demo-out
    """
    paths = _paths(state_dir, root=root)
    try:
        with StateLock(paths.lock, wait):
            removed = overrides_file.remove_override(paths.overrides, agent)
    except overrides_file.OverrideError as err:
        raise _fail(str(err)) from None
    except LockBusy as err:
        raise _fail(str(err), 3) from None
    console.print(f"removed the {removed.action} override on {agent} ({removed.reason})")


# ---------------------------------------------------------------- other modules' commands
# Other modules register their commands below, one or two lines each (keep this at the end).
from meta_supervisor.cli.backtest import backtest  # noqa: E402
from meta_supervisor.cli.ingest import ingest, quarantine  # noqa: E402
from meta_supervisor.cli.serve import serve  # noqa: E402

app.command()(backtest)
app.command()(ingest)
app.command()(quarantine)
app.command()(serve)
