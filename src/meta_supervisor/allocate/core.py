"""The allocation: per-agent statistics + confidence + strategy tails + policy -> decision.

Pure: no file, no clock (``as_of`` is an argument). The pipeline is the same for every
profile; a profile (:mod:`meta_supervisor.allocate.profiles`: ``select``, the default,
``evidence``, and ``seed``, DESIGN.md's "Allocation" made correct) only supplies the quality and
risk factors.
Every step's output is kept in the explanation (:mod:`meta_supervisor.allocate.explain`):

1. **gates** (:mod:`meta_supervisor.allocate.gates`, each a named reason): operator exclusion
   (with reason and expiry), ``decision: "KILL"``, unusable numbers, ``error_rate >
   max_error_rate``, fewer than ``min_records`` records (only when the count is known), and the
   profile's own gates (the seed's ``pnl_sum_bps ≤ 0``).
2. **quality** ``q_i``, the profile's (seed: ``sqrt(pnl_sum) · (0.6 + hit_rate) · confidence ·
   1/(1 + avg_abs_error/75)``), 0 for a gated agent.
3. **risk** ``r_i ∈ [0, 1]``, the profile's (seed: ``max(0.25, 1 + 0.015·cvar) · max(0.4, 1 +
   0.01·dd)``, bps, negative = bad).
4. **cap** the quality shares ``s_i = q_i / Σ_j q_j`` by water-filling
   (:func:`meta_supervisor.allocate.portfolio.cap_water_fill`): no share above the cap, the excess
   to the uncapped agents in proportion to quality, to cash when all are capped; then operator caps.
   With ``cap_excess = "cash"`` the shares are clipped at the cap and the excess stays in cash.
5. **pull-back** ``w_i = capped(s)_i · r_i``: normalising by the pre-risk total sends the capital
   that risk removes to cash, not to the other agents.

   DESIGN.md lists the pull-back before the cap. Capping *after* the risk multipliers let the
   water-filling hand a capped agent's excess to the agents that risk had just cut (in the demo
   a tail-penalised agent went from 0.9% after risk to 2.6% after the cap), undoing the pull-back.
   Capping the quality shares first keeps the cap's guarantees (``w_i ≤ cap`` since ``r_i ≤ 1``,
   no rank inversion by quality) and makes an agent's risk multiplier move only its own weight.
6. **gross cap**: scale down, never up.
7. **stability** against the previous decision (:func:`meta_supervisor.allocate.portfolio.smooth`);
   the cap and the gross are re-checked afterwards. No previous decision: the target itself.
8. **rounding down** so that ``Σ ≤ 1``; ``cash = 1 − Σ``.

Missing optional inputs never gate an agent: a missing ``hit_rate``, ``error_rate`` or
``max_drawdown_bps`` takes the seed's default (0), a missing ``avg_abs_error_bps`` applies no
sim-integrity penalty (the original system silently used 999), and each is said in the
explanation.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl

from meta_supervisor.allocate.decision import Decision, fingerprint, iso
from meta_supervisor.allocate.explain import Computed, Explanation, gc_paused, portfolio_reason
from meta_supervisor.allocate.fleet import Fleet, fleet_from_dicts, fleet_from_frames
from meta_supervisor.allocate.gates import PROFILE_GATES, safety_gates
from meta_supervisor.allocate.inputs import Confidence, Override, Tail
from meta_supervisor.allocate.portfolio import apply_gross_cap, cap_water_fill, round_down, smooth
from meta_supervisor.allocate.profiles import ProfileMethod, method_for
from meta_supervisor.allocate.recipe import Recipe, encodable
from meta_supervisor.policy.model import CapExcess, Policy
from meta_supervisor.signals.persistence import Persistence
from meta_supervisor.typing import BoolArray
from meta_supervisor.units import STEP_EPS

__all__ = ["allocate", "allocate_frames", "replay"]


# ---------------------------------------------------------------- gates and factors


def _compute(
    f: Fleet,
    method: ProfileMethod,
    policy: Policy,
    excluded: BoolArray,
    persistence: Persistence | None = None,
) -> Computed:
    # Hostile numbers overflow (1e308 / 1e-10): inf, as Python's floats give, without warnings.
    with np.errstate(all="ignore"):
        gates = safety_gates(f, policy, excluded)
        for gate in method.gates:
            gates[gate] = PROFILE_GATES[gate](f, policy)
        passed = np.logical_and.reduce(list(gates.values()))
        # An unusable multiplier is gated above; the arithmetic reads the prior in its place.
        usable = f.has_confidence & ~f.bad_confidence(policy)
        conf = np.where(usable, f.confidence_multiplier, policy.confidence_prior)
        result = method.compute(f, conf, policy, persistence)
        return Computed(
            gates=gates,
            passed=passed,
            factors=result.factors,
            quality=np.where(passed, result.quality, 0.0),
            risk=result.risk,
            fleet=result.fleet,
            extra=result.extra,
        )


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
    persistence: Persistence | None = None,
) -> Decision:
    """Decide each agent's share of capital as of ``as_of``; see the module docstring.

    Parameters
    ----------
    agent_stats : {agent: stats}
        The seed's stats dict per agent (``pnl_sum_bps, hit_rate, error_rate,
        avg_abs_error_bps, strategy, max_drawdown_bps``), optionally ``n_records`` and
        ``decision``. Any value may be hostile (a string, NaN, a list): it gates the agent
        with the reason.
    confidence : {agent: Confidence}, optional
        Agents absent get ``policy.confidence_prior``.
    tails : {strategy: Tail}, optional
        Strategies absent get no CVaR penalty.
    previous : {agent: weight}, optional
        The previous decision's weights, for the stability step.
    overrides : list of Override
        Only those active at ``as_of`` apply.
    persistence : Persistence, optional
        The evidence profile's learned tilt strength
        (:func:`meta_supervisor.signals.persistence.persistence` of the ledger as of ``as_of``);
        without it the profile uses the cross-sectional signal share. Ignored by the seed
        profile.

    Returns
    -------
    Decision
        Its per-agent explanations (``decision.agents``) and the inputs fingerprint are built
        on first access; weights, cash, gross and portfolio are computed here.
    """
    policy = policy or Policy()
    method = method_for(policy.profile)
    fleet = fleet_from_dicts(agent_stats, confidence or {}, tails or {}, policy, method.keys)
    return _decide(fleet, method, as_of, policy, previous, overrides, previous_hash, persistence)


def allocate_frames(
    stats: pl.DataFrame,
    confidence: pl.DataFrame | None = None,
    tails: pl.DataFrame | None = None,
    *,
    as_of: datetime,
    policy: Policy | None = None,
    previous: Mapping[str, float] | None = None,
    overrides: list[Override] | tuple[Override, ...] = (),
    previous_hash: str | None = None,
    persistence: Persistence | None = None,
) -> Decision:
    """:func:`allocate` on the cycle's frames, read as columns (no dict per agent).

    Parameters
    ----------
    stats : polars.DataFrame
        One row per agent (``agent`` unique), columns as
        :func:`meta_supervisor.signals.stats.agent_stats`
        returns them (any subset of the seed's statistics; a numeric column's null is "not
        reported"). Every column shows in the explanation's inputs.
    confidence : polars.DataFrame, optional
        :func:`meta_supervisor.signals.confidence.confidence_multipliers` (``agent, confidence,
        n_evidence, evidence_weight, error_ratio``).
    tails : polars.DataFrame, optional
        :func:`meta_supervisor.signals.tails.strategy_tails`; each tail's window is
        ``policy.cvar_lookback_hours``.

    Returns
    -------
    Decision
        Byte for byte the decision :func:`allocate` gives on the same rows as dicts (what
        :func:`meta_supervisor.cycle.run.cycle_inputs` builds).
    """
    policy = policy or Policy()
    method = method_for(policy.profile)
    fleet = fleet_from_frames(stats, confidence, tails, policy, method.keys)
    decision = _decide(
        fleet, method, as_of, policy, previous, overrides, previous_hash, persistence
    )
    if not encodable(stats, confidence, tails):
        return decision  # kept with its explanations (a column a recipe cannot hold)
    recipe = Recipe(
        stats,
        confidence,
        tails,
        as_of,
        policy,
        None if previous is None else dict(previous),
        tuple(o for o in overrides if o.active(as_of)),
        previous_hash,
        persistence,
    )
    object.__setattr__(decision, "recipe", recipe)
    return decision


def replay(recipe: Recipe) -> Decision:
    """The decision ``recipe`` was taken from (:func:`allocate_frames` on its arguments): the
    same weights, provenance and explanations, bit for bit."""
    return allocate_frames(
        recipe.stats,
        recipe.confidence,
        recipe.tails,
        as_of=recipe.as_of,
        policy=recipe.policy,
        previous=recipe.previous,
        overrides=recipe.overrides,
        previous_hash=recipe.previous_hash,
        persistence=recipe.persistence,
    )


def _decide(
    f: Fleet,
    method: ProfileMethod,
    as_of: datetime,
    policy: Policy,
    previous: Mapping[str, float] | None,
    overrides: Iterable[Override],
    previous_hash: str | None,
    persistence: Persistence | None = None,
) -> Decision:
    if not method.uses_persistence:
        persistence = None  # a profile that reads no such input hashes none
    names = f.names
    n = len(names)
    active = _active_overrides(overrides, as_of)
    excluded = np.zeros(n, dtype=bool)
    caps = np.full(n, policy.max_weight)
    if active:
        index = {name: i for i, name in enumerate(names)}
        for agent, o in active.items():
            at = index.get(agent)
            if at is None:
                continue
            if o.action == "exclude":
                excluded[at] = True
            elif o.action == "cap" and o.cap is not None:
                caps[at] = min(caps[at], o.cap)
    computed = _compute(f, method, policy, excluded, persistence)
    quality, risk = computed.quality, computed.risk

    total_q = float(quality.sum())
    if not math.isfinite(total_q):
        # Every input that could make it so is gated; a profile that still produced a
        # non-finite quality must not turn into an all-cash decision without a reason.
        raise ValueError(f"the profile's total quality is {total_q!r}: refusing to decide")
    share = quality / total_q if total_q > 0 else np.zeros_like(quality)
    if policy.cap_excess is CapExcess.CASH:
        water = np.minimum(share, policy.max_weight)  # the excess stays in cash
    else:
        water = cap_water_fill(share, policy.max_weight)
    after_cap = np.minimum(water, caps)
    after_risk = after_cap * risk
    after_gross = apply_gross_cap(after_risk, policy.gross_cap)
    if previous is None:
        prev = np.zeros(n)
    else:
        previous = dict(previous)  # a copy: the fingerprint is hashed later
        prev = np.fromiter(map(previous.get, names, itertools.repeat(0.0)), np.float64, count=n)
    if previous is None:
        after_stability = after_gross.copy()
    else:
        after_stability = smooth(
            after_gross,
            prev,
            policy.max_increase_per_cycle,
            policy.no_trade_band,
            policy.no_trade_band_relative,
        )
        after_stability = np.minimum(after_stability, caps)
        after_stability = np.where(quality > 0, after_stability, 0.0)
        after_stability = apply_gross_cap(after_stability, policy.gross_cap)
    final = round_down(after_stability, policy.weight_decimals)

    allocated = final > 0
    weights = dict(
        zip(itertools.compress(names, allocated.tolist()), final[allocated].tolist(), strict=True)
    )
    # Weights are whole multiples of 10**-decimals: so are gross and cash (no float noise).
    gross = round(math.fsum(weights.values()), policy.weight_decimals)
    portfolio: dict[str, Any] = {
        "gross": gross,
        "cash": round(max(0.0, 1.0 - gross), policy.weight_decimals),
        "cash_from_risk": max(0.0, float(after_cap.sum() - after_risk.sum())),
        "cash_from_caps": max(0.0, 1.0 - float(after_cap.sum())) if total_q > 0 else 0.0,
        "n_agents": n,
        "n_allocated": len(weights),
        "n_gated": int(n - np.count_nonzero(computed.passed)),
        "binding_caps": [names[i] for i in np.flatnonzero(share > caps + 1e-15).tolist()],
        "gross_cap_binding": bool(after_risk.sum() > policy.gross_cap + STEP_EPS),
        "turnover": float(np.abs(final - prev).sum()) if previous is not None else None,
        "reason": portfolio_reason(
            total_q, water, after_cap, after_risk, gross, policy.cap_excess is CapExcess.CASH
        ),
    }
    steps = {
        "quality": quality,
        "share_before_risk": share,
        "after_cap": after_cap,
        "after_risk": after_risk,
        "after_gross_cap": after_gross,
        "after_stability": after_stability,
        "final": final,
    }
    explain = Explanation(
        f, computed, method, steps, prev if previous is not None else None, active, policy
    )

    def provenance() -> dict[str, Any]:
        with gc_paused():
            views = f.views()
        inputs_blob = {
            "agent_stats": dict(zip(names, views, strict=True)),
            "confidence": {k: vars(v) for k, v in sorted(f.confidence().items())},
            "tails": {k: vars(v) for k, v in sorted(f.tails().items())},
            "previous": dict(sorted(previous.items())) if previous is not None else None,
            "overrides": [o.to_dict() for o in active.values()],
        }
        if persistence is not None:
            inputs_blob["persistence"] = persistence.to_dict()
        return {
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
        agents=explain.build,
        portfolio=portfolio,
        provenance=provenance,
        policy=policy.model_dump(mode="json"),
    )
