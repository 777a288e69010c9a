"""``meta-supervisor allocate``: one cycle, recorded, with the table and its warnings."""

from __future__ import annotations

import difflib
import shlex
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from meta_supervisor.allocate.decision import iso
from meta_supervisor.cli.common import (
    AsOf,
    Config,
    JsonOut,
    LedgerOption,
    Root,
    StateDir,
    Wait,
    as_of_or_now,
    console,
    fail,
    load_policy_for,
    overrides_line,
    paths_for,
    warn,
)
from meta_supervisor.config import Paths
from meta_supervisor.cycle.run import run_cycle, supersede_latest
from meta_supervisor.errors import MetaSupervisorError
from meta_supervisor.ledger.store import LedgerStore
from meta_supervisor.policy.model import Policy, Profile
from meta_supervisor.state.overrides import active_overrides, load_overrides
from meta_supervisor.views.safe import markup
from meta_supervisor.views.terminal import (
    print_decision,
)


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
        warn("no records in the ledger: every agent is gated, everything in cash")
        return
    if newest < as_of - timedelta(hours=policy.lookback_hours):
        warn(
            f"the newest record matured at {iso(newest)}, more than "
            f"{policy.lookback_hours:g} h before --as-of {iso(as_of)}: agents have no evidence "
            "in the window (for the demo fleet pass --as-of near 2026-01-15T00:00:00Z)"
        )


def _warn_unmatched_overrides(paths: Paths, agents: dict[str, Any], as_of: datetime) -> None:
    """An active override naming no agent of the decision did nothing: say so (a typo in a
    name would otherwise leave the agent meant uncapped, silently)."""
    for override in active_overrides(load_overrides(paths.overrides), as_of):
        if override.agent in agents:
            continue
        close = difflib.get_close_matches(override.agent, list(agents), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        warn(
            f"{paths.overrides}: the {override.action} override for {override.agent!r} names no "
            f"agent of this decision and did nothing{hint}"
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
    ledger_dir: LedgerOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", metavar="", help="Decide but write nothing.")
    ] = False,
    allow_future: Annotated[
        bool,
        typer.Option(
            "--allow-future",
            metavar="",
            help="Record an --as-of more than an hour after the clock (refused otherwise).",
        ),
    ] = False,
    allow_empty: Annotated[
        bool,
        typer.Option(
            "--allow-empty",
            metavar="",
            help="Record a cycle with no records at all (all cash; refused otherwise).",
        ),
    ] = False,
    wait: Wait = 0.0,
    json_out: JsonOut = False,
) -> None:
    """Run one cycle: read the ledger, decide, record the decision, print the table.

    The decision is appended to the hash-chained history (the commit point), then written to
    decision.json and the seed's allocation.json. Active operator overrides apply.

    Refused with exit 2 and nothing written: no records found (the paths looked for are
    named; --allow-empty records an all-cash cycle on purpose), an --as-of more than an hour
    after the clock (--allow-future), an --as-of before the latest recorded one. Refused with
    exit 1: state files that do not verify (see 'verify').

    Examples:

      meta-supervisor allocate --root demo-out --as-of 2026-01-15T06:00:00Z

      meta-supervisor allocate --config policy.toml --json > decision.json

      meta-supervisor allocate --root demo-out --as-of 2026-01-15T06:00:00Z --dry-run
    """
    for option, named in (("--records", records), ("--telemetry", telemetry)):
        if named is not None and not named.exists():
            # A typo here would otherwise decide on no evidence and put the fleet in cash.
            raise fail(f"{option}: {named}: no such file")
    if ledger_dir is not None and (records is not None or telemetry is not None):
        raise fail("give --ledger or --records/--telemetry, not both")
    if ledger_dir is not None and not LedgerStore(ledger_dir).exists():
        # Nothing found is loud: a mistyped store must not decide on no evidence.
        raise fail(f"--ledger: {ledger_dir}: no ledger store there (run 'meta-supervisor ingest')")
    paths = paths_for(state_dir, records, telemetry, root, ledger_dir)
    policy = load_policy_for(config, paths)
    moment = as_of_or_now(as_of)
    try:
        decision, ledger = run_cycle(
            paths,
            moment,
            policy,
            write=not dry_run,
            lock_timeout_s=wait,
            allow_future=allow_future,
            allow_empty=allow_empty,
        )
    except MetaSupervisorError:
        raise
    except ValueError as err:
        # the only other ValueError here is an unreadable history line (state corruption)
        raise fail(f"{err}; run 'meta-supervisor verify'", 1) from None
    _warn_stale(ledger, moment, policy)
    _warn_unmatched_overrides(paths, decision.agents, moment)
    if ledger.refused:
        warn(_refused_message(ledger.quarantine, paths))
    if json_out:
        sys.stdout.write(decision.to_json() + "\n")
        return
    print_decision(decision, console)
    line = overrides_line(decision)
    if line:
        console.print(line, highlight=False)
    if ledger.engine is not None:
        console.print(_engine_line(ledger.engine), style="dim", highlight=False)
        if ledger.engine.learned is not None:
            what = "learned rule" if policy.profile is Profile.SELECT else "learned strength"
            console.print(ledger.engine.learned.line(what), style="dim", highlight=False)
    if dry_run:
        console.print("[yellow]dry run: nothing written[/]")


def supersede(
    reason: Annotated[
        str, typer.Option("--reason", help="Why the latest decision is wrong (recorded).")
    ],
    by: Annotated[str, typer.Option("--by", help="Who supersedes it (recorded).")] = "operator",
    state_dir: StateDir = None,
    root: Root = None,
    wait: Wait = 0.0,
    json_out: JsonOut = False,
) -> None:
    """Supersede a wrong latest decision (e.g. an --as-of typo), in the open.

    Nothing is deleted: a copy of the decision before it is appended to the history, recording
    which entry it supersedes, why, by whom and when. Cycles after the restored instant are
    allowed again and smooth against the restored weights; 'verify' still passes.

    Examples:

      meta-supervisor supersede --reason "as_of typo: 2027 for 2026" --by alice --root demo-out
    """
    paths = paths_for(state_dir, root=root)
    decision, wrong = supersede_latest(
        paths, reason, by, datetime.now(UTC).replace(microsecond=0), lock_timeout_s=wait
    )
    if json_out:
        sys.stdout.write(decision.to_json() + "\n")
        return
    console.print(
        markup(
            f"entry {wrong.seq} (as_of {wrong.decision.get('as_of')}) superseded: the decision "
            f"of {decision.as_of} is in force again ({reason.strip()}; by {by})"
        ),
        highlight=False,
    )
