"""Backtest metrics over a method's period PnL and weights: plain, pure functions over arrays.

Conventions: ``period_pnl`` is the PnL of each holding period in bps of capital (larger is
better), in time order; ``weights`` has shape ``(periods, agents)`` (fractions of capital, the
rest is cash); ``every_hours`` is the length of a holding period.

==================== ==================================================================
metric               definition
==================== ==================================================================
total_pnl_bps        ``Σ period_pnl`` (bps of capital)
sharpe               ``mean / std(ddof=1) · sqrt(8760 / every_hours)``; 0 when std is 0
max_drawdown_bps     largest fall of the cumulative PnL path (starting at 0) from its
                     running peak, ``≤ 0`` (:func:`meta_supervisor.signals.measures.max_drawdown`)
cvar95_bps           fractional-tail CVaR95 of the period PnL, signed
                     (:func:`meta_supervisor.signals.measures.cvar`)
mean_gross           mean over periods of ``Σ_i w_i``
turnover             mean over rebalances after the first of ``Σ_i |w_i(t) − w_i(t−1)|``
derisk_hours         worst (largest) over blowing-up agents of the hours from the blow-up's
                     start until the first rebalance at which the agent's weight is below
                     ``threshold`` (0 when already below at the start; ``inf`` when never)
==================== ==================================================================
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from meta_supervisor.signals.measures import cvar, max_drawdown

__all__ = [
    "HOURS_PER_YEAR",
    "derisk_hours",
    "mean_gross",
    "sharpe",
    "summarize",
    "turnover",
]

HOURS_PER_YEAR = 8760.0


def sharpe(period_pnl: ArrayLike, every_hours: float) -> float:
    """Annualised Sharpe ratio of period PnL: ``mean/std(ddof=1)·sqrt(8760/every_hours)``.

    Zero risk-free rate (PnL is already excess of cash). Fewer than 2 periods or zero
    dispersion give 0.
    """
    x = np.asarray(period_pnl, dtype=np.float64)
    if x.size < 2:
        return 0.0
    sd = float(np.std(x, ddof=1))
    if sd <= 0 or not math.isfinite(sd):
        return 0.0
    return float(np.mean(x)) / sd * math.sqrt(HOURS_PER_YEAR / every_hours)


def mean_gross(weights: ArrayLike) -> float:
    """Mean over periods of the deployed share ``Σ_i w_i``."""
    w = np.asarray(weights, dtype=np.float64)
    return float(w.sum(axis=1).mean()) if w.size else 0.0


def turnover(weights: ArrayLike) -> float:
    """Two-sided turnover per rebalance: mean of ``Σ_i |Δw_i|`` over rebalances after the first."""
    w = np.asarray(weights, dtype=np.float64)
    if w.shape[0] < 2:
        return 0.0
    return float(np.abs(np.diff(w, axis=0)).sum(axis=1).mean())


def derisk_hours(
    weights: ArrayLike,
    times_hours: ArrayLike,
    events: Sequence[tuple[int, float]],
    threshold: float = 0.05,
) -> float:
    """Worst time to de-risk over ``events``, in hours.

    Parameters
    ----------
    weights : ndarray, shape (periods, agents)
    times_hours : ndarray, shape (periods,)
        Rebalance times (hours from any origin, increasing).
    events : sequence of (agent column, start hour)
        One per blowing-up agent.
    threshold : float
        Weight below which the agent counts as de-risked.

    Returns
    -------
    float
        ``max`` over events of ``t* − start`` with ``t*`` the first rebalance time ``≥ start`` at
        which the agent's weight is below ``threshold``; 0 if its weight at the last rebalance
        before ``start`` was already below; ``inf`` if never. ``nan`` with no events.
    """
    w = np.asarray(weights, dtype=np.float64)
    t = np.asarray(times_hours, dtype=np.float64)
    worst = math.nan
    for col, start in events:
        before = np.nonzero(t <= start)[0]
        if before.size and w[before[-1], col] < threshold:
            hours = 0.0
        else:
            after = np.nonzero((t >= start) & (w[:, col] < threshold))[0]
            hours = float(t[after[0]] - start) if after.size else math.inf
        worst = hours if math.isnan(worst) else max(worst, hours)
    return worst


def summarize(
    period_pnl: ArrayLike,
    weights: ArrayLike,
    every_hours: float,
    times_hours: ArrayLike | None = None,
    events: Sequence[tuple[int, float]] = (),
) -> dict[str, float]:
    """Every metric of the module docstring, as a plain dict."""
    x = np.asarray(period_pnl, dtype=np.float64)
    w: NDArray[np.float64] = np.asarray(weights, dtype=np.float64)
    t = np.arange(x.size) * every_hours if times_hours is None else times_hours
    return {
        "total_pnl_bps": float(x.sum()),
        "sharpe": sharpe(x, every_hours),
        "max_drawdown_bps": max_drawdown(x),
        "cvar95_bps": cvar(x) if x.size else 0.0,
        "mean_gross": mean_gross(w),
        "turnover": turnover(w),
        "derisk_hours": derisk_hours(w, t, events) if events else math.nan,
    }
