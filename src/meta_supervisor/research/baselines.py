"""Baseline allocators the backtest sets beside the policy profiles, on the same inputs.

Every baseline takes what one live cycle computes as of ``t`` (the per-agent stats dicts, the
confidence per agent and the tails per strategy of :func:`meta_supervisor.cycle.run.cycle_inputs`)
and returns ``{agent: weight}`` (fractions of capital; the rest is cash). None keeps state.

* :func:`equal_weight`: ``1/n`` over the eligible agents (capped at ``policy.max_weight``).
* :func:`inverse_volatility`: ``∝ 1/pnl_std_bps`` over the eligible agents, capped by
  water-filling, fully invested.
* :func:`seed_original`: **the reference of what not to do**: the user's seed
  ``compute_weights`` exactly as SEED.md wrote it (one-pass cap that can push an agent above the
  cap and invert the ranking, always renormalised to 100% so penalties never reach cash,
  ``avg_abs_error`` defaulting to 999 when missing).
* :func:`hrp`: skfolio's Hierarchical Risk Parity on the agents' daily PnL over its own
  lookback (:data:`HRP_LOOKBACK_HOURS`, 60 days, or the policy's window if longer: a
  covariance of 30 agents needs more days than the 7-day stats window holds), when the
  ``research`` extra is installed. Where even that holds fewer than :data:`HRP_MIN_DAYS` days
  (the start of a run) it falls back to equal weight and says so (:func:`hrp_weights`); the
  backtest counts those rebalances.

The seed profile *made correct* is not here: it is :func:`meta_supervisor.cycle.run.decide` with
``Policy(profile="seed")``, run by the backtest through the live path.

**Eligible** (equal weight, inverse volatility, HRP): the allocation's own safety gates
(:func:`meta_supervisor.allocate.gates.eligible_agents`, the one table every profile reads),
without the ``pnl_sum ≤ 0`` selection.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from datetime import datetime, timedelta
from math import sqrt
from typing import Any

import numpy as np
import polars as pl

from meta_supervisor.allocate.gates import eligible_agents
from meta_supervisor.allocate.inputs import Confidence, Tail
from meta_supervisor.allocate.numbers import finite_number
from meta_supervisor.allocate.portfolio import cap_water_fill
from meta_supervisor.policy.model import Policy

__all__ = [
    "eligible_agents",
    "equal_weight",
    "hrp",
    "hrp_available",
    "hrp_weights",
    "inverse_volatility",
    "seed_original",
]

Stats = Mapping[str, Mapping[str, Any]]


def equal_weight(stats: Stats, policy: Policy) -> dict[str, float]:
    """``min(1/n, max_weight)`` for each of the ``n`` eligible agents."""
    names = eligible_agents(stats, policy)
    if not names:
        return {}
    w = min(1.0 / len(names), policy.max_weight)
    return dict.fromkeys(names, w)


def inverse_volatility(stats: Stats, policy: Policy) -> dict[str, float]:
    """``w_i ∝ 1/σ_i`` (``σ_i = pnl_std_bps``) over eligible agents with ``σ_i > 0``, capped."""
    names, inv = [], []
    for name in eligible_agents(stats, policy):
        sd = finite_number(stats[name].get("pnl_std_bps"))
        if sd is not None and sd > 0:
            names.append(name)
            inv.append(1.0 / sd)
    if not names:
        return {}
    raw = np.asarray(inv) / float(np.sum(inv))
    capped = cap_water_fill(raw, policy.max_weight)
    return {n: float(w) for n, w in zip(names, capped, strict=True)}


# ---------------------------------------------------------------- the seed, as written

# The seed's tunables, verbatim.
_SEED_MAX_WEIGHT = 0.25
_SEED_CVAR_PENALTY_K = 0.015
_SEED_DD_PENALTY_K = 0.01


def _seed_safe(x: Any, d: float = 0.0) -> float:
    try:
        return float(x)
    except Exception:  # the seed's own catch-all, kept to reproduce its behaviour
        return d


def seed_original(
    stats: Stats,
    confidence: Mapping[str, Confidence],
    tails: Mapping[str, Tail],
    confidence_prior: float = 1.0,
) -> dict[str, float]:
    """The seed's ``compute_weights`` as SEED.md wrote it: **the reference of what not to do**.

    Fed the same inputs as a live cycle: ``get_confidence_multiplier(name)`` is the cycle's
    confidence (``confidence_prior`` when the agent has none) and ``strategy_cvar`` the raw
    ``gap_cvar95_bps`` per strategy. Kept faithfully, bugs included: the cap is applied in
    one pass and renormalised, so weights always sum to 1 (penalties never reach cash) and a
    capped agent's excess can push others above the cap.
    """
    raw: dict[str, float] = {}
    for name, s in stats.items():
        pnl = _seed_safe(s.get("pnl_sum_bps"))
        hit = _seed_safe(s.get("hit_rate"))
        err = _seed_safe(s.get("error_rate"))
        avg_abs_err = _seed_safe(s.get("avg_abs_error_bps"), 999)
        strategy = s.get("strategy", "unclassified")
        if err > 0.15:
            continue
        if pnl <= 0:
            continue
        q = sqrt(max(pnl, 0)) * (0.6 + hit)
        conf = confidence.get(name)
        q *= conf.multiplier if conf is not None else confidence_prior
        q *= 1.0 / (1.0 + avg_abs_err / 75.0)
        tail = tails.get(str(strategy))
        strat_cvar = _seed_safe(tail.gap_cvar95_bps if tail is not None else 0)
        if strat_cvar < 0:
            q *= max(0.25, 1.0 + strat_cvar * _SEED_CVAR_PENALTY_K)
        dd = _seed_safe(s.get("max_drawdown_bps", 0))
        if dd < 0:
            q *= max(0.4, 1.0 + dd * _SEED_DD_PENALTY_K)
        if q > 0:
            raw[name] = q
    total = sum(raw.values())
    if total <= 0:
        return {}
    weights = {k: v / total for k, v in raw.items()}
    capped = {}
    excess = 0.0
    for k, w in weights.items():
        if w > _SEED_MAX_WEIGHT:
            capped[k] = _SEED_MAX_WEIGHT
            excess += w - _SEED_MAX_WEIGHT
        else:
            capped[k] = w
    if excess > 0:
        free = sum(v for v in capped.values() if v < _SEED_MAX_WEIGHT)
        if free > 0:
            for k in capped:  # noqa: PLC0206 (the seed's loop, verbatim)
                if capped[k] < _SEED_MAX_WEIGHT:
                    capped[k] += excess * (capped[k] / free)
    return {k: round(v, 6) for k, v in capped.items()}


# ---------------------------------------------------------------- optional: skfolio


def hrp_available() -> bool:
    """True when skfolio (the ``research`` extra) can be imported."""
    try:
        import skfolio.optimization  # noqa: F401
    except ImportError:
        return False
    return True


#: HRP's own history: 60 days of daily PnL (or the policy's window when longer).
HRP_LOOKBACK_HOURS = 24.0 * 60
#: Fewer days of daily PnL than this: HRP falls back to equal weight.
HRP_MIN_DAYS = 10


def daily_pnl_matrix(
    records: pl.DataFrame,
    as_of: datetime,
    policy: Policy,
    agents: list[str],
    lookback_hours: float | None = None,
) -> np.ndarray:
    """Agents' mean realised PnL per day of signal, over records visible at ``as_of``.

    Rows: days in the window ``(as_of − lookback, as_of]`` by ``matured_at`` (``lookback``:
    ``lookback_hours``, else the policy's); columns: ``agents``; a day without a record for an
    agent is 0 (no position).
    """
    start = as_of - timedelta(hours=lookback_hours or policy.lookback_hours)
    daily = (
        records.lazy()
        .filter(
            (pl.col("matured_at") <= as_of)
            & (pl.col("matured_at") > start)
            & (pl.col("horizon_hours") == policy.horizon_hours)
            & pl.col("agent").is_in(agents)
        )
        .group_by(pl.col("ts").dt.truncate("1d").alias("day"), "agent")
        .agg(pl.col("realized_pnl_bps").mean())
        .collect()
        .pivot(on="agent", index="day", values="realized_pnl_bps")
        .sort("day")
    )
    cols = [daily[a].fill_null(0.0).to_numpy() if a in daily.columns else None for a in agents]
    days = daily.height
    return np.column_stack([c if c is not None else np.zeros(days) for c in cols])


def hrp(stats: Stats, records: pl.DataFrame, as_of: datetime, policy: Policy) -> dict[str, float]:
    """skfolio's HRP over eligible agents' daily PnL (needs the ``research`` extra); the
    weights of :func:`hrp_weights`."""
    return hrp_weights(stats, records, as_of, policy)[0]


def hrp_weights(
    stats: Stats, records: pl.DataFrame, as_of: datetime, policy: Policy
) -> tuple[dict[str, float], bool]:
    """``(weights, fell_back)``: skfolio's HRP over the eligible agents' daily PnL over
    ``max(HRP_LOOKBACK_HOURS, policy.lookback_hours)``; equal weight (``fell_back`` true) with
    fewer than :data:`HRP_MIN_DAYS` days or 2 agents."""
    names = eligible_agents(stats, policy)
    if len(names) < 2:
        return equal_weight(stats, policy), True
    lookback = max(HRP_LOOKBACK_HOURS, policy.lookback_hours)
    x = daily_pnl_matrix(records, as_of, policy, names, lookback) / 1e4
    if x.shape[0] < HRP_MIN_DAYS:
        return equal_weight(stats, policy), True
    return _hrp_fit(names, x, policy), False


def _hrp_fit(names: list[str], x: np.ndarray, policy: Policy) -> dict[str, float]:
    from skfolio.optimization import HierarchicalRiskParity

    keep = x.std(axis=0) > 0
    names = [n for n, k in zip(names, keep, strict=True) if k]
    model = HierarchicalRiskParity()
    with warnings.catch_warnings():
        # Rules on the same stock are often collinear; skfolio repairs the covariance and says
        # so on every call, which would drown the progress bar.
        warnings.simplefilter("ignore", UserWarning)
        model.fit(x[:, keep])
    raw = np.clip(np.asarray(model.weights_, dtype=np.float64), 0.0, None)
    capped = cap_water_fill(raw / raw.sum(), policy.max_weight)
    return {n: float(w) for n, w in zip(names, capped, strict=True)}
