"""The Markdown memo of one decision, for LPs: readable without the tool.

:func:`decision_memo` is pure (a decision dict in, Markdown text out). Sections: how to read
the memo, the portfolio (deployed, cash and why, in numbers), one section per agent (its
gates, each factor with its value and a one-line reason, the weight after every step), the
operator overrides in force, and the provenance hashes that tie the memo to the history.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from meta_supervisor.allocate.decision import fingerprint
from meta_supervisor.views.attribution import (
    STEPS,
    cash_breakdown,
    factor_text,
    factors_caption,
    failed_gates,
    fleet_quality,
    step_notes,
)
from meta_supervisor.views.safe import md

__all__ = ["decision_memo", "md_cell"]

_HOW_TO_READ = """\
Weights are fractions of the fund's capital; whatever is not allocated stays in cash. Each
cycle, every agent first passes safety **gates** (operator exclusion, kill flag, usable
numbers, error rate, enough records, positive PnL); an agent failing any gate gets 0. An
eligible agent's **quality** is the product of its quality factors (√ of summed PnL, hit
rate, confidence in its simulator, simulator accuracy), and its starting weight is its share of
the fleet's total quality. The steps then apply in this order: the per-agent **cap** on that
share (an operator cap included; the excess goes to the uncapped agents in proportion to
quality), then the **risk** multipliers (its strategy's tail loss against forecasts, CVaR95,
and its own drawdown; what risk removes goes to **cash**, not to the other agents), then the
gross cap, then the **stability** rule against the previous decision (a decrease applies in
full, an increase is limited per cycle, and a move smaller than the no-trade band, and small
for the position, keeps the previous weight), and finally weights are rounded down. A factor
of x1.00 changes nothing; x0.50 halves the weight. bps = basis points of notional; pp =
percentage points of capital."""


def _how_to_read(policy: Mapping[str, Any]) -> str:
    """The reading guide, with this decision's stability settings when the decision has them."""
    band, limit = policy.get("no_trade_band"), policy.get("max_increase_per_cycle")
    if band is None or limit is None:
        return _HOW_TO_READ
    relative = policy.get("no_trade_band_relative")
    also = f" and {relative:.0%} of the position" if relative is not None else ""
    return (
        _HOW_TO_READ
        + f" In this decision: increases at most +{limit * 100:.2f} pp per cycle, no-trade band "
        f"{band * 100:.2f} pp{also}."
    )


def md_cell(value: Any) -> str:
    """Text safe inside a Markdown table cell (pipes escaped, line breaks flattened)."""
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    align = ["---:" if h in ("weight", "value", "amount", "previous") else "---" for h in header]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in rows]
    return lines


def _portfolio(decision: Mapping[str, Any]) -> list[str]:
    p = decision["portfolio"]
    turnover = "n/a (first decision)" if p.get("turnover") is None else f"{p['turnover']:.2%}"
    lines = ["## Portfolio", ""]
    lines += _table(
        ["", "value"],
        [
            ["Deployed (gross)", f"{decision['gross']:.2%}"],
            ["Cash", f"{decision['cash']:.2%}"],
            ["Agents allocated", f"{p['n_allocated']} of {p['n_agents']} ({p['n_gated']} gated)"],
            ["Binding caps", ", ".join(md(c) for c in p["binding_caps"]) or "none"],
            ["Turnover vs previous decision", turnover],
        ],
    )
    lines += ["", f"**Cash and why.** {md(p['reason'])}.", ""]
    parts = cash_breakdown(decision)
    lines += _table(
        ["cash held back by", "amount"], [[md(c["text"]), f"{c['amount']:.2%}"] for c in parts]
    )
    lines += ["", "| agent | strategy | weight | previous | why |", "|---|---|---:|---:|---|"]
    ordered = sorted(decision["agents"].values(), key=lambda e: (-e["weight"], e["agent"]))
    for e in ordered:
        previous = "-" if e.get("previous_weight") is None else f"{e['previous_weight']:.2%}"
        cells = [
            md(e["agent"]),
            md(e["strategy"]),
            f"{e['weight']:.2%}",
            previous,
            md(e["summary"]),
        ]
        lines.append("| " + " | ".join(md_cell(c) for c in cells) + " |")
    return lines


def _agent(
    e: Mapping[str, Any], total_quality: float | None, policy: Mapping[str, Any] | None = None
) -> list[str]:
    title = f"### {md(e['agent'])} ({md(e['strategy'])}): {e['weight']:.2%}"
    lines = [title, "", f"> {md(e['summary'])}", ""]
    if e.get("override"):
        o = e["override"]
        what = "excluded" if o["action"] == "exclude" else f"capped at {o['cap']:.2%}"
        lines += [
            f"**Operator override:** {what} by {md(o['created_by'])} until "
            f"{md(o['expires_at'])}: {md(o['reason'])}",
            "",
        ]
    failed = failed_gates(e)
    verdict = "failed " + ", ".join(g["gate"] for g in failed) if failed else "all passed"
    lines += [f"**Gates** ({verdict}):", ""]
    lines += _table(
        ["gate", "verdict", "detail"],
        [[g["gate"], "pass" if g["passed"] else "**FAIL**", md(g["detail"])] for g in e["gates"]],
    )
    lines += ["", f"**Factors** ({factors_caption(e)}):", ""]
    lines += _table(
        ["factor", "value", "reason"],
        [
            [f["factor"], factor_text(f["factor"], f["value"]), md(f["reason"])]
            for f in e["factors"]
        ],
    )
    lines += ["", "**Weight after every step:**", ""]
    notes = step_notes(e, total_quality, policy)
    rows = []
    for (key, meaning), note in zip(STEPS, notes, strict=True):
        value = e["steps"][key]
        shown = f"{value:.4f}" if key == "quality" else f"{value:.4%}"
        rows.append([key, shown, note or meaning])
    lines += _table(["step", "value", "what happened"], rows)
    if e.get("notes"):
        lines += ["", "Notes: " + "; ".join(md(n) for n in e["notes"]) + "."]
    return [*lines, ""]


def decision_memo(
    decision: Mapping[str, Any],
    *,
    agents: Sequence[str] | None = None,
    seq: int | None = None,
    entry_hash: str | None = None,
    version: str = "",
) -> str:
    """Render ``decision`` (a :meth:`~meta_supervisor.allocate.decision.Decision.to_dict`) as
    Markdown.

    Parameters
    ----------
    agents : names, optional
        The agents given a section (default: all, highest weight first).
    seq, entry_hash : optional
        The decision's place in the hash-chained history, shown under provenance.
    version : str
        The tool's version, for the footer.
    """
    names = (
        list(agents)
        if agents is not None
        else [
            e["agent"]
            for e in sorted(decision["agents"].values(), key=lambda e: (-e["weight"], e["agent"]))
        ]
    )
    where = f", history entry #{seq}" if seq is not None else ""
    lines = [
        f"# Allocation memo: decision as of {decision['as_of']}",
        "",
        f"Profile `{decision['profile']}`{where}. Deployed **{decision['gross']:.2%}**, "
        f"cash **{decision['cash']:.2%}**.",
        "",
        "## How to read this memo",
        "",
        _how_to_read(decision.get("policy") or {}),
        "",
        *_portfolio(decision),
        "",
        "## Agents",
        "",
    ]
    total_quality = fleet_quality(decision)
    for name in names:
        lines += _agent(decision["agents"][name], total_quality, decision.get("policy"))
    overrides = [e["override"] for e in decision["agents"].values() if e.get("override")]
    lines += ["## Operator overrides in force", ""]
    if overrides:
        lines += _table(
            ["agent", "action", "cap", "reason", "by", "expires"],
            [
                [
                    md(o["agent"]),
                    md(o["action"]),
                    "-" if o.get("cap") is None else f"{o['cap']:.2%}",
                    md(o["reason"]),
                    md(o["created_by"]),
                    md(o["expires_at"]),
                ]
                for o in sorted(overrides, key=lambda o: o["agent"])
            ],
        )
    else:
        lines.append("None: every weight above follows from the evidence and the policy.")
    prov = decision["provenance"]
    lines += [
        "",
        "## Provenance",
        "",
        f"- Decision digest (SHA-256 of its canonical JSON): `{fingerprint(decision)}`",
        f"- History entry: #{seq}, chain hash `{entry_hash}`"
        if seq is not None
        else "- History entry: not given",
        f"- Previous decision's chain hash: `{prov.get('previous_decision_hash')}`",
        f"- Policy fingerprint: `{prov.get('policy_fingerprint')}`",
        f"- Inputs fingerprint: `{prov.get('inputs_fingerprint')}`",
        "",
        "The history is append-only and hash-chained: `meta-supervisor verify` checks that no "
        "entry was edited, removed or reordered since it was written.",
        "",
        f"*Generated by meta-supervisor {version}.*" if version else "",
    ]
    return "\n".join(lines).rstrip() + "\n"
