"""The Markdown memo of one decision, for LPs: readable without the tool.

:func:`decision_memo` is pure (decision dicts in, Markdown text out). Every sentence is
generated from the decision: the method from its profile's register entry, the gates from
the gates its explanations list, thresholds from its policy, numbers from its steps. The
first page: how the decision was made, what changed since the previous decision and why,
realised performance since then, risk actions, operator actions, the portfolio (deployed,
cash and why). Then an appendix with one section per agent (its gates, each factor with its
value and a one-line reason, the weight after every step with the formulas), the operator
overrides in force, and the provenance hashes that tie the memo to the history.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from meta_supervisor.allocate.decision import fingerprint, iso
from meta_supervisor.allocate.explain import pp
from meta_supervisor.views.attribution import (
    STEPS,
    cash_breakdown,
    compare_decisions,
    factor_text,
    factors_caption,
    failed_gates,
    fleet_quality,
    method_of,
    quality_risk_factors,
    step_notes,
)
from meta_supervisor.views.safe import md

__all__ = ["decision_memo", "gate_rules", "md_cell", "method_text"]

#: What each gate refuses, with the decision's own thresholds (``{...}`` from its policy).
_GATE_RULES = {
    "operator_exclusion": "an operator excluded it (with a reason and an expiry)",
    "kill": "its statistics say decision KILL",
    "usable_numbers": "a statistic is unusable (not a number, NaN, inf, or out of range)",
    "error_rate": "more than {max_error_rate:.0%} of its runs errored (telemetry)",
    "min_records": "it has fewer than {min_records} records in the window",
    "positive_pnl": "its PnL summed over the window is not positive",
}


def gate_rules(decision: Mapping[str, Any]) -> list[str]:
    """The gates this decision applied (names from its explanations, in order), each as a rule
    with the decision's thresholds."""
    names: list[str] = []
    for e in decision["agents"].values():
        for g in e.get("gates", []):
            if g["gate"] not in names:
                names.append(g["gate"])
    policy = {"max_error_rate": 0.15, "min_records": 5} | dict(decision.get("policy") or {})
    rules = [f"`{n}`: {_GATE_RULES.get(n, n).format(**policy)}" for n in names]
    if "min_records" in names and float(policy.get("cadence_history_hours") or 0) > 0:
        # The gate as the decision applied it: relaxed to the agent's own cadence.
        at = names.index("min_records")
        rules[at] += (
            f", or fewer than max({policy.get('cadence_min_records', 3)}, "
            f"{float(policy.get('cadence_min_share', 0.6)):.0%} of what it normally reports in "
            "such a window) when its cadence is known"
        )
    return rules


def method_text(decision: Mapping[str, Any]) -> str:
    """How this decision sized agents, generated from its profile, gates and policy: a
    Markdown list (method, gates, cap, the later steps, how to read a factor)."""
    profile = decision["profile"]
    method = method_of(profile)
    policy = decision.get("policy") or {}
    lines = [f"This decision used the **`{profile}`** profile: "]
    lines[0] += method.method if method is not None else "a profile this version does not know"
    lines[0] += "."
    rules = gate_rules(decision)
    if rules:
        lines.append("An agent gets 0 when it fails a gate: " + "; ".join(rules) + ".")
    lines.append(_cap_text(decision))
    band, limit = policy.get("no_trade_band"), policy.get("max_increase_per_cycle")
    stability = (
        "Then the risk multipliers scale each capped share down (what they remove goes to "
        "cash, not to the other agents), a gross cap may scale all weights down, and the "
        "stability rule compares with the previous decision: a decrease applies in full"
    )
    if band is not None and limit is not None:
        relative = policy.get("no_trade_band_relative")
        also = f" and {relative:.0%} of the position" if relative is not None else ""
        stability += (
            f", an increase is limited to +{limit * 100:.2f} pp per cycle, and a move "
            f"inside the no-trade band ({band * 100:.2f} pp{also}) keeps the previous weight"
        )
    lines.append(stability + ". Weights are finally rounded down, so they never sum above 1.")
    lines.append(
        "A factor of x1.00 changes nothing; x0.50 halves the weight. bps = basis points of "
        "notional; pp = percentage points of capital."
    )
    return "\n".join(f"- {line}" for line in lines)


def _cap_text(decision: Mapping[str, Any]) -> str:
    """The per-agent cap, where this decision's policy sends its excess, and what it did here."""
    policy = decision.get("policy") or {}
    cap = policy.get("max_weight")
    to_cash = policy.get("cap_excess", "agents") == "cash"
    head = f"No agent's share exceeds the per-agent cap of {cap:.0%}" if cap else "Capped"
    where = (
        'the excess of a capped agent stays in cash (policy `cap_excess = "cash"`)'
        if to_cash
        else "the excess of a capped agent goes to the uncapped agents in proportion to their "
        'quality (policy `cap_excess = "agents"`; `"cash"` keeps it in cash)'
    )
    agents = decision["agents"].values()
    capped = sorted(
        (e for e in agents if e["steps"]["after_cap"] + _SHOWN < e["steps"]["share_before_risk"]),
        key=lambda e: e["agent"],
    )
    given = sorted(
        (e for e in agents if e["steps"]["after_cap"] > e["steps"]["share_before_risk"] + _SHOWN),
        key=lambda e: (-(e["steps"]["after_cap"] - e["steps"]["share_before_risk"]), e["agent"]),
    )
    here = ""
    if capped:
        cut = math.fsum(e["steps"]["share_before_risk"] - e["steps"]["after_cap"] for e in capped)
        names = ", ".join(md(e["agent"]) for e in capped)
        here = f" Here the cap bound {names}, whose excess was {cut:.2%} of capital"
        if given:
            parts = [
                f"{md(e['agent'])} {pp(e['steps']['after_cap'] - e['steps']['share_before_risk'])}"
                for e in given
            ]
            here += ": it went to " + ", ".join(parts)
        here += "."
    return f"{head}; {where}.{here}"


_SHOWN = 5e-7  # below half a unit of the weights' sixth decimal: not a move


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
    lines += ["", f"**Cash and why.** Before the stability step: {md(p['reason'])}.", ""]
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


def _changes(decision: Mapping[str, Any], previous: Mapping[str, Any] | None) -> list[str]:
    """What changed since the previous decision, agent by agent, with what moved each."""
    lines = ["### What changed since the previous decision", ""]
    if previous is None:
        return [*lines, "No previous decision: this is the first.", ""]
    diff = compare_decisions(previous, decision)
    lines.append(
        f"Since the decision as of {previous['as_of']}: deployed {diff['gross']['old']:.2%} -> "
        f"{diff['gross']['new']:.2%}, cash {diff['cash']['old']:.2%} -> "
        f"{diff['cash']['new']:.2%}, turnover {diff['turnover']:.2%}."
    )
    lines.append("")
    for key, change in diff["policy_changes"].items():
        lines.append(f"- policy `{key}`: {md(change['old'])} -> {md(change['new'])}")
    ordered = sorted(diff["agents"].values(), key=lambda a: (-abs(a["change"]), a["agent"]))
    moved = [a for a in ordered if a["change"] != 0 or _decisive(a)]
    for a in moved:
        lines.append(f"- {md(a['text'])}")
    still = [md(a["agent"]) for a in ordered if a not in moved]
    if still:
        lines.append(f"- unchanged: {', '.join(still)}")
    return [*lines, ""]


def _decisive(agent_diff: Mapping[str, Any]) -> bool:
    return any(d["kind"] in ("presence", "override", "gate") for d in agent_diff["drivers"])


def _performance(realised: Mapping[str, Any] | None) -> list[str]:
    lines = ["### Realised since the previous decision", ""]
    if realised is None:
        return [*lines, "Not available: no previous decision, or the ledger was not read.", ""]
    lines.append(
        f"Outcomes that matured in ({_instant(realised['start'])}, {_instant(realised['end'])}]: "
        f"{realised['n_records']} records. Weighted by the previous decision's weights, the "
        f"book realised **{realised['contribution_bps']:+.2f} bps** of capital per signal "
        "(Σ weight × mean realised PnL)."
    )
    rows = []
    for name, a in realised["agents"].items():
        if a["weight"] == 0 and a["n"] == 0:
            continue
        mean = "-" if a["mean_realized_bps"] is None else f"{a['mean_realized_bps']:+.2f}"
        rows.append(
            [md(name), f"{a['weight']:.2%}", str(a["n"]), mean, f"{a['contribution_bps']:+.3f}"]
        )
    if rows:
        lines.append("")
        lines += _table(
            ["agent", "previous weight", "records", "mean realised bps", "contribution bps"],
            rows,
        )
    return [*lines, ""]


def _instant(value: Any) -> str:
    return iso(value) if isinstance(value, datetime) else str(value)


def _risk_actions(decision: Mapping[str, Any]) -> list[str]:
    """Gates that refused an agent, risk multipliers that pulled capital back, binding caps."""
    lines = ["### Risk actions", ""]
    profile = decision["profile"]
    for e in sorted(decision["agents"].values(), key=lambda e: e["agent"]):
        failed = failed_gates(e)
        if failed:
            g = failed[0]
            lines.append(
                f"- {md(e['agent'])}: gated by `{g['gate']}` ({md(g['detail'])}): weight 0"
            )
            continue
        _, risk = quality_risk_factors(e, profile)
        values = {f["factor"]: f for f in e["factors"]}
        for name in risk:
            f = values[name]
            if f["value"] < 1:
                lines.append(
                    f"- {md(e['agent'])}: {name} x{f['value']:.2f} ({md(f['reason'])}); "
                    f"{pp(e['steps']['after_risk'] - e['steps']['after_cap'])} to cash"
                )
    caps = decision["portfolio"].get("binding_caps") or []
    if caps:
        lines.append(f"- per-agent cap binding: {', '.join(md(c) for c in caps)}")
    if len(lines) == 2:
        lines.append("None: no gate refused an agent and no risk multiplier is below x1.00.")
    return [*lines, ""]


def _operator_actions(decision: Mapping[str, Any], previous: Mapping[str, Any] | None) -> list[str]:
    lines = ["### Operator actions", ""]
    now = {e["agent"]: e["override"] for e in decision["agents"].values() if e.get("override")}
    before = {}
    if previous is not None:
        before = {
            e["agent"]: e["override"] for e in previous["agents"].values() if e.get("override")
        }
    for name, o in sorted(now.items()):
        what = "exclusion" if o["action"] == "exclude" else f"cap at {o['cap']:.2%}"
        since = (
            "in force before the previous decision too"
            if before.get(name) == o
            else f"new since the previous decision ({previous['as_of']})"
            if previous is not None
            else "in force"
        )
        lines.append(
            f"- {md(name)}: {what} by {md(o['created_by'])}, expires {o['expires_at']}: "
            f"{md(o['reason'])} ({since})"
        )
    for name, o in sorted(before.items()):
        if name not in now:
            lines.append(
                f"- {md(name)}: {o['action']} by {md(o['created_by'])} (expiry {o['expires_at']}) "
                f"no longer in force as of {decision['as_of']}: {md(o['reason'])}"
            )
    if len(lines) == 2:
        lines.append("None: every weight follows from the evidence and the policy.")
    return [*lines, ""]


def _agent(
    e: Mapping[str, Any],
    total_quality: float | None,
    policy: Mapping[str, Any] | None = None,
    profile: str | None = None,
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
    lines += ["", f"**Factors** ({factors_caption(e, profile)}):", ""]
    lines += _table(
        ["factor", "value", "reason"],
        [
            [f["factor"], factor_text(f["factor"], f["value"]), md(f["reason"])]
            for f in e["factors"]
        ],
    )
    lines += ["", "**Weight after every step:**", ""]
    notes = step_notes(e, total_quality, policy, profile)
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
    previous: Mapping[str, Any] | None = None,
    realised: Mapping[str, Any] | None = None,
) -> str:
    """Render ``decision`` (a :meth:`~meta_supervisor.allocate.decision.Decision.to_dict`) as
    Markdown: a first page an LP reads (method, what changed and why, realised performance,
    risk and operator actions, the portfolio), then per-agent detail in an appendix.

    Parameters
    ----------
    agents : names, optional
        The agents given a section in the appendix (default: all, highest weight first).
    seq, entry_hash : optional
        The decision's place in the hash-chained history, shown under provenance.
    version : str
        The tool's version, for the footer.
    previous : decision dict, optional
        The decision before this one (the history's), for what changed and operator actions.
    realised : dict, optional
        :func:`meta_supervisor.views.performance.realised_between` over the records that
        matured between ``previous`` and this decision.
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
        "## Summary",
        "",
        "### How this decision was made",
        "",
        method_text(decision),
        "",
        *_changes(decision, previous),
        *_performance(realised),
        *_risk_actions(decision),
        *_operator_actions(decision, previous),
        *_portfolio(decision),
        "",
        "## Appendix: agents",
        "",
    ]
    total_quality = fleet_quality(decision)
    for name in names:
        lines += _agent(
            decision["agents"][name], total_quality, decision.get("policy"), decision["profile"]
        )
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
