"""The explanation of a decision: per agent, every input, gate, factor and step, in numbers
and words, and the portfolio's headline. Built lazily from the arrays the allocation computed.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from meta_supervisor.allocate.fleet import RANGES, Fleet
from meta_supervisor.allocate.gates import gate_details
from meta_supervisor.allocate.inputs import Override
from meta_supervisor.allocate.portfolio import in_band
from meta_supervisor.allocate.profiles.base import FactorTable, ProfileMethod
from meta_supervisor.allocate.schema import AgentExplanation, Steps
from meta_supervisor.policy.model import Policy
from meta_supervisor.typing import BoolArray, FloatArray
from meta_supervisor.units import CAPITAL_EPS, STEP_EPS

__all__ = [
    "Computed",
    "Explanation",
    "gc_paused",
    "held_by_band",
    "portfolio_reason",
    "pp",
    "stability_note",
]


@dataclass
class Computed:
    """Every number of the decision, one array per quantity (agents in name order)."""

    gates: dict[str, BoolArray]  # gate -> passed, in the explanation's order
    passed: BoolArray
    factors: dict[str, FloatArray]  # factor -> value, quality factors first, in order
    quality: FloatArray  # the profile's quality, 0 where a gate failed
    risk: FloatArray
    fleet: Any  # the profile's fleet-level context (see ProfileFactors)
    extra: dict[str, FloatArray]  # per-agent numbers the reasons quote


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many small acyclic dicts.

    Each of its generational passes walks the growing heap: for 10,000 explanations (about
    half a million objects) that was a third of the build time. Restored even on error.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class Explanation:
    """Builds ``decision.agents`` from the arrays: inputs, notes, gates with details, factors
    with one-line reasons, the weight after every step and a summary, per agent."""

    def __init__(
        self,
        fleet: Fleet,
        computed: Computed,
        method: ProfileMethod,
        steps: dict[str, FloatArray],
        previous: FloatArray | None,
        active: dict[str, Override],
        policy: Policy,
    ) -> None:
        self.fleet, self.computed, self.method, self.steps = fleet, computed, method, steps
        self.previous, self.active, self.policy = previous, active, policy

    def build(self) -> dict[str, AgentExplanation]:
        """Every agent's explanation, in name order."""
        with gc_paused():
            return self._build()

    def _build(self) -> dict[str, AgentExplanation]:
        f, c, policy = self.fleet, self.computed, self.policy
        views, confidence, tails = f.views(), f.confidence(), f.tails()
        problems = f.problems(policy)
        gates = {k: v.tolist() for k, v in c.gates.items()}
        factors = {k: v.tolist() for k, v in c.factors.items()}
        steps = {k: v.tolist() for k, v in self.steps.items()}
        extra = {k: v.tolist() for k, v in c.extra.items()}
        cols = f.columns
        checked = {k: cols[k].checked.tolist() for k in RANGES}
        absent = {k: cols[k].absent.tolist() for k in RANGES}
        raw = {k: v.value.tolist() for k, v in cols.items()}
        previous = None if self.previous is None else self.previous.tolist()
        usable_confidence = (f.has_confidence & ~f.bad_confidence(policy)).tolist()
        table = FactorTable(factors, extra, checked, raw, f.tail_scale, c.fleet, policy)
        codes = f.strategy_code.tolist()
        out: dict[str, AgentExplanation] = {}
        for i, name in enumerate(f.names):
            strategy = f.strategies[codes[i]]
            override = self.active.get(name)
            gate_list = gate_details(i, gates, problems.get(i), checked, override, policy)
            # an unusable multiplier is named by the usable_numbers gate; factors read the prior
            held = confidence.get(name) if usable_confidence[i] else None
            tail = tails.get(strategy)
            agent_factors = self.method.explain(table, i, held, tail, strategy)
            e: AgentExplanation = {
                "agent": name,
                "strategy": strategy,
                "inputs": dict(views[i]),  # a copy: the fingerprint hashes the original
                "notes": _notes({k: absent[k][i] for k in absent}, c.factors),
                "gates": gate_list,
                "factors": agent_factors,
                "override": override.to_dict() if override else None,
                "steps": cast(Steps, {k: v[i] for k, v in steps.items()}),
                "weight": steps["final"][i],
                "previous_weight": previous[i] if previous is not None else None,
                "summary": "",  # below: the summary reads the rest
            }
            e["summary"] = _summary(e, policy, self.method)
            out[name] = e
        return out


def _notes(absent: Mapping[str, bool], factors: Mapping[str, Any]) -> list[str]:
    """What a missing optional input falls back to (``absent``: the value is ``None``), for
    the inputs the profile in use reads (``factors``: its factors; the hit rate and the
    average error are read by the seed profile's ``hit_rate`` and ``sim_integrity`` only)."""
    notes = []
    fallbacks = (
        ("hit_rate", "using 0 (the seed's default)", "hit_rate"),
        ("error_rate", "the error-rate gate is not applied", None),
        ("max_drawdown_bps", "using 0 (no drawdown penalty)", "drawdown"),
    )
    for key, fallback, factor in fallbacks:
        if absent[key] and (factor is None or factor in factors):
            notes.append(f"{key} not reported: {fallback}")
    if absent["avg_abs_error_bps"] and "sim_integrity" in factors:
        notes.append("avg_abs_error_bps not reported: no sim-integrity penalty")
    return notes


def _summary(e: Mapping[str, Any], policy: Policy, method: ProfileMethod) -> str:
    """One line: why this agent got its weight. The profile's factors that move weights
    (:attr:`~meta_supervisor.allocate.profiles.base.ProfileMethod.shown_factors`) are quoted
    where they are not x1.00, at the value the explanation holds: quality factors beside the
    share they made, risk factors after the cap (the order the steps apply)."""
    failed = [g for g in e["gates"] if not g["passed"]]
    if failed:
        return f"gated by {failed[0]['gate']}: {failed[0]['detail']}"
    steps = e["steps"]
    values = {f["factor"]: f["value"] for f in e["factors"]}
    moved = [n for n in method.shown_factors if _moves(values.get(n))]
    quality = [f"{n} x{values[n]:.2f}" for n in moved if n not in method.risk_factors]
    risk = [f"{n} x{values[n]:.2f}" for n in moved if n in method.risk_factors]
    by = f" ({', '.join(quality)})" if quality else ""
    parts = [f"{steps['share_before_risk']:.1%} on quality{by}"]
    if steps["after_cap"] + STEP_EPS < steps["share_before_risk"]:
        parts.append(f"capped at {steps['after_cap']:.1%}")
    elif steps["after_cap"] > steps["share_before_risk"] + STEP_EPS:
        extra = steps["after_cap"] - steps["share_before_risk"]
        parts.append(f"+{extra:.1%} excess from capped agents")
    parts += risk
    if abs(steps["after_gross_cap"] - steps["after_risk"]) > STEP_EPS:
        parts.append("gross cap")
    if abs(steps["after_stability"] - steps["after_gross_cap"]) > STEP_EPS:
        limits = {
            "no_trade_band": policy.no_trade_band,
            "no_trade_band_relative": policy.no_trade_band_relative,
            "max_increase_per_cycle": policy.max_increase_per_cycle,
        }
        note = stability_note(e, limits) or "stability step"
        # The table's one-liner keeps the verdict; explain/memo give the numbers.
        parts.append("held (move inside the no-trade band)" if note.startswith("held") else note)
    if e.get("override"):
        o = e["override"]
        cap = "" if o.get("cap") is None else f" {o['cap']:.1%}"
        parts.append(f"operator cap{cap} until {o['expires_at']}: {o['reason']}")
    return ", ".join(parts) + f" -> {steps['final']:.2%}"


def _moves(value: float | None) -> bool:
    """Whether a multiplier shows as moving the weight at two decimals (x1.00 does not)."""
    return value is not None and f"{value:.2f}" != "1.00"


def portfolio_reason(
    total_q: float,
    water: np.ndarray,
    after_cap: np.ndarray,
    after_risk: np.ndarray,
    gross: float,
    excess_to_cash: bool = False,
) -> str:
    """The headline: what held capital back before the stability step and rounding
    (``water``: shares after the per-agent cap, before operator caps; ``excess_to_cash``: the
    policy's ``cap_excess = "cash"``). The final split of the cash is
    :func:`meta_supervisor.views.attribution.cash_breakdown`'s."""
    if total_q <= 0:
        return "no agent passed the gates: everything in cash"
    reasons = []
    by_cap = 1.0 - float(water.sum())
    by_operator = float(water.sum() - after_cap.sum())
    by_risk = float(after_cap.sum() - after_risk.sum())
    if by_risk > CAPITAL_EPS:
        reasons.append(f"risk penalties held back {by_risk:.2%} of capital")
    if by_cap > CAPITAL_EPS:
        why = "cap_excess = cash" if excess_to_cash else "too few agents to place it"
        reasons.append(f"the per-agent cap held back {by_cap:.2%} ({why})")
    if by_operator > CAPITAL_EPS:
        reasons.append(f"operator caps held back {by_operator:.2%}")
    if not reasons:
        return "nothing held back before the stability step"
    return "; ".join(reasons)


def pp(value: float) -> str:
    points = value * 100
    return f"{points:+.2f} pp" if abs(points) >= 0.005 or points == 0 else f"{points:+.4f} pp"


def stability_note(
    explanation: Mapping[str, Any], policy: Mapping[str, Any] | None = None
) -> str | None:
    """What the stability step did to this agent, in words (None when there is nothing to say).

    With ``p`` the previous weight, ``t`` the weight after the gross cap (the target) and ``s``
    the weight after stability (:func:`meta_supervisor.allocate.portfolio.smooth`): a move inside
    the
    no-trade band (:func:`meta_supervisor.allocate.portfolio.in_band`) holds the previous weight;
    ``t > p + max_increase``
    limits the increase; ``t < p`` applies the decrease in full. ``policy`` gives
    ``no_trade_band``, ``no_trade_band_relative`` and ``max_increase_per_cycle``.
    """
    previous = explanation.get("previous_weight")
    steps = explanation["steps"]
    target, after = steps["after_gross_cap"], steps["after_stability"]
    if previous is None:
        return None
    policy = policy or {}
    band = policy.get("no_trade_band")
    limit = policy.get("max_increase_per_cycle")
    move = target - previous
    if held_by_band(target, previous, policy):
        relative = policy.get("no_trade_band_relative")
        also = f" and {relative:.0%} of the position" if relative is not None else ""
        return (
            f"held at previous {previous:.2%} (move of {pp(move)} inside the no-trade band "
            f"{(band or 0.0) * 100:.2f} pp{also})"
        )
    if limit is not None and move > limit:
        return f"increase limited to +{limit * 100:.2f} pp per cycle (target {target:.2%})"
    if move < 0 and abs(after - target) <= CAPITAL_EPS:
        return f"decrease from {previous:.2%} applied in full"
    if abs(after - target) <= CAPITAL_EPS:
        return None
    return f"moved from the target {target:.2%} (previous {previous:.2%})"


def held_by_band(target: float, previous: float, policy: Mapping[str, Any]) -> bool:
    """Whether the no-trade band held this move (:func:`meta_supervisor.allocate.portfolio.in_band`;
    decisions recorded before ``no_trade_band_relative`` existed used the absolute band)."""
    band = policy.get("no_trade_band")
    if band is None:
        return False
    held = in_band(
        np.array([target]), np.array([previous]), band, policy.get("no_trade_band_relative")
    )
    return bool(held[0])
