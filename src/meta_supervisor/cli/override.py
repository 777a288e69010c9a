"""``meta-supervisor override add | list | remove``: operator actions with reason and expiry."""

from __future__ import annotations

import difflib
import json
from typing import Annotated, Any

import typer

from meta_supervisor.allocate.decision import iso, parse_iso
from meta_supervisor.cli.common import (
    OVERRIDE_CHANGE_SCHEMA,
    OVERRIDES_SCHEMA,
    AsOf,
    JsonOut,
    Root,
    StateDir,
    Wait,
    as_of_or_now,
    console,
    emit_json,
    fail,
    latest_decision,
    paths_for,
)
from meta_supervisor.config import Paths
from meta_supervisor.state import explanations
from meta_supervisor.state import overrides as overrides_file
from meta_supervisor.state.files import (
    StateLock,
    read_history,
)
from meta_supervisor.views.safe import markup
from meta_supervisor.views.terminal import (
    overrides_table,
)

override_app = typer.Typer(
    help="Exclude or cap an agent by hand, with a reason and an expiry.", no_args_is_help=True
)


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
    paths = paths_for(state_dir, root=root)
    if exclude == (cap is not None):
        raise fail("give exactly one of --exclude or --cap X")
    if (expires is None) == (duration is None):
        raise fail("give exactly one of --expires ISO or --for DURATION")
    if not reason or not reason.strip():
        raise fail("--reason is required: say why (it is shown in every explanation)")
    now = as_of_or_now(as_of)
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
    if not allow_unknown and not (paths.decision.exists() or paths.history.exists()):
        # nothing found is loud: a mistyped --root would add the override where no cycle reads it
        raise overrides_file.OverrideError(
            f"{paths.state_dir}: no decision yet to check agent {agent!r} against (looked for "
            f"{paths.decision} and {paths.history}); check --root/--state-dir, or pass "
            "--allow-unknown to add it anyway"
        )
    if not allow_unknown:
        latest, _ = latest_decision(paths)
        if agent not in latest["agents"]:
            hint = difflib.get_close_matches(agent, sorted(latest["agents"]), n=1)
            suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
            raise overrides_file.OverrideError(
                f"agent {agent!r} is not in the latest decision{suggestion} "
                "(pass --allow-unknown for an agent not seen yet)"
            )
    with StateLock(paths.lock, wait):
        replaced = overrides_file.add_override(paths.overrides, override)
    if json_out:
        emit_json(
            {
                "schema": OVERRIDE_CHANGE_SCHEMA,
                "added": override.to_dict(),
                "replaced": replaced and replaced.to_dict(),
            }
        )
        return
    what = "excluded" if exclude else f"capped at {override.cap:.2%}"
    console.print(
        f"{markup(agent)} {what} until {iso(override.expires_at)}: {markup(override.reason)} "
        f"(in {markup(paths.overrides)}; applies from the next 'allocate')",
        highlight=False,
    )
    if replaced is not None:
        console.print(
            f"replaced the previous override ({replaced.action}: {markup(replaced.reason)})"
        )


def _latest_quietly(paths: Paths) -> dict[str, Any] | None:
    """The latest decision if one can be read, else None (no message: it is optional here)."""
    try:
        if paths.decision.exists():
            record = json.loads(paths.decision.read_text(encoding="utf-8"))
            return explanations.resolve(paths.state_dir, record)
        entries = read_history(paths.history)
        return entries[-1].decision if entries else None
    except (ValueError, OSError, AttributeError, TypeError):
        return None


@override_app.command("list")
def override_list(
    as_of: AsOf = None,
    state_dir: StateDir = None,
    root: Root = None,
    json_out: JsonOut = False,
) -> None:
    """List overrides: active or expired at --as-of, and whether the latest decision applied
    each one (an override added since takes effect at the next 'allocate').

    --as-of defaults to the latest decision's as_of (the clock when there is none): the status
    that matters is the one at the data's time, which after the demo or a backtest can be far
    from the wall clock.

    Examples:

      meta-supervisor override list --root demo-out

      meta-supervisor override list --root demo-out --as-of 2026-01-15T06:00:00Z
    """
    paths = paths_for(state_dir, root=root)
    items = overrides_file.load_overrides(paths.overrides)
    latest = _latest_quietly(paths)
    if as_of is None and latest is not None and isinstance(latest.get("as_of"), str):
        now = parse_iso(latest["as_of"])
    else:
        now = as_of_or_now(as_of)
    applied = {} if latest is None else _applied_overrides(latest)
    if json_out:
        emit_json(
            {
                "schema": OVERRIDES_SCHEMA,
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
    paths = paths_for(state_dir, root=root)
    with StateLock(paths.lock, wait):
        removed = overrides_file.remove_override(paths.overrides, agent)
    console.print(
        f"removed the {removed.action} override on {markup(agent)} ({markup(removed.reason)})"
    )
