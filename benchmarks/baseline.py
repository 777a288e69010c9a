"""A straightforward pandas implementation of the cycle's statistics (the comparison baseline).

Same definitions as :mod:`meta_supervisor.signals.stats`, :mod:`meta_supervisor.signals.confidence`
and :mod:`meta_supervisor.signals.tails` (DESIGN.md "Definitions"), written the way an analyst would
with pandas: boolean filters, ``sort_values``, ``groupby`` with ``cumsum``/``cummax`` for drawdown,
and a rank within each strategy for the fractional-tail CVaR95. No cleverness on purpose.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from meta_supervisor.policy.model import Policy
from meta_supervisor.signals.confidence import prior_ratio

__all__ = ["pandas_confidence", "pandas_stats", "pandas_tails"]


def _window(df: pd.DataFrame, as_of: datetime, hours: float, horizon: int) -> pd.DataFrame:
    start = pd.Timestamp(as_of - timedelta(hours=hours))
    end = pd.Timestamp(as_of)
    keep = (df["matured_at"] <= end) & (df["matured_at"] > start) & (df["horizon_hours"] == horizon)
    return df.loc[keep]


def pandas_stats(
    df: pd.DataFrame, telemetry: pd.DataFrame, as_of: datetime, policy: Policy
) -> pd.DataFrame:
    """Per agent: n, pnl sum, hit rate, mean |gap|, max drawdown (≤ 0, in order), error rate."""
    w = _window(df, as_of, policy.lookback_hours, policy.horizon_hours)
    w = w.sort_values(["matured_at", "ts", "record_id"], kind="stable")
    by_agent = w.groupby("agent", sort=True)
    path = by_agent["realized_pnl_bps"].cumsum()
    peak = path.groupby(w["agent"]).cummax().clip(lower=0.0)
    out = pd.DataFrame(
        {
            "strategy": by_agent["strategy"].last(),
            "n_records": by_agent.size(),
            "pnl_sum_bps": by_agent["realized_pnl_bps"].sum(),
            "hit_rate": (w["realized_pnl_bps"] > 0).groupby(w["agent"]).mean(),
            "avg_abs_error_bps": w["gap_bps"].abs().groupby(w["agent"]).mean(),
            "max_drawdown_bps": (path - peak).groupby(w["agent"]).min().clip(upper=0.0),
        }
    )
    start = pd.Timestamp(as_of - timedelta(hours=policy.lookback_hours))
    t = telemetry.loc[(telemetry["ts"] <= pd.Timestamp(as_of)) & (telemetry["ts"] > start)]
    out["error_rate"] = t["is_error"].astype(float).groupby(t["agent"]).mean()
    return out


def pandas_confidence(df: pd.DataFrame, as_of: datetime, policy: Policy) -> pd.Series:
    """Per agent confidence multiplier (formula in :mod:`meta_supervisor.signals.confidence`)."""
    w = _window(df, as_of, policy.confidence_lookback_hours, policy.horizon_hours)
    age = (pd.Timestamp(as_of) - w["matured_at"]).dt.total_seconds() / 3600.0
    weight = np.exp2(-age.clip(lower=0.0) / policy.confidence_half_life_hours)
    sigma = w["expected_sigma_bps"]
    scale = sigma.where(sigma > 0, policy.sim_error_scale_bps)
    z = w["gap_bps"].abs() / scale
    sums = pd.DataFrame({"w": weight, "wz": weight * z, "agent": w["agent"]}).groupby("agent").sum()
    w0, z0, tol = policy.confidence_prior_weight, prior_ratio(policy), policy.confidence_tolerance
    ratio = (w0 * z0 + sums["wz"]) / (w0 + sums["w"])
    floor, ceiling = policy.confidence_floor, policy.confidence_ceiling
    conf = floor + (ceiling - floor) * tol / ratio
    return conf.where(ratio > tol, ceiling).clip(floor, ceiling)


def pandas_tails(
    df: pd.DataFrame, as_of: datetime, policy: Policy, alpha: float = 0.05
) -> pd.Series:
    """Per strategy fractional-tail CVaR95 of the gap (raw, signed)."""
    w = _window(df, as_of, policy.cvar_lookback_hours, policy.horizon_hours)
    s = w[["strategy", "gap_bps"]].sort_values(["strategy", "gap_bps"], kind="stable")
    rank = s.groupby("strategy").cumcount() + 1
    n = s.groupby("strategy")["gap_bps"].transform("size")
    k = (n * alpha).round(9)
    m = np.maximum(np.ceil(k), 1.0)
    share = np.where(rank < m, 1.0, np.where(rank == m, np.minimum(k - m + 1.0, 1.0), 0.0))
    parts = pd.DataFrame({"strategy": s["strategy"], "sg": share * s["gap_bps"], "s": share})
    sums = parts.groupby("strategy").sum()
    return sums["sg"] / sums["s"]


def check_close(name: str, ours: pd.Series, theirs: pd.Series, rtol: float = 1e-9) -> int:
    """Assert two per-key series agree (same keys, values within ``rtol``); return the count."""
    ours, theirs = ours.sort_index(), theirs.sort_index()
    if list(ours.index) != list(theirs.index):
        raise AssertionError(f"{name}: keys differ ({len(ours)} vs {len(theirs)})")
    a, b = ours.to_numpy(dtype=float), theirs.to_numpy(dtype=float)
    if not np.allclose(
        a, b, rtol=rtol, atol=1e-9 * max(1.0, float(np.nanmax(np.abs(b)))), equal_nan=True
    ):
        worst = int(np.nanargmax(np.abs(a - b)))
        raise AssertionError(f"{name}: {ours.index[worst]} polars {a[worst]!r} pandas {b[worst]!r}")
    if not all(math.isfinite(x) for x in a[~np.isnan(a)]):
        raise AssertionError(f"{name}: non-finite values")
    return len(a)
