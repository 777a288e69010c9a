"""``meta-supervisor explain | history | diff | verify``: reading recorded decisions."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from meta_supervisor import __version__
from meta_supervisor.allocate.decision import Decision, fingerprint, parse_iso
from meta_supervisor.cli.common import (
    DIFF_SCHEMA,
    EXPLAIN_SCHEMA,
    HISTORY_SCHEMA,
    VERIFY_SCHEMA,
    Format,
    JsonOut,
    Root,
    StateDir,
    check_agent,
    console,
    emit_json,
    entry_at,
    entry_by_seq,
    fail,
    history_entries,
    latest_decision,
    overrides_line,
    parse_instant,
    paths_for,
    select_entry,
    warn,
)
from meta_supervisor.config import Paths
from meta_supervisor.cycle.run import load_ledger
from meta_supervisor.errors import MetaSupervisorError
from meta_supervisor.state import explanations
from meta_supervisor.state.files import (
    HistoryEntry,
    check_current,
    verify_history,
)
from meta_supervisor.views.attribution import cash_breakdown, compare_decisions, weight_history
from meta_supervisor.views.memo import decision_memo
from meta_supervisor.views.performance import realised_between
from meta_supervisor.views.safe import markup
from meta_supervisor.views.terminal import (
    agent_history_table,
    cash_table,
    diff_view,
    explanation_panel,
    history_table,
)


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


def _previous_decision(paths: Paths, entry: HistoryEntry | None) -> dict[str, Any] | None:
    """The decision recorded before ``entry`` in the history (None for the first)."""
    if entry is None or entry.seq < 2:
        return None
    return history_entries(paths)[entry.seq - 2].decision


def _realised(
    paths: Paths, previous: dict[str, Any], decision: dict[str, Any]
) -> dict[str, Any] | None:
    """What the previous decision's agents realised until this one (None, with a warning,
    when the ledger cannot be read)."""
    start, end = parse_iso(previous["as_of"]), parse_iso(decision["as_of"])
    horizon = int((decision.get("policy") or {}).get("horizon_hours", 24))
    hours = (end - start).total_seconds() / 3600
    try:
        ledger = load_ledger(paths, end, hours)
    except (MetaSupervisorError, OSError) as err:
        warn(f"realised performance left out of the memo: {err}")
        return None
    if ledger.records.height == 0:
        # Nothing found is loud: an empty ledger is not a book that realised 0 bps.
        warn("realised performance left out of the memo: the ledger has no records")
        return None
    return realised_between(ledger.records, previous["weights"], start, end, horizon)


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
    paths = paths_for(state_dir, root=root)
    if at is not None and seq is not None:
        raise fail("give --at or --seq, not both")
    entry: HistoryEntry | None
    if at is not None or seq is not None:
        entries = history_entries(paths)
        if seq is not None:
            entry = entry_by_seq(entries, seq, paths)
        else:
            entry = entry_at(entries, parse_instant(at or "", "--at"), paths)
        decision = entry.decision
    else:
        decision, entry = latest_decision(paths)
    if agent is not None:
        check_agent(agent, decision)
    names = (
        [agent]
        if agent
        else sorted(decision["agents"], key=lambda n: (-decision["agents"][n]["weight"], n))
    )
    fmt = Format.JSON if json_out else output
    if fmt is Format.JSON:
        emit_json(_explain_json(decision, names, entry))
        return
    if fmt is Format.MD:
        previous = _previous_decision(paths, entry)
        sys.stdout.write(
            decision_memo(
                decision,
                agents=names,
                seq=None if entry is None else entry.seq,
                entry_hash=None if entry is None else entry.hash,
                version=__version__,
                previous=previous,
                realised=None if previous is None else _realised(paths, previous, decision),
            )
        )
        return
    view = Decision.from_dict(decision)
    where = f" (history entry #{entry.seq})" if entry is not None else ""
    console.print(
        f"[bold]Decision as of {view.as_of}[/]{where}: deployed {view.gross:.2%}, "
        f"cash {view.cash:.2%}: {markup(view.portfolio['reason'])}.",
        highlight=False,
    )
    if agent is None:
        console.print(cash_table(view))
    line = overrides_line(view)
    if line:
        console.print(line, highlight=False)
    for name in names:
        console.print(explanation_panel(view, name))


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
    paths = paths_for(state_dir, root=root)
    entries = history_entries(paths)
    shown = entries[-last:] if last else entries

    def weights_of(e: HistoryEntry) -> dict[str, Any]:
        """The entry's record with each agent's weight, no explanation built (an entry kept
        as its inputs would be decided again to be read)."""
        named = explanations.agent_weights(e.base or paths.state_dir, e.record)
        return {**e.record, "agents": {n: {"weight": w} for n, w in named.items()}}

    weighed = {e.seq: weights_of(e) for e in shown}
    if agent is not None and not any(
        agent in (weighed[e.seq] if e.seq in weighed else weights_of(e))["agents"]
        for e in [*shown, *entries[: len(entries) - len(shown)]]
    ):
        check_agent(agent, entries[-1].decision, "history, e.g. the decision")
    rows = weight_history(
        [(e.seq, e.hash, weighed[e.seq] if agent is None else e.decision) for e in shown], agent
    )
    if json_out:
        emit_json({"schema": HISTORY_SCHEMA, "agent": agent, "entries": rows})
        return
    if agent is None:
        console.print(history_table(rows, console.width))
    else:
        console.print(agent_history_table(agent, rows))
    if len(shown) < len(entries):
        console.print(f"(last {len(shown)} of {len(entries)} decisions; --last 0 shows all)")


def _label(entry: HistoryEntry) -> str:
    return f"#{entry.seq} as of {entry.decision['as_of']}"


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
    paths = paths_for(state_dir, root=root)
    entries = history_entries(paths)
    newer = select_entry(new, entries, paths) if new else entries[-1]
    if old:
        older = select_entry(old, entries, paths)
    else:
        if newer.seq < 2:
            raise fail(f"{paths.history}: entry #{newer.seq} has no decision before it", 1)
        older = entries[newer.seq - 2]
    result = compare_decisions(older.decision, newer.decision)
    if agent is not None:
        if agent not in result["agents"]:
            check_agent(agent, newer.decision)
        result["agents"] = {agent: result["agents"][agent]}
    if json_out:
        emit_json(
            {
                "schema": DIFF_SCHEMA,
                "from": {"seq": older.seq, "as_of": older.record["as_of"], "hash": older.hash},
                "to": {"seq": newer.seq, "as_of": newer.record["as_of"], "hash": newer.hash},
            }
            | result
        )
        return
    console.print(diff_view(result, _label(older), _label(newer)))


def verify(state_dir: StateDir = None, root: Root = None, json_out: JsonOut = False) -> None:
    """Check the hash chain of the decision history; exit 1 naming the first bad entry.

    Also holds decision.json and allocation.json against the history's last entry: a chain
    cut short is still a valid chain, and the current files show it. No history at all is a
    problem (exit 1), not an empty success.

    Examples:

      meta-supervisor verify --root demo-out

      meta-supervisor verify --json --root demo-out
    """
    paths = paths_for(state_dir, root=root)
    if not paths.history.exists():
        # nothing to verify is not "ok": a mistyped --root would otherwise pass
        raise fail(
            f"{paths.history}: no history (looked for it under --state-dir/--root "
            f"{paths.state_dir}); nothing to verify",
            1,
        )
    ok, message = verify_history(paths.history)
    if ok:
        # the chain cannot show its newest entries cut off; decision.json and allocation.json can
        ok, current = check_current(paths.history, paths.decision, paths.allocation)
        message = f"{message}; {current}" if ok else current
    if json_out:
        emit_json(
            {"schema": VERIFY_SCHEMA, "ok": ok, "path": str(paths.history), "message": message}
        )
        if not ok:
            raise typer.Exit(1)
        return
    if ok:
        console.print(f"[green]ok[/]: {paths.history}: {message}", highlight=False)
        return
    raise fail(f"{paths.history}: {message}", 1)
