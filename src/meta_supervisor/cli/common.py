"""What every command shares: the consoles, the common options, errors and the history.

Errors: a command raises a :class:`~meta_supervisor.errors.MetaSupervisorError` (its class
carries the exit code) and the one handler in :mod:`meta_supervisor.cli.main` prints it.
"""

from __future__ import annotations

import difflib
import json
import os
import shlex
import shutil
import sys
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from meta_supervisor.allocate.decision import Decision, canonical_json, fingerprint, iso, parse_iso
from meta_supervisor.config import Paths
from meta_supervisor.cycle.run import superseded_seqs
from meta_supervisor.errors import BadInput, Busy, MetaSupervisorError, ProblemFound
from meta_supervisor.policy.model import Policy, PolicyError, load_policy
from meta_supervisor.state import explanations
from meta_supervisor.state.explanations import ExplanationsError
from meta_supervisor.state.files import HistoryEntry, read_history
from meta_supervisor.views.safe import markup

ERROR_SCHEMA = "meta-supervisor/error/1"


def output_width(is_tty: bool, environ: Mapping[str, str] | None = None) -> int | None:
    """The width a console renders at: the terminal's (``None``: rich asks it, and honours
    ``COLUMNS``) on a terminal; piped, ``COLUMNS`` when set to a number, else 160 (wide
    enough that tables do not wrap in a log)."""
    columns = (os.environ if environ is None else environ).get("COLUMNS", "")
    if is_tty:
        return None
    return int(columns) if columns.isdigit() and int(columns) > 0 else 160


# rich honours NO_COLOR (no colours, styles such as bold kept) and FORCE_COLOR itself.
console = Console(width=output_width(sys.stdout.isatty()))
err_console = Console(stderr=True, width=output_width(sys.stderr.isatty()))

EXPLAIN_SCHEMA = "meta-supervisor/explain/1"
INGEST_SCHEMA = "meta-supervisor/ingest/1"
QUARANTINE_SCHEMA = "meta-supervisor/quarantine/1"
VERIFY_SCHEMA = "meta-supervisor/verify/1"
OVERRIDES_SCHEMA = "meta-supervisor/overrides/1"
OVERRIDE_CHANGE_SCHEMA = "meta-supervisor/override-change/1"
POLICY_VALIDATE_SCHEMA = "meta-supervisor/policy-validate/1"
BACKTEST_SCHEMA = "meta-supervisor/backtest/1"
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
LedgerOption = Annotated[
    Path | None,
    typer.Option(
        "--ledger",
        help="Ledger store directory (default: META_SUPERVISOR_LEDGER, else "
        "ROOT/meta_supervisor/ledger).",
    ),
]
Wait = Annotated[float, typer.Option("--wait", help="Seconds to wait for another cycle's lock.")]


class Format(StrEnum):
    """Output formats of ``explain``."""

    TABLE = "table"
    JSON = "json"
    MD = "md"


# ---------------------------------------------------------------- helpers


_BY_CODE: dict[int, type[MetaSupervisorError]] = {1: ProblemFound, 2: BadInput, 3: Busy}


def fail(message: str, code: int = 2) -> MetaSupervisorError:
    """The error to raise for a problem the command itself found, by exit ``code``; the
    handler (:func:`report`) prints it."""
    return _BY_CODE[code](message)


def report(err: MetaSupervisorError) -> None:
    """Print ``err`` on stderr: one ``error:`` line per line of its message, its hint last."""
    message = str(err) if err.hint is None else f"{err}; {err.hint}"
    # soft_wrap: one line per error, whatever the width, so that scripts can grep it; a message
    # of several lines (e.g. several policy errors) gives several lines, each with its prefix.
    for line in message.splitlines() or [""]:
        err_console.print(f"[bold red]error:[/] {markup(line)}", highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    for line in message.splitlines() or [""]:
        err_console.print(f"[yellow]warning:[/] {markup(line)}", highlight=False, soft_wrap=True)


def error_object(message: str, exit_code: int, hint: str | None) -> dict[str, Any]:
    """What ``--json`` prints on stdout when a command fails (stderr says it too)."""
    return {"schema": ERROR_SCHEMA, "error": message, "hint": hint, "exit_code": exit_code}


class _Emitted:
    """Whether this process already wrote its JSON document on stdout (then an error after it
    is not printed as a second one)."""

    done = False


def json_emitted() -> bool:
    return _Emitted.done


def forget_emitted() -> None:
    """A new command starts with nothing written (the app may run several in one process)."""
    _Emitted.done = False


def emit_json(value: Any) -> None:
    _Emitted.done = True
    sys.stdout.write(canonical_json(value, indent=2) + "\n")


def paths_for(
    state_dir: Path | None,
    records: Path | None = None,
    telemetry: Path | None = None,
    root: Path | None = None,
    ledger: Path | None = None,
) -> Paths:
    """Environment defaults; ``--root`` re-bases the layout; explicit options win (``ledger``:
    the store to read, ``--ledger``)."""
    base = Paths.from_env()
    if root is not None:
        base = replace(Paths.under(root), policy=base.policy)
    return Paths(
        records=records or base.records,
        telemetry=telemetry or base.telemetry,
        state_dir=state_dir or base.state_dir,
        policy=base.policy,
        # Files named on the command line are what the operator wants read, not the store.
        ledger=ledger or (None if records or telemetry else base.ledger),
    )


def parse_instant(text: str, option: str) -> datetime:
    """An ISO-8601 instant given as ``option``, or a usage error naming the option."""
    try:
        return parse_iso(text)
    except ValueError as err:
        raise fail(f"{option}: {err}") from None


def parse_as_of(text: str | None) -> datetime | None:
    """``--as-of``, or None when not given."""
    return None if text is None else parse_instant(text, "--as-of")


def as_of_or_now(text: str | None) -> datetime:
    """``--as-of``, else the clock read once, in whole seconds (all output shows this one)."""
    return parse_as_of(text) or datetime.now(UTC).replace(microsecond=0)


def load_policy_for(config: Path | None, paths: Paths) -> Policy:
    try:
        return load_policy(config or paths.policy)
    except PolicyError:
        raise


def _check_state_dir(paths: Paths) -> None:
    """A state directory whose fleet directory is missing too is a mistyped --root or
    --state-dir, not a fleet that has not decided yet."""
    fleet = paths.state_dir.parent.parent  # <root>/meta_supervisor/state
    if not paths.state_dir.exists() and not fleet.exists():
        raise fail(
            f"{fleet}: no such directory, so no decision was ever recorded under it "
            "(check --root or --state-dir)",
            1,
        )


def history_entries(paths: Paths) -> list[HistoryEntry]:
    entries = read_history(paths.history)
    if not entries:
        _check_state_dir(paths)
        raise fail(
            f"{paths.history}: no decision in the history yet; run 'meta-supervisor allocate' "
            "(or 'meta-supervisor demo') first",
            1,
        )
    return entries


def entry_by_seq(entries: list[HistoryEntry], seq: int, paths: Paths) -> HistoryEntry:
    if not 1 <= seq <= len(entries):
        raise fail(f"{paths.history}: no entry {seq} (entries 1 to {len(entries)})")
    return entries[seq - 1]


def entry_at(entries: list[HistoryEntry], at: datetime, paths: Paths) -> HistoryEntry:
    """The decision in force at ``at``: the latest as_of ≤ at (the last committed on ties)."""
    superseded = superseded_seqs(entries)  # a superseded decision was never in force
    known = [e for e in entries if e.seq not in superseded and parse_iso(e.record["as_of"]) <= at]
    if not known:
        first = min(e.record["as_of"] for e in entries)
        raise fail(f"{paths.history}: no decision at or before {iso(at)} (first: {first})")
    return max(known, key=lambda e: (parse_iso(e.record["as_of"]), e.seq))


def select_entry(text: str, entries: list[HistoryEntry], paths: Paths) -> HistoryEntry:
    """A history entry by sequence number (``7``) or by instant (``2026-01-15T00:00Z``)."""
    if text.strip().lstrip("#").isdigit():
        return entry_by_seq(entries, int(text.strip().lstrip("#")), paths)
    try:
        at = parse_iso(text)
    except ValueError:
        raise fail(
            f"{text!r} is neither a history sequence number nor an ISO-8601 instant"
        ) from None
    return entry_at(entries, at, paths)


def latest_decision(paths: Paths) -> tuple[dict[str, Any], HistoryEntry | None]:
    """The latest decision (``decision.json``, else the history's last entry) and its entry."""
    entries: list[HistoryEntry] = []
    try:
        entries = read_history(paths.history)
    except ValueError as err:
        warn(f"{err}; run 'meta-supervisor verify'")
    if paths.decision.exists():
        try:
            decision = json.loads(paths.decision.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise fail(
                f"{paths.decision}: line {err.lineno}: not valid JSON: {err.msg}", 1
            ) from None
        digest = fingerprint(decision)
        entry = next((e for e in reversed(entries) if fingerprint(e.record) == digest), None)
        if not isinstance(decision, dict):
            raise fail(f"{paths.decision}: not a decision (a JSON object)", 1)
        try:
            return explanations.resolve(paths.state_dir, decision), entry
        except ExplanationsError as err:
            raise fail(f"{err}; run 'meta-supervisor verify'", 1) from None
    if entries:
        return entries[-1].decision, entries[-1]
    _check_state_dir(paths)
    raise fail(
        f"{paths.decision}: no decision yet; run 'meta-supervisor allocate' "
        "(or 'meta-supervisor demo') first",
        1,
    )


def check_agent(name: str, decision: dict[str, Any], what: str = "decision") -> None:
    if name in decision["agents"]:
        return
    known = sorted(decision["agents"])
    hint = difflib.get_close_matches(name, known, n=1)
    suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
    raise fail(
        f"agent {name!r} is not in the {what} of {decision['as_of']}{suggestion} "
        f"(agents: {', '.join(known)})"
    )


def overrides_line(decision: Decision) -> str | None:
    """The overrides in force, one line of rich markup (names and reasons escaped)."""
    active = [e["override"] for e in decision.agents.values() if e.get("override")]
    if not active:
        return None
    items = []
    for o in sorted(active, key=lambda o: o["agent"]):
        what = "excluded" if o["action"] == "exclude" else f"capped at {o['cap']:.2%}"
        items.append(f"{o['agent']} {what} until {o['expires_at']} ({o['reason']})")
    return markup("Operator overrides in force: " + "; ".join(items) + ".")


def invocation() -> str:
    """How to run this tool from here: the command on PATH, ``./dev cli`` in a checkout, or
    ``python -m meta_supervisor`` with this interpreter (e.g. after ``./dev demo``)."""
    if shutil.which("meta-supervisor"):
        return "meta-supervisor"
    if Path("dev").is_file() and Path("pyproject.toml").is_file():
        return "./dev cli"
    return f"{shlex.quote(sys.executable)} -m meta_supervisor"
