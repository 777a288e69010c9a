"""The allocation: per-agent statistics + confidence + strategy tails + policy -> decision.

Pure: no file, no clock (``as_of`` is an argument). The *seed profile* (DESIGN.md,
"Allocation") made correct, step by step; every step's output is kept in the explanation:

1. **gates** (each a named reason): operator exclusion (with reason and expiry), ``decision:
   "KILL"``, unusable numbers (non-numeric, NaN, inf, hit/error rate outside [0, 1], negative
   errors or counts), ``error_rate > max_error_rate``, ``pnl_sum_bps ≤ 0``, fewer than
   ``min_records`` records (only when the count is known).
2. **quality** ``q = sqrt(pnl_sum) · (0.6 + hit_rate) · confidence · 1/(1 + avg_abs_error/75)``.
3. **risk** ``r = cvar_mult · dd_mult`` with ``cvar_mult = max(0.25, 1 + 0.015·cvar)`` for a
   strategy CVaR95 of the gap ``cvar < 0`` (bps) and ``dd_mult = max(0.4, 1 + 0.01·dd)`` for a
   drawdown ``dd < 0`` (bps). A positive drawdown handed in is read as its magnitude.
4. **cap** the quality shares ``s_i = q_i / Σ_j q_j`` by water-filling
   (:func:`meta_supervisor.portfolio.cap_water_fill`): no share above the cap, the excess to the
   uncapped agents in proportion to quality, to cash when all are capped; then operator caps.
5. **pull-back** ``w_i = capped(s)_i · r_i``: normalising by the pre-risk total sends the capital
   that risk removes to cash, not to the other agents.

   DESIGN.md lists the pull-back before the cap. Capping *after* the risk multipliers let the
   water-filling hand a capped agent's excess to the agents that risk had just cut (in the demo
   a tail-penalised agent went from 0.9% after risk to 2.6% after the cap), undoing the pull-back.
   Capping the quality shares first keeps the cap's guarantees (``w_i ≤ cap`` since ``r_i ≤ 1``,
   no rank inversion by quality) and makes an agent's risk multiplier move only its own weight.
6. **gross cap**: scale down, never up.
7. **stability** against the previous decision (:func:`meta_supervisor.portfolio.smooth`); the
   cap and the gross are re-checked afterwards. No previous decision: the target itself.
8. **rounding down** so that ``Σ ≤ 1``; ``cash = 1 − Σ``.

Missing optional inputs never gate an agent: a missing ``hit_rate``, ``error_rate`` or
``max_drawdown_bps`` takes the seed's default (0), a missing ``avg_abs_error_bps`` applies no
sim-integrity penalty (the original system silently used 999), and each is said in the
explanation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from meta_supervisor import evidence
from meta_supervisor.decision import Decision, fingerprint, iso
from meta_supervisor.policy import Policy, Profile
from meta_supervisor.portfolio import apply_gross_cap, cap_water_fill, round_down, smooth

__all__ = ["Confidence", "Override", "Tail", "allocate"]


@dataclass(frozen=True)
class Tail:
    """A strategy's tail: raw and used CVaR95 of the gap (bps, ≤ 0 is bad) over ``n`` gaps."""

    strategy: str
    n: int
    gap_cvar95_bps: float | None
    gap_cvar95_used_bps: float | None
    shrunk: bool = False
    worst_gap: float | None = None
    mean_gap: float | None = None
    window_hours: float | None = None


@dataclass(frozen=True)
class Confidence:
    """An agent's confidence multiplier and the evidence behind it."""

    multiplier: float
    n_evidence: int = 0
    evidence_weight: float = 0.0
    error_ratio: float | None = None


@dataclass(frozen=True)
class Override:
    """An operator's action on one agent, active while ``as_of < expires_at``.

    ``action`` is ``"exclude"`` (weight 0) or ``"cap"`` (weight at most ``cap``).
    """

    agent: str
    action: str
    reason: str
    expires_at: datetime
    cap: float | None = None
    created_by: str = "operator"

    def active(self, as_of: datetime) -> bool:
        """True while the override applies."""
        return as_of < self.expires_at

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "agent": self.agent,
            "action": self.action,
            "reason": self.reason,
            "expires_at": iso(self.expires_at),
            "cap": self.cap,
            "created_by": self.created_by,
        }


# ---------------------------------------------------------------- reading inputs


def _number(value: Any) -> tuple[float | None, str | None]:
    """``(number, None)``, ``(None, None)`` when absent, or ``(None, problem)`` when unusable."""
    if value is None:
        return None, None
    if isinstance(value, bool):
        return None, f"is a boolean ({value!r}), not a number"
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None, f"is not a number ({value[:40]!r})"
    else:
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None, f"is not a number ({type(value).__name__})"
    if not math.isfinite(number):
        return None, f"is not finite ({number!r})"
    return number, None


@dataclass
class _Inputs:
    pnl_sum: float | None
    hit_rate: float | None
    error_rate: float | None
    avg_abs_error: float | None
    max_drawdown: float | None
    n_records: int | None
    strategy: str
    killed: bool
    problems: list[str]
    notes: list[str]


_RANGES: dict[str, tuple[float, float]] = {
    "pnl_sum_bps": (-math.inf, math.inf),
    "hit_rate": (0.0, 1.0),
    "error_rate": (0.0, 1.0),
    "avg_abs_error_bps": (0.0, math.inf),
    "max_drawdown_bps": (-math.inf, math.inf),
    "n_records": (0.0, math.inf),
}


def _read_inputs(stats: Mapping[str, Any]) -> _Inputs:
    values: dict[str, float | None] = {}
    problems: list[str] = []
    for key, (low, high) in _RANGES.items():
        number, problem = _number(stats.get(key))
        if problem is None and number is not None and not low <= number <= high:
            problem = f"is outside [{low:g}, {high:g}] ({number:g})"
        if problem:
            problems.append(f"{key} {problem}")
            number = None
        values[key] = number
    notes = []
    for key, default in (("hit_rate", 0.0), ("error_rate", None), ("max_drawdown_bps", 0.0)):
        if key not in stats or stats.get(key) is None:
            notes.append(f"{key} not reported: using {default if default is not None else 'no'}")
    if stats.get("avg_abs_error_bps") is None:
        notes.append("avg_abs_error_bps not reported: no sim-integrity penalty")
    strategy = stats.get("strategy")
    strategy = str(strategy).strip() if strategy not in (None, "") else "unclassified"
    decision = stats.get("decision")
    killed = isinstance(decision, str) and decision.strip().upper() == "KILL"
    dd = values["max_drawdown_bps"]
    n_records = values["n_records"]
    return _Inputs(
        pnl_sum=values["pnl_sum_bps"],
        hit_rate=values["hit_rate"] if values["hit_rate"] is not None else 0.0,
        error_rate=values["error_rate"],
        avg_abs_error=values["avg_abs_error_bps"],
        max_drawdown=-abs(dd) if dd is not None else 0.0,
        n_records=int(n_records) if n_records is not None else None,
        strategy=strategy,
        killed=killed,
        problems=problems,
        notes=notes,
    )


# ---------------------------------------------------------------- factors


def _gates(
    name: str, inputs: _Inputs, policy: Policy, override: Override | None
) -> list[dict[str, Any]]:
    excluded = override is not None and override.action == "exclude"
    gates = [
        {
            "gate": "operator_exclusion",
            "passed": not excluded,
            "detail": (
                f"excluded by {override.created_by} until {iso(override.expires_at)}: "
                f"{override.reason}"
                if excluded and override is not None
                else "no active exclusion"
            ),
        },
        {
            "gate": "kill",
            "passed": not inputs.killed,
            "detail": "stats say decision KILL" if inputs.killed else "not killed",
        },
        {
            "gate": "usable_numbers",
            "passed": not inputs.problems,
            "detail": "; ".join(inputs.problems) if inputs.problems else "all numbers usable",
        },
    ]
    err = inputs.error_rate
    gates.append(
        {
            "gate": "error_rate",
            "passed": err is None or err <= policy.max_error_rate,
            "detail": (
                "no telemetry: not gated"
                if err is None
                else f"error rate {err:.1%} vs limit {policy.max_error_rate:.1%}"
            ),
        }
    )
    n = inputs.n_records
    gates.append(
        {
            "gate": "min_records",
            "passed": n is None or n >= policy.min_records,
            "detail": (
                "record count not given: not gated"
                if n is None
                else f"{n} records in window vs minimum {policy.min_records}"
            ),
        }
    )
    pnl = inputs.pnl_sum
    gates.append(
        {
            "gate": "positive_pnl",
            "passed": pnl is not None and pnl > 0,
            "detail": "pnl_sum_bps missing" if pnl is None else f"pnl_sum {pnl:+.1f} bps",
        }
    )
    return gates


def _over(n_records: int | None, hours: float) -> str:
    counted = "" if n_records is None else f" {n_records} records"
    return f" over{counted} in the last {hours:g} h"


def _at_floor(mult: float, floor: float) -> str:
    return f"; at its floor x{floor:g}" if mult <= floor else ""


def _factor(name: str, value: float, reason: str) -> dict[str, Any]:
    return {"factor": name, "value": value, "reason": reason}


def _quality_factors(
    inputs: _Inputs, confidence: Confidence | None, policy: Policy
) -> list[dict[str, Any]]:
    pnl = max(inputs.pnl_sum or 0.0, 0.0)
    hit = inputs.hit_rate or 0.0
    factors = [
        _factor(
            "alpha",
            math.sqrt(pnl),
            f"sqrt of pnl_sum {pnl:.1f} bps{_over(inputs.n_records, policy.lookback_hours)} "
            "(concave: steady gains count more than one big win)",
        ),
        _factor(
            "hit_rate",
            policy.hit_rate_offset + hit,
            f"{policy.hit_rate_offset:g} + hit rate {hit:.0%} (share of records with PnL > 0)",
        ),
    ]
    if confidence is None:
        factors.append(
            _factor(
                "confidence",
                policy.confidence_prior,
                "no calibration evidence: prior (a new agent is not punished)",
            )
        )
    else:
        ratio = (
            ""
            if confidence.error_ratio is None
            else f", mean |gap|/σ {confidence.error_ratio:.2f} vs tolerance "
            f"{policy.confidence_tolerance:g}"
        )
        factors.append(
            _factor(
                "confidence",
                confidence.multiplier,
                f"{confidence.n_evidence} records (weight {confidence.evidence_weight:.1f}){ratio}"
                f", evidence half-life {policy.confidence_half_life_hours:g} h",
            )
        )
    if inputs.avg_abs_error is None:
        factors.append(_factor("sim_integrity", 1.0, "avg |gap| not reported: no penalty"))
    else:
        scale = policy.sim_error_scale_bps
        factors.append(
            _factor(
                "sim_integrity",
                1.0 / (1.0 + inputs.avg_abs_error / scale),
                f"avg |gap| {inputs.avg_abs_error:.1f} bps vs scale {scale:g} bps "
                "(how far results miss the simulator's forecasts)",
            )
        )
    return factors


def _risk_factors(inputs: _Inputs, tail: Tail | None, policy: Policy) -> list[dict[str, Any]]:
    factors = []
    used = None if tail is None else tail.gap_cvar95_used_bps
    if tail is None or used is None:
        factors.append(_factor("cvar", 1.0, f"no tail evidence for strategy {inputs.strategy}"))
    else:
        mult = max(policy.cvar_floor, 1.0 + used * policy.cvar_k) if used < 0 else 1.0
        window = f" in the last {tail.window_hours:g} h" if tail.window_hours else ""
        shrink = (
            f" (raw {tail.gap_cvar95_bps:+.1f} shrunk: n < {policy.cvar_min_samples})"
            if tail.shrunk and tail.gap_cvar95_bps is not None
            else ""
        )
        factors.append(
            _factor(
                "cvar",
                mult,
                f"strategy {inputs.strategy}, tail {used:+.1f} bps over {tail.n} records"
                f"{window}{shrink}{_at_floor(mult, policy.cvar_floor)}",
            )
        )
    dd = inputs.max_drawdown or 0.0
    mult = max(policy.drawdown_floor, 1.0 + dd * policy.drawdown_k) if dd < 0 else 1.0
    factors.append(
        _factor(
            "drawdown",
            mult,
            f"max drawdown {dd:+.1f} bps in window (last {policy.lookback_hours:g} h)"
            f"{_at_floor(mult, policy.drawdown_floor)}",
        )
    )
    return factors


def _active_overrides(overrides: Iterable[Override], as_of: datetime) -> dict[str, Override]:
    """The binding active override per agent: any exclusion, else the tightest cap.

    Keeping the latest-expiring one let a week-long cap shadow an hour-long exclusion.
    """
    active: dict[str, Override] = {}
    for o in sorted(overrides, key=lambda o: o.expires_at):
        if not o.active(as_of):
            continue
        held = active.get(o.agent)
        if held is None or _strictness(o) < _strictness(held):
            active[o.agent] = o
    return active


def _strictness(o: Override) -> tuple[int, float]:
    return (0, 0.0) if o.action == "exclude" else (1, math.inf if o.cap is None else o.cap)


def _product(factors: list[dict[str, Any]]) -> float:
    return math.prod(f["value"] for f in factors)


# ---------------------------------------------------------------- the allocation


def allocate(
    agent_stats: Mapping[str, Mapping[str, Any]],
    *,
    as_of: datetime,
    policy: Policy | None = None,
    confidence: Mapping[str, Confidence] | None = None,
    tails: Mapping[str, Tail] | None = None,
    previous: Mapping[str, float] | None = None,
    overrides: list[Override] | tuple[Override, ...] = (),
    previous_hash: str | None = None,
) -> Decision:
    """Decide each agent's share of capital as of ``as_of``; see the module docstring.

    Parameters
    ----------
    agent_stats : {agent: stats}
        The seed's stats dict per agent (``pnl_sum_bps, hit_rate, error_rate,
        avg_abs_error_bps, strategy, max_drawdown_bps``), optionally ``n_records`` and
        ``decision``.
    confidence : {agent: Confidence}, optional
        Agents absent get ``policy.confidence_prior``.
    tails : {strategy: Tail}, optional
        Strategies absent get no CVaR penalty.
    previous : {agent: weight}, optional
        The previous decision's weights, for the stability step.
    overrides : list of Override
        Only those active at ``as_of`` apply.
    """
    policy = policy or Policy()
    confidence = confidence or {}
    tails = tails or {}
    active = _active_overrides(overrides, as_of)
    names = sorted(agent_stats)
    fleet = evidence.fleet_evidence(agent_stats, policy)  # used by the evidence profile only
    explanations: dict[str, dict[str, Any]] = {}
    quality = np.zeros(len(names))
    risk = np.ones(len(names))
    for i, name in enumerate(names):
        inputs = _read_inputs(agent_stats[name])
        override = active.get(name)
        gates = _gates(name, inputs, policy, override)
        if policy.profile is Profile.EVIDENCE:
            # A loss inside the noise is no evidence: no pnl_sum gate; the tilt reads it.
            gates = [g for g in gates if g["gate"] != "positive_pnl"]
            q_factors = evidence.quality_factors(
                agent_stats[name], confidence.get(name), fleet, policy
            )
            r_factors = evidence.risk_factors(agent_stats[name], tails.get(inputs.strategy), policy)
        else:
            q_factors = _quality_factors(inputs, confidence.get(name), policy)
            r_factors = _risk_factors(inputs, tails.get(inputs.strategy), policy)
        passed = all(g["passed"] for g in gates)
        quality[i] = _product(q_factors) if passed else 0.0
        risk[i] = _product(r_factors)
        explanations[name] = {
            "agent": name,
            "strategy": inputs.strategy,
            "inputs": _inputs_view(agent_stats[name], inputs),
            "notes": inputs.notes,
            "gates": gates,
            "factors": q_factors + r_factors,
            "override": override.to_dict() if override else None,
        }
    total_q = float(quality.sum())
    share = quality / total_q if total_q > 0 else np.zeros_like(quality)

    caps = np.full(len(names), policy.max_weight)
    for i, name in enumerate(names):
        override = active.get(name)
        if override is not None and override.action == "cap" and override.cap is not None:
            caps[i] = min(caps[i], override.cap)
    after_cap = np.minimum(cap_water_fill(share, policy.max_weight), caps)
    after_risk = after_cap * risk
    after_gross = apply_gross_cap(after_risk, policy.gross_cap)

    prev = np.array([float((previous or {}).get(n, 0.0)) for n in names])
    if previous is None:
        after_stability = after_gross.copy()
    else:
        after_stability = smooth(
            after_gross, prev, policy.max_increase_per_cycle, policy.no_trade_band
        )
        after_stability = np.minimum(after_stability, caps)
        after_stability = np.where(quality > 0, after_stability, 0.0)
        after_stability = apply_gross_cap(after_stability, policy.gross_cap)
    final = round_down(after_stability, policy.weight_decimals)

    weights = {n: float(w) for n, w in zip(names, final, strict=True) if w > 0}
    for i, name in enumerate(names):
        steps = {
            "quality": float(quality[i]),
            "share_before_risk": float(share[i]),
            "after_cap": float(after_cap[i]),
            "after_risk": float(after_risk[i]),
            "after_gross_cap": float(after_gross[i]),
            "after_stability": float(after_stability[i]),
            "final": float(final[i]),
        }
        explanations[name]["steps"] = steps
        explanations[name]["weight"] = float(final[i])
        explanations[name]["previous_weight"] = float(prev[i]) if previous is not None else None
        explanations[name]["summary"] = _summary(explanations[name], policy)

    gross = math.fsum(weights.values())
    portfolio = {
        "gross": gross,
        "cash": max(0.0, 1.0 - gross),
        "cash_from_risk": max(0.0, float(after_cap.sum() - after_risk.sum())),
        "cash_from_caps": max(0.0, 1.0 - float(after_cap.sum())) if total_q > 0 else 0.0,
        "n_agents": len(names),
        "n_allocated": len(weights),
        "n_gated": sum(1 for e in explanations.values() if not _passed(e)),
        "binding_caps": [n for i, n in enumerate(names) if share[i] > caps[i] + 1e-15],
        "gross_cap_binding": bool(after_risk.sum() > policy.gross_cap + 1e-12),
        "turnover": float(np.abs(final - prev).sum()) if previous is not None else None,
        "reason": _portfolio_reason(total_q, after_cap, after_risk, gross),
    }
    inputs_blob = {
        "agent_stats": {n: _inputs_view(agent_stats[n], None) for n in names},
        "confidence": {k: vars(v) for k, v in sorted(confidence.items())},
        "tails": {k: vars(v) for k, v in sorted(tails.items())},
        "previous": dict(sorted((previous or {}).items())) if previous is not None else None,
        "overrides": [o.to_dict() for o in active.values()],
    }
    provenance = {
        "as_of": iso(as_of),
        "policy_fingerprint": policy.fingerprint(),
        "inputs_fingerprint": fingerprint(inputs_blob),
        "previous_decision_hash": previous_hash,
    }
    return Decision(
        as_of=iso(as_of),
        profile=str(policy.profile.value),
        weights=weights,
        cash=portfolio["cash"],
        gross=gross,
        agents=explanations,
        portfolio=portfolio,
        provenance=provenance,
        policy=policy.model_dump(mode="json"),
    )


def _inputs_view(raw: Mapping[str, Any], inputs: _Inputs | None) -> dict[str, Any]:
    """The raw inputs, JSON-safe (non-finite numbers and odd types become strings)."""
    view: dict[str, Any] = {}
    for key in sorted(raw, key=str):
        value = raw[key]
        if isinstance(value, bool) or value is None or isinstance(value, str):
            view[str(key)] = value
        elif isinstance(value, int | float):
            view[str(key)] = float(value) if math.isfinite(value) else repr(float(value))
        elif isinstance(value, datetime):
            view[str(key)] = iso(value)
        else:
            view[str(key)] = repr(value)[:80]
    return view


def _passed(explanation: Mapping[str, Any]) -> bool:
    return all(g["passed"] for g in explanation["gates"])


def _summary(e: Mapping[str, Any], policy: Policy) -> str:
    """One line: why this agent got its weight."""
    failed = [g for g in e["gates"] if not g["passed"]]
    if failed:
        return f"gated by {failed[0]['gate']}: {failed[0]['detail']}"
    steps = e["steps"]
    parts = [f"{steps['share_before_risk']:.1%} on quality"]
    if steps["after_cap"] + 1e-12 < steps["share_before_risk"]:
        parts.append(f"capped at {steps['after_cap']:.1%}")
    elif steps["after_cap"] > steps["share_before_risk"] + 1e-12:
        extra = steps["after_cap"] - steps["share_before_risk"]
        parts.append(f"+{extra:.1%} excess from capped agents")
    penalties = [f for f in e["factors"] if f["factor"] in ("cvar", "drawdown") and f["value"] < 1]
    for f in penalties:
        parts.append(f"{f['factor']} x{f['value']:.2f}")
    if abs(steps["after_gross_cap"] - steps["after_risk"]) > 1e-12:
        parts.append("gross cap")
    if abs(steps["after_stability"] - steps["after_gross_cap"]) > 1e-12:
        prev = e.get("previous_weight") or 0.0
        parts.append(f"stability (was {prev:.1%})")
    if e.get("override"):
        o = e["override"]
        cap = "" if o.get("cap") is None else f" {o['cap']:.1%}"
        parts.append(f"operator cap{cap} until {o['expires_at']}: {o['reason']}")
    return ", ".join(parts) + f" -> {steps['final']:.2%}"


def _portfolio_reason(
    total_q: float, after_cap: np.ndarray, after_risk: np.ndarray, gross: float
) -> str:
    if total_q <= 0:
        return "no agent passed the gates: everything in cash"
    reasons = []
    by_caps = 1.0 - float(after_cap.sum())
    by_risk = float(after_cap.sum() - after_risk.sum())
    if by_risk > 1e-9:
        reasons.append(f"risk penalties held back {by_risk:.1%} of capital")
    if by_caps > 1e-9:
        reasons.append(f"caps held back {by_caps:.1%} (too few agents to place it)")
    reasons.append(f"deployed {gross:.1%}")
    return "; ".join(reasons)
