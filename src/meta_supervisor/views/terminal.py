"""Terminal views (rich) of decisions, history, diffs, the policy and overrides.

Every function builds a renderable or plain data from its arguments; none reads a file. The
numbers behind the words come from :mod:`meta_supervisor.views.attribution`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from meta_supervisor.allocate.decision import Decision, iso
from meta_supervisor.allocate.explain import pp
from meta_supervisor.allocate.inputs import Override
from meta_supervisor.policy.model import Policy
from meta_supervisor.policy.toml import policy_fields, shown_value
from meta_supervisor.units import STEP_EPS
from meta_supervisor.views.attribution import (
    STEPS,
    cash_breakdown,
    factor_text,
    factors_caption,
    fleet_quality,
    method_of,
    step_notes,
)
from meta_supervisor.views.safe import markup, term

__all__ = [
    "agent_history_table",
    "allocation_table",
    "cash_table",
    "diff_view",
    "explanation_panel",
    "factor_value",
    "history_table",
    "overrides_table",
    "policy_table",
    "print_decision",
    "shown_factors",
]

_MULTIPLIERS = ("confidence", "sim_integrity", "cvar", "drawdown")


def shown_factors(profile: str | None) -> tuple[str, ...]:
    """The factor columns of the allocation table under ``profile``: those that move weights
    (:attr:`~meta_supervisor.allocate.profiles.base.ProfileMethod.shown_factors`)."""
    method = method_of(profile)
    return _MULTIPLIERS if method is None else method.shown_factors


def factor_value(explanation: Mapping[str, Any], name: str) -> float | None:
    """The value of the named factor in an agent's explanation (None if absent)."""
    for factor in explanation["factors"]:
        if factor["factor"] == name:
            return factor["value"]
    return None


def _mult(value: float | None, gated: bool) -> Text:
    if value is None:
        return Text("-")
    style = "dim" if gated else ("red" if value < 0.75 else "yellow" if value < 1 else "green")
    return Text(f"x{value:.2f}", style=style)


#: Below this width the allocation table leaves out the strategy and the one-line reason,
#: which print under it, one agent a line (a folded column broke dates and numbers mid-token).
WIDE = 120


def allocation_table(decision: Decision, width: int | None = None) -> Table:
    """One row per agent: weight, the profile's factor columns, and the one-line reason; then
    cash. With ``width`` below :data:`WIDE`: no strategy and no reason column
    (:func:`print_decision` prints the reasons under the table)."""
    wide = width is None or width >= WIDE
    table = Table(
        title=f"Allocation as of {decision.as_of} (profile: {decision.profile})",
        box=box.SIMPLE_HEAVY,
        show_footer=True,
    )
    table.add_column("agent", footer="cash", no_wrap=True)
    if wide:
        table.add_column("strategy", no_wrap=True)
    table.add_column("weight", justify="right", footer=f"{decision.cash:.2%}", no_wrap=True)
    columns = shown_factors(decision.profile)
    for name in columns:
        table.add_column(name.replace("_integrity", ""), justify="right", no_wrap=True)
    if wide:
        table.add_column("why", ratio=1, min_width=30)
    ordered = sorted(decision.agents.values(), key=lambda e: (-e["weight"], e["agent"]))
    for e in ordered:
        gated = not all(g["passed"] for g in e["gates"])
        weight = Text(f"{e['weight']:.2%}", style="bold" if e["weight"] > 0 else "dim")
        cells: list[Any] = [term(e["agent"])]
        if wide:
            cells.append(term(e["strategy"]))
        cells += [weight, *(_mult(factor_value(e, f), gated) for f in columns)]
        if wide:
            cells.append(term(e["summary"], style="dim" if gated else ""))
        table.add_row(*cells)
    return table


def cash_table(decision: Decision) -> Table:
    """Where the cash comes from: the amount each step held back (sums to the cash)."""
    table = Table(box=box.MINIMAL, title=f"cash {decision.cash:.2%}: held back by")
    table.add_column("cause")
    table.add_column("amount", justify="right")
    for part in cash_breakdown(decision.to_dict()):
        table.add_row(term(part["text"]), f"{part['amount']:.2%}")
    return table


def explanation_panel(decision: Decision, agent: str) -> Panel:
    """Every number behind one agent's weight: override, gates, factors, steps, notes."""
    e = decision.agents[agent]
    parts: list[Any] = [term(e["summary"], style="bold")]
    if e.get("override"):
        o = e["override"]
        what = "EXCLUDED" if o["action"] == "exclude" else f"CAPPED at {o['cap']:.2%}"
        parts.append(
            term(
                f"operator override: {what} by {o['created_by']} until {o['expires_at']}: "
                f"{o['reason']}",
                style="bold magenta",
            )
        )
    gates = Table(box=box.MINIMAL, title="gates")
    gates.add_column("gate")
    gates.add_column("verdict")
    gates.add_column("detail", overflow="fold")
    for g in e["gates"]:
        verdict = Text("pass", style="green") if g["passed"] else Text("FAIL", style="bold red")
        gates.add_row(term(g["gate"]), verdict, term(g["detail"]))
    factors = Table(box=box.MINIMAL, title=f"factors ({factors_caption(e, decision.profile)})")
    factors.add_column("factor")
    factors.add_column("value", justify="right")
    factors.add_column("reason", overflow="fold")
    for f in e["factors"]:
        factors.add_row(term(f["factor"]), factor_text(f["factor"], f["value"]), term(f["reason"]))
    steps = Table(box=box.MINIMAL, title="weight after each step")
    steps.add_column("step")
    steps.add_column("value", justify="right")
    steps.add_column("what happened", overflow="fold")
    as_dict = decision.to_dict()
    notes = step_notes(e, fleet_quality(as_dict), as_dict.get("policy"), decision.profile)
    for (key, meaning), note in zip(STEPS, notes, strict=True):
        value = e["steps"][key]
        shown = f"{value:.4f}" if key == "quality" else f"{value:.4%}"
        steps.add_row(key, shown, term(note or meaning))
    parts += [gates, factors, steps]
    if e.get("notes"):
        parts.append(term("notes: " + "; ".join(e["notes"]), style="italic"))
    previous = e.get("previous_weight")
    was = "" if previous is None else f" (previous {previous:.2%})"
    title = f"{markup(agent)} ({markup(e['strategy'])}): {e['weight']:.2%}{was}"
    return Panel(Group(*parts), title=title)


def followed_rule(decision: Decision) -> str | None:
    """The reason of the ``rule`` factor (the ``select`` profile: which allocation rule the
    fleet's quality follows, and why), the same for every agent; ``None`` under profiles
    without it."""
    for name in sorted(decision.agents):
        for factor in decision.agents[name]["factors"]:
            if factor["factor"] == "rule" and factor.get("reason"):
                return str(factor["reason"])
    return None


def print_decision(decision: Decision, console: Console | None = None) -> None:
    """Print the allocation table, the portfolio line and, under ``select``, the rule the
    quality follows."""
    console = console or Console(width=None if Console().is_terminal else 160)
    console.print(allocation_table(decision, console.width))
    if console.width < WIDE:
        ordered = sorted(decision.agents.values(), key=lambda e: (-e["weight"], e["agent"]))
        for e in ordered:
            line = term(f"{e['agent']} ({e['strategy']}): ", style="bold")
            line.append(term(e["summary"]))
            console.print(line)
    p = decision.portfolio
    caps = ", ".join(markup(c) for c in p["binding_caps"]) or "none"
    console.print(
        f"[bold]deployed {decision.gross:.2%}[/], [bold]cash {decision.cash:.2%}[/]. "
        f"Before the stability step: {markup(p['reason'])}. Gated: {p['n_gated']} of "
        f"{p['n_agents']}. Binding caps: {caps}."
    )
    rule = followed_rule(decision)
    if rule is not None:
        console.print(f"Quality ({markup(decision.profile or '')} profile): {markup(rule)}.")


# ---------------------------------------------------------------- history and diff


def history_table(rows: Sequence[Mapping[str, Any]], width: int | None = None) -> Table:
    """Weights over time: one row per decision, one column per agent; when the agents do not
    fit in ``width`` (a number is never cut), the long format: one row per decision and agent
    with a weight, then the decision's cash."""
    agents = sorted({a for row in rows for a in row["weights"]})
    # seq, as_of (20), a weight column per agent and cash: each at least 7 ("100.00%") plus
    # rich's padding and separators
    needed = 6 + 23 + sum(max(len(a), 7) + 3 for a in agents) + 10
    if width is not None and needed > width:
        return _history_long(rows)
    table = Table(title="weights over time", box=box.SIMPLE_HEAVY)
    table.add_column("seq", justify="right", no_wrap=True)
    table.add_column("as_of", no_wrap=True)
    for name in agents:
        table.add_column(term(name), justify="right", no_wrap=True)
    table.add_column("cash", justify="right", no_wrap=True)
    for row in rows:
        weights = row["weights"]
        cells = [f"{weights[a]:.2%}" if a in weights else Text("-", style="dim") for a in agents]
        table.add_row(str(row["seq"]), row["as_of"], *cells, f"{row['cash']:.2%}")
    return table


def _history_long(rows: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(title="weights over time (one line per agent)", box=box.SIMPLE)
    for name, justify in (("seq", "right"), ("as_of", "left"), ("agent", "left")):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    table.add_column("weight", justify="right", no_wrap=True)
    table.add_column("change", justify="right", no_wrap=True)
    previous: Mapping[str, float] | None = None
    for row in rows:
        seq, as_of, weights = str(row["seq"]), row["as_of"], row["weights"]
        for name in sorted(weights):
            change = "" if previous is None else pp(weights[name] - previous.get(name, 0.0))
            table.add_row(seq, as_of, term(name), f"{weights[name]:.2%}", change)
        table.add_row(seq, as_of, Text("cash", style="bold"), f"{row['cash']:.2%}", "")
        table.add_section()
        previous = weights
    return table


def agent_history_table(agent: str, rows: Sequence[Mapping[str, Any]]) -> Table:
    """One agent over time: weight, gate, each factor, and the one-line reason."""
    factor_names: list[str] = []
    for row in rows:
        for name in (row["agent"] or {}).get("factors", {}):
            if name not in factor_names:
                factor_names.append(name)
    table = Table(title=f"{markup(agent)} over time", box=box.SIMPLE_HEAVY)
    table.add_column("seq", justify="right")
    table.add_column("as_of")
    table.add_column("weight", justify="right")
    for name in factor_names:
        table.add_column(name, justify="right")
    table.add_column("why", overflow="fold", ratio=1)
    for row in rows:
        a = row["agent"]
        if a is None:
            table.add_row(str(row["seq"]), row["as_of"], "-", *["-"] * len(factor_names), "absent")
            continue
        cells = [f"{a['factors'][n]:.3f}" if n in a["factors"] else "-" for n in factor_names]
        weight = f"{a['weight']:.2%}"
        table.add_row(str(row["seq"]), row["as_of"], weight, *cells, term(a["summary"]))
    return table


def diff_view(diff: Mapping[str, Any], old_label: str, new_label: str) -> Group:
    """What changed between two decisions, agent by agent, in words and numbers."""
    lines: list[Any] = [
        Text(f"from {old_label}\n  to {new_label}", style="bold"),
        Text(
            f"cash {diff['cash']['old']:.2%} -> {diff['cash']['new']:.2%}, "
            f"deployed {diff['gross']['old']:.2%} -> {diff['gross']['new']:.2%}, "
            f"turnover {diff['turnover']:.2%}"
        ),
    ]
    for key, change in diff["policy_changes"].items():
        lines.append(Text(f"policy {key}: {change['old']} -> {change['new']}", style="yellow"))
    ordered = sorted(diff["agents"].values(), key=lambda a: (-abs(a["change"]), a["agent"]))
    for a in ordered:
        style = "bold" if abs(a["change"]) > STEP_EPS else "dim"
        lines.append(term(a["text"], style=style))
        for d in a["drivers"]:
            lines.append(
                term(f"    {d['kind']:<8} {d['text']}", style="dim" if not a["change"] else "")
            )
    return Group(*lines)


# ---------------------------------------------------------------- policy


def policy_table(policy: Policy | None = None) -> Table:
    """The policy as a table; values that differ from the default are highlighted."""
    table = Table(title="policy", box=box.SIMPLE_HEAVY)
    for column in ("key", "value", "default", "range", "description"):
        table.add_column(column, overflow="fold")
    for f in policy_fields(policy):
        changed = f["value"] != f["default"]
        table.add_row(
            f["name"],
            Text(shown_value(f["value"]), style="bold yellow" if changed else ""),
            shown_value(f["default"]),
            f["range"],
            f["description"],
        )
    return table


# ---------------------------------------------------------------- overrides


def overrides_table(
    overrides: Sequence[Override],
    as_of: datetime,
    *,
    latest_as_of: str | None = None,
    applied: Mapping[str, Mapping[str, Any]] | None = None,
) -> Table:
    """Overrides with their status at ``as_of`` (active, or expired: inert).

    With ``latest_as_of`` (the latest decision's ``as_of``) and ``applied`` (the overrides that
    decision recorded, by agent), a column says whether each one is in force in that decision:
    right after a backtest or the demo, the clock and the data can be far apart.
    """
    title = f"operator overrides at {iso(as_of)}"
    table = Table(title=title, box=box.SIMPLE_HEAVY)
    columns = ["agent", "action", "cap", "status"]
    if latest_as_of is not None:
        columns.append(f"in latest decision ({latest_as_of})")
    for column in [*columns, "expires", "by", "reason"]:
        table.add_column(column, overflow="fold")
    for o in sorted(overrides, key=lambda o: o.agent):
        status = (
            Text("active", style="bold magenta")
            if o.active(as_of)
            else Text("expired", style="dim")
        )
        cap = "-" if o.cap is None else f"{o.cap:.2%}"
        cells: list[Any] = [term(o.agent), o.action, cap, status]
        if latest_as_of is not None:
            in_force = (applied or {}).get(o.agent) == o.to_dict()
            cells.append(
                Text("in force", style="bold magenta")
                if in_force
                else Text("not applied (next 'allocate')" if o.active(as_of) else "no")
            )
        table.add_row(*cells, iso(o.expires_at), term(o.created_by), term(o.reason))
    return table
