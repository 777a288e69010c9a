"""What made a weight, the cash and a change between two decisions: numbers for the views.

Pure functions over decision dicts (:meth:`meta_supervisor.allocate.decision.Decision.to_dict` or a
history entry's ``decision``); no file, no clock. Weights are fractions of capital; "pp" are
percentage points of capital.

* :func:`cash_breakdown` splits the cash ``1 − Σ final`` into the step that held each part
  back. The quality shares sum to 1 over the eligible agents, and each later step's total
  differs from the one before by what that step kept out, so the parts telescope and add up
  to the cash exactly (up to float rounding)::

      cash = (1 − Σ after_cap)                      caps with nowhere to send the excess
           + (Σ after_cap − Σ after_risk)           risk multipliers (pull-back)
           + (Σ after_risk − Σ after_gross_cap)     gross cap
           + (Σ after_gross_cap − Σ after_stability) stability, net: increases limited
                                                     (+) and no-trade-band holds (±)
           + (Σ after_stability − Σ final)          rounding down

* :func:`compare_decisions` says, per agent, which gates, overrides, factors and steps moved the
  weight. An agent's quality share is ``s_i = Π_{f ∈ quality} f_i / Σ_j q_j``, so
  ``s_new / s_old = Π_f (f_new / f_old) · (Σq_old / Σq_new)``; its risk-adjusted weight is
  ``after_cap_i · Π_{f ∈ risk} f_i``. So each factor's ratio ``f_new / f_old`` is its
  multiplicative effect on the weight (before the cap, gross cap and stability steps), and the
  fleet term ``Σq_old / Σq_new`` is what the other agents' evidence did to this one's share.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any

from meta_supervisor.allocate.explain import held_by_band, stability_note
from meta_supervisor.allocate.explain import pp as _pp
from meta_supervisor.allocate.profiles import PROFILES, ProfileMethod
from meta_supervisor.policy.model import Profile
from meta_supervisor.units import CAPITAL_EPS

__all__ = [
    "STEPS",
    "cash_breakdown",
    "compare_decisions",
    "factor_text",
    "factors_caption",
    "failed_gates",
    "fleet_quality",
    "method_of",
    "quality_risk_factors",
    "stability_note",
    "step_notes",
    "weight_history",
]

#: The allocation's steps in the order they apply, with what each one does.
STEPS: tuple[tuple[str, str], ...] = (
    ("quality", "quality score q: product of the quality factors (0 when gated)"),
    ("share_before_risk", "share of the fleet's quality, q / Σq"),
    ("after_cap", "per-agent cap by water-filling, operator caps included"),
    ("after_risk", "times the risk multipliers; what they remove goes to cash"),
    ("after_gross_cap", "gross cap: scaled down, never up"),
    ("after_stability", "stability against the previous decision"),
    ("final", "rounded down so the weights never sum above 1"),
)
_STEP_WORDS = {
    "after_cap": "cap",
    "after_risk": "risk",
    "after_gross_cap": "gross cap",
    "after_stability": "stability",
    "final": "rounding",
}
_MOVED = 5e-4  # a factor that moved less than 0.05% is noise in a diff
_STEP_MOVED = 5e-5  # 0.005 pp of capital


def method_of(profile: str | None) -> ProfileMethod | None:
    """The registered method of a decision's ``profile`` (None for an unknown name)."""
    if profile is None:
        return None
    try:
        return PROFILES[Profile(profile)]
    except ValueError:
        return None


def quality_risk_factors(
    explanation: Mapping[str, Any], profile: str | None
) -> tuple[list[str], list[str]]:
    """The agent's quality factors (their product is ``steps.quality``) and risk factors (their
    product times ``after_cap`` is ``after_risk``), by the profile's register, in its order.

    For a profile this version does not know, every factor except ``cvar`` and ``drawdown`` is
    read as a quality factor (true of every profile so far)."""
    names = [f["factor"] for f in explanation.get("factors", [])]
    method = method_of(profile)
    if method is None:
        risk = [n for n in names if n in ("cvar", "drawdown")]
        return [n for n in names if n not in risk], risk
    return (
        [n for n in method.quality_factors if n in names],
        [n for n in method.risk_factors if n in names],
    )


def _term(value: float) -> str:
    """A factor as a formula shows it: six significant digits, so that the product of the
    terms shown is the value shown to five."""
    return f"{value:.6g}"


def factor_text(name: str, value: float) -> str:
    """A factor's value as shown: ``alpha`` is a base (√ of PnL), the others multipliers."""
    return f"{value:.3f}" if name == "alpha" else f"x{value:.3f}"


def factors_caption(explanation: Mapping[str, Any], profile: str | None = None) -> str:
    """How to read an agent's factors under ``profile``: the quality formula and the risk
    product, by name (the seed's ``alpha`` is a base, √ of PnL; every other factor a
    multiplier)."""
    quality, risk = quality_risk_factors(explanation, profile)
    parts = []
    if quality:
        parts.append("q = " + " × ".join(quality))
    if risk:
        parts.append("risk = " + " × ".join(risk))
    base = "alpha is a base, the others multipliers" if "alpha" in quality else "multipliers"
    return "; ".join(parts) + f"; {base}: x1.00 = no effect"


def failed_gates(explanation: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The gates this agent failed, in the order they were checked."""
    return [g for g in explanation.get("gates", []) if not g["passed"]]


def fleet_quality(decision: Mapping[str, Any]) -> float | None:
    """``Σq``, the fleet's total quality, recovered from any eligible agent's steps."""
    for e in decision["agents"].values():
        steps = e.get("steps", {})
        if steps.get("share_before_risk", 0.0) > 0:
            return steps["quality"] / steps["share_before_risk"]
    return None


def step_notes(
    explanation: Mapping[str, Any],
    total_quality: float | None,
    policy: Mapping[str, Any] | None = None,
    profile: str | None = None,
) -> list[str]:
    """One note per step (same order as :data:`STEPS`) saying what that step did to the weight.

    The quality note is the profile's formula with this agent's factors (``= prior 1 ×
    evidence 2.3 × confidence 1``: their product is the quality), the risk note the risk
    factors whose product scales ``after_cap`` to ``after_risk``. ``policy`` (the decision's
    ``policy`` dict) lets the stability note name the no-trade band and the per-cycle increase
    limit; ``profile`` is the decision's (:func:`quality_risk_factors`).
    """
    steps = explanation["steps"]
    factors = {f["factor"]: f["value"] for f in explanation["factors"]}
    if failed_gates(explanation):
        gate = failed_gates(explanation)[0]["gate"]
        return [f"0: gated by {gate}"] + [""] * (len(STEPS) - 1)
    quality_names, risk_names = quality_risk_factors(explanation, profile)
    quality_terms = " × ".join(f"{n} {_term(factors[n])}" for n in quality_names)
    risk_terms = " × ".join(f"{n} {_term(factors[n])}" for n in risk_names)
    previous = explanation.get("previous_weight")
    notes = []
    for index, (key, _) in enumerate(STEPS):
        delta = steps[key] - steps[STEPS[index - 1][0]] if index > 1 else 0.0
        if key == "quality":
            notes.append(f"= {quality_terms}" if quality_terms else "")
        elif key == "share_before_risk":
            notes.append(f"= q / Σq (Σq = {_term(total_quality)})" if total_quality else "")
        elif key == "after_risk":
            notes.append(f"{_pp(delta)}: × {risk_terms}" if risk_terms else _pp(delta))
        elif key == "after_stability" and previous is not None:
            what = stability_note(explanation, policy)
            shown = "unchanged" if abs(delta) <= CAPITAL_EPS else _pp(delta)
            notes.append(f"{shown}: {what}" if what else shown)
        elif abs(delta) <= CAPITAL_EPS:
            notes.append("unchanged")
        elif key == "after_cap":
            notes.append(f"{_pp(delta)}: " + ("capped" if delta < 0 else "excess of capped agents"))
        else:
            notes.append(_pp(delta))
    return notes


def cash_breakdown(decision: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The cash split by the step that held it back (see the module docstring).

    Returns a list of ``{"cause", "amount", "text"}``; ``amount`` is a fraction of capital.
    """
    agents = list(decision["agents"].values())
    if not agents or all(failed_gates(e) for e in agents):
        return [
            {
                "cause": "no_eligible_agent",
                "amount": float(decision["cash"]),
                "text": "no agent passed the gates",
            }
        ]
    total = {key: math.fsum(e["steps"][key] for e in agents) for key, _ in STEPS[1:]}
    causes = {
        "after_cap": ("cap", "caps with nowhere to send the excess"),
        "after_risk": ("risk", "risk multipliers (CVaR, drawdown) pulled back"),
        "after_gross_cap": ("gross_cap", "gross cap"),
        "after_stability": ("stability", _stability_text(agents, decision.get("policy"))),
        "final": ("rounding", "weights rounded down"),
    }
    parts = []
    for (before, _), (key, _) in pairwise(STEPS[1:]):
        cause, text = causes[key]
        parts.append((cause, total[before] - total[key], text))
    return [{"cause": c, "amount": a, "text": t} for c, a, t in parts if abs(a) > CAPITAL_EPS]


def _stability_text(agents: Sequence[Mapping[str, Any]], policy: Any) -> str:
    """The stability line of the cash breakdown: band holds and increase limits, net."""
    held = limited = 0.0
    for e in agents:
        steps, previous = e["steps"], e.get("previous_weight")
        target = steps["after_gross_cap"]
        kept = target - steps["after_stability"]
        if previous is None or abs(kept) <= CAPITAL_EPS:
            continue
        if held_by_band(target, previous, policy or {}):
            held += kept
        else:
            limited += kept
    parts = []
    if abs(limited) > CAPITAL_EPS:
        parts.append(f"increases limited {_pp(limited)}")
    if abs(held) > CAPITAL_EPS:
        parts.append(f"no-trade-band holds at the previous weight {_pp(held)}")
    detail = "; ".join(parts) if parts else "cap and gross re-checked"
    return f"stability, net ({detail})"


# ---------------------------------------------------------------- history


def weight_history(
    entries: Sequence[tuple[int, str, Mapping[str, Any]]], agent: str | None = None
) -> list[dict[str, Any]]:
    """One row per ``(seq, hash, decision)``: weights of all agents, or one agent in detail."""
    rows = []
    for seq, digest, decision in entries:
        row: dict[str, Any] = {
            "seq": seq,
            "as_of": decision["as_of"],
            "hash": digest,
            "gross": decision["gross"],
            "cash": decision["cash"],
        }
        if agent is None:
            row["weights"] = {n: e["weight"] for n, e in sorted(decision["agents"].items())}
        else:
            e = decision["agents"].get(agent)
            row["agent"] = None if e is None else _agent_row(e)
        rows.append(row)
    return rows


def _agent_row(e: Mapping[str, Any]) -> dict[str, Any]:
    failed = failed_gates(e)
    return {
        "weight": e["weight"],
        "gated_by": failed[0]["gate"] if failed else None,
        "factors": {f["factor"]: f["value"] for f in e["factors"]},
        "override": e.get("override"),
        "summary": e["summary"],
    }


# ---------------------------------------------------------------- diff


def _ratio(new: float, old: float) -> float | None:
    if old > 0 and new > 0:
        return new / old
    return None


def _gate_drivers(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[dict[str, Any]]:
    drivers = []
    before = {g["gate"]: g for g in old["gates"]}
    for gate in new["gates"]:
        was = before.get(gate["gate"])
        if was is None or was["passed"] == gate["passed"]:
            continue
        verdict = "passes now" if gate["passed"] else "fails now"
        drivers.append(
            {
                "kind": "gate",
                "name": gate["gate"],
                "old": was["passed"],
                "new": gate["passed"],
                "effect": None,
                "text": f"gate {gate['gate']} {verdict}: {gate['detail']} (was: {was['detail']})",
            }
        )
    return drivers


def _override_driver(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[dict[str, Any]]:
    before, after = old.get("override"), new.get("override")
    if before == after:
        return []
    if after is None:
        assert before is not None  # before != after
        text = f"operator {before['action']} ended (expired or removed): {before['reason']}"
    elif before is None:
        text = f"operator {_describe_override(after)}"
    else:
        text = f"operator override changed to {_describe_override(after)}"
    driver = {"kind": "override", "name": "override", "old": before, "new": after}
    return [driver | {"effect": None, "text": text}]


def _describe_override(o: Mapping[str, Any]) -> str:
    what = "exclusion" if o["action"] == "exclude" else f"cap at {o['cap']:.2%}"
    return f"{what} by {o['created_by']} until {o['expires_at']}: {o['reason']}"


def _factor_drivers(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[dict[str, Any]]:
    drivers = []
    before = {f["factor"]: f for f in old["factors"]}
    for f in new["factors"]:
        was = before.get(f["factor"])
        if was is None or abs(f["value"] - was["value"]) <= _MOVED * max(1.0, abs(was["value"])):
            continue
        effect = _ratio(f["value"], was["value"])
        on_target = "" if effect is None else f" (weight x{effect:.3f})"
        drivers.append(
            {
                "kind": "factor",
                "name": f["factor"],
                "old": was["value"],
                "new": f["value"],
                "effect": effect,
                "short": f"{f['factor']} {was['value']:.3f} -> {f['value']:.3f}{on_target}",
                "text": f"{f['factor']} {was['value']:.3f} -> {f['value']:.3f}{on_target}: "
                f"{f['reason']}",
            }
        )
    return drivers


def _step_drivers(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[dict[str, Any]]:
    drivers = []
    names = [key for key, _ in STEPS]
    for before, key in pairwise(names[1:]):
        if key == "after_risk":  # the risk factors' own drivers say it
            continue
        was = old["steps"][key] - old["steps"][before]
        now = new["steps"][key] - new["steps"][before]
        if abs(now - was) <= _STEP_MOVED:
            continue
        drivers.append(
            {
                "kind": "step",
                "name": key,
                "old": was,
                "new": now,
                "effect": None,
                "text": f"{_STEP_WORDS[key]} step changed the weight by {_pp(now)} "
                f"(was {_pp(was)})",
            }
        )
    return drivers


def _agent_diff(
    name: str,
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any] | None,
    fleet: tuple[float | None, float | None],
    why_fleet: str = "the other agents' evidence moved",
) -> dict[str, Any]:
    old_w = 0.0 if old is None else float(old["weight"])
    new_w = 0.0 if new is None else float(new["weight"])
    drivers: list[dict[str, Any]] = []
    if old is None or new is None:
        text = "new in this decision" if old is None else "absent from this decision"
        drivers.append(
            {
                "kind": "presence",
                "name": name,
                "old": old is not None,
                "new": new is not None,
                "effect": None,
                "text": text,
            }
        )
    else:
        drivers += _override_driver(old, new) + _gate_drivers(old, new)
        if not failed_gates(old) and not failed_gates(new):
            drivers += _factor_drivers(old, new)
            q_old, q_new = fleet
            if q_old and q_new and abs(q_new / q_old - 1) > _MOVED:
                drivers.append(
                    {
                        "kind": "fleet",
                        "name": "fleet_quality",
                        "old": q_old,
                        "new": q_new,
                        "effect": q_old / q_new,
                        "short": f"fleet quality Σq {q_old:.4g} -> {q_new:.4g} "
                        f"(weight x{q_old / q_new:.3f})",
                        "text": f"fleet quality Σq {q_old:.4g} -> {q_new:.4g} "
                        f"(weight x{q_old / q_new:.3f}): {why_fleet}, so the same quality is a "
                        f"{'larger' if q_new < q_old else 'smaller'} share of the total",
                    }
                )
            drivers += _step_drivers(old, new)
    for d in drivers:
        d.setdefault("short", d["text"])
    return {
        "agent": name,
        "old_weight": old_w,
        "new_weight": new_w,
        "change": new_w - old_w,
        "drivers": drivers,
        "text": _agent_sentence(name, old_w, new_w, drivers),
    }


def _agent_sentence(name: str, old_w: float, new_w: float, drivers: list[dict[str, Any]]) -> str:
    head = f"{name}: {old_w:.2%} -> {new_w:.2%} ({_pp(new_w - old_w)})"
    if not drivers:
        return f"{head}: nothing moved"
    decisive = [d for d in drivers if d["kind"] in ("presence", "override", "gate")]
    if decisive:
        return f"{head}: {decisive[0]['text']}"
    scaled = [d for d in drivers if d["effect"] is not None]
    top = max(scaled, key=lambda d: abs(math.log(d["effect"])))["short"] if scaled else None
    steps = [_STEP_WORDS[d["name"]] for d in drivers if d["kind"] == "step"]
    if abs(new_w - old_w) <= CAPITAL_EPS:
        offset = f", offset by the {' and '.join(steps)} step" if steps else ""
        return f"{head}: unchanged" + (f" (inputs moved, largest {top}{offset})" if top else "")
    if top:
        return f"{head}: largest mover {top}"
    return f"{head}: {drivers[0]['text']}"


def _eligible(decision: Mapping[str, Any], name: str) -> bool:
    e = decision["agents"].get(name)
    return e is not None and not failed_gates(e)


def _why_fleet(old: Mapping[str, Any], new: Mapping[str, Any], names: Sequence[str]) -> str:
    """Why the fleet's total quality moved: agents that left or joined the eligible fleet (a
    gate, an override, presence), else the other agents' evidence."""
    left = [n for n in names if _eligible(old, n) and not _eligible(new, n)]
    joined = [n for n in names if _eligible(new, n) and not _eligible(old, n)]
    parts = []
    if left:
        parts.append(f"{', '.join(left)} left the eligible fleet")
    if joined:
        parts.append(f"{', '.join(joined)} joined it")
    return " and ".join(parts) if parts else "the other agents' evidence moved"


def compare_decisions(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """What changed from ``old`` to ``new``: portfolio, policy keys, and per agent the drivers.

    Per agent: ``old_weight``, ``new_weight``, ``change`` and ``drivers``, each
    ``{"kind", "name", "old", "new", "effect", "short", "text"}``, ``kind`` one of
    ``presence``, ``override``, ``gate``, ``factor``, ``fleet``, ``step``; ``effect`` (factor, fleet
    only) is the multiplicative effect on the pre-cap target (see the module docstring).
    """
    fleet = (fleet_quality(old), fleet_quality(new))
    names = sorted(set(old["agents"]) | set(new["agents"]))
    why = _why_fleet(old, new, names)
    agents = {
        n: _agent_diff(n, old["agents"].get(n), new["agents"].get(n), fleet, why) for n in names
    }
    old_policy, new_policy = old.get("policy", {}), new.get("policy", {})
    policy_changes = {
        k: {"old": old_policy.get(k), "new": new_policy.get(k)}
        for k in sorted(set(old_policy) | set(new_policy))
        if old_policy.get(k) != new_policy.get(k)
    }
    return {
        "cash": {"old": old["cash"], "new": new["cash"]},
        "gross": {"old": old["gross"], "new": new["gross"]},
        "turnover": math.fsum(abs(a["change"]) for a in agents.values()),
        "policy_changes": policy_changes,
        "agents": agents,
    }
