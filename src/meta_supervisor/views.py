"""Views of a decision: a rich terminal table, and the explanation of one agent."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from meta_supervisor.decision import Decision

__all__ = ["allocation_table", "explanation_panel", "factor_value", "print_decision"]


def factor_value(explanation: dict[str, Any], name: str) -> float | None:
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


def allocation_table(decision: Decision) -> Table:
    """One row per agent: weight, each multiplier, and the one-line reason; then cash."""
    table = Table(
        title=f"Allocation as of {decision.as_of} (profile: {decision.profile})",
        box=box.SIMPLE_HEAVY,
        show_footer=True,
    )
    table.add_column("agent", footer="cash")
    table.add_column("strategy")
    table.add_column("weight", justify="right", footer=f"{decision.cash:.2%}")
    for name in ("confidence", "sim_integrity", "cvar", "drawdown"):
        table.add_column(name.replace("_integrity", ""), justify="right")
    table.add_column("why", overflow="fold", ratio=1)
    ordered = sorted(decision.agents.values(), key=lambda e: (-e["weight"], e["agent"]))
    for e in ordered:
        gated = not all(g["passed"] for g in e["gates"])
        weight = Text(f"{e['weight']:.2%}", style="bold" if e["weight"] > 0 else "dim")
        table.add_row(
            e["agent"],
            e["strategy"],
            weight,
            *(
                _mult(factor_value(e, f), gated)
                for f in ("confidence", "sim_integrity", "cvar", "drawdown")
            ),
            Text(e["summary"], style="dim" if gated else ""),
        )
    return table


def explanation_panel(decision: Decision, agent: str) -> Panel:
    """Every number behind one agent's weight: inputs, gates, factors, steps."""
    e = decision.agents[agent]
    gates = Table(box=box.MINIMAL, title="gates")
    gates.add_column("gate")
    gates.add_column("verdict")
    gates.add_column("detail", overflow="fold")
    for g in e["gates"]:
        verdict = Text("pass", style="green") if g["passed"] else Text("FAIL", style="bold red")
        gates.add_row(g["gate"], verdict, g["detail"])
    factors = Table(box=box.MINIMAL, title="factors")
    factors.add_column("factor")
    factors.add_column("value", justify="right")
    factors.add_column("reason", overflow="fold")
    for f in e["factors"]:
        factors.add_row(f["factor"], f"{f['value']:.4f}", f["reason"])
    steps = Table(box=box.MINIMAL, title="weight after each step")
    steps.add_column("step")
    steps.add_column("value", justify="right")
    for key, value in e["steps"].items():
        steps.add_row(key, f"{value:.6f}" if key == "quality" else f"{value:.4%}")
    notes = Text("\n".join(e.get("notes") or []), style="italic")
    body = Group(Text(e["summary"], style="bold"), gates, factors, steps, notes)
    return Panel(body, title=f"{agent} ({e['strategy']}): {e['weight']:.2%}")


def print_decision(decision: Decision, console: Console | None = None) -> None:
    """Print the allocation table and the portfolio line."""
    console = console or Console(width=None if Console().is_terminal else 160)
    console.print(allocation_table(decision))
    p = decision.portfolio
    caps = ", ".join(p["binding_caps"]) or "none"
    console.print(
        f"[bold]deployed {decision.gross:.2%}[/], [bold]cash {decision.cash:.2%}[/]: "
        f"{p['reason']}. Gated: {p['n_gated']} of {p['n_agents']}. Binding caps: {caps}."
    )
