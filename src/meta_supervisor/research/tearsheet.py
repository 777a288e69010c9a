"""What a quant reads first in a backtest: pure functions over a method's period PnL and weights.

Conventions as :mod:`meta_supervisor.research.metrics`: ``period_pnl[k]`` is the PnL of holding
period ``k`` in bps of capital (``r_k = Σ_i w_{i,k}·p_{i,k}``, the backtest's accounting),
``weights`` has shape ``(periods, agents)``, ``times[k]`` is the decision time of period ``k``.

==================== =========================================================================
function             definition
==================== =========================================================================
period_turnover      ``Σ_i |w_{i,k} − w_{i,k−1}|`` for ``k ≥ 1``; period 0 enters from cash:
                     ``Σ_i w_{i,0}``
net_pnl              ``r_k − cost_bps · period_turnover_k``: a cost of ``cost_bps`` bps of the
                     notional traded, charged in the period that trades
monthly_returns      ``Σ r_k`` over the periods whose decision time falls in each calendar
                     month (UTC), in bps of capital (cumulative PnL is additive in bps)
rolling_sharpe       :func:`~meta_supervisor.research.metrics.sharpe` of the last ``window``
                     periods, from the ``window``-th period on (NaN before)
drawdown_periods     the deepest episodes of the equity ``cumsum(r)`` (from 0) below its running
                     peak: peak, trough and recovery (the first period back at the peak; None
                     while under water), depth in bps (≤ 0) and length in periods
contributions        agent ``i``'s share of the PnL: ``Σ_k w_{i,k}·p_{i,k}`` (they add up to
                     ``Σ_k r_k``)
==================== =========================================================================
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from meta_supervisor.research.metrics import sharpe

__all__ = [
    "contributions",
    "drawdown_periods",
    "monthly_returns",
    "net_pnl",
    "period_turnover",
    "rolling_sharpe",
]


def period_turnover(weights: ArrayLike) -> np.ndarray:
    """Two-sided turnover of each rebalance (fraction of capital traded; see the module)."""
    w = np.asarray(weights, dtype=np.float64)
    if w.shape[0] == 0:
        return np.zeros(0)
    start = np.abs(w[:1]).sum(axis=1)
    return np.concatenate([start, np.abs(np.diff(w, axis=0)).sum(axis=1)])


def net_pnl(period_pnl: ArrayLike, weights: ArrayLike, cost_bps: float) -> np.ndarray:
    """Period PnL after trading costs: ``r_k − cost_bps · turnover_k`` (bps of capital)."""
    if cost_bps < 0:
        raise ValueError(f"cost_bps must be >= 0 (got {cost_bps})")
    return np.asarray(period_pnl, dtype=np.float64) - cost_bps * period_turnover(weights)


def monthly_returns(
    times: Sequence[datetime], period_pnl: ArrayLike
) -> dict[tuple[int, int], float]:
    """``{(year, month): Σ r_k}`` over the periods decided in that month, in time order."""
    out: dict[tuple[int, int], float] = {}
    parts: dict[tuple[int, int], list[float]] = {}
    for t, r in zip(times, np.asarray(period_pnl, dtype=np.float64).tolist(), strict=True):
        parts.setdefault((t.year, t.month), []).append(r)
    for key, values in parts.items():
        out[key] = math.fsum(values)
    return out


def rolling_sharpe(period_pnl: ArrayLike, every_hours: float, window: int) -> np.ndarray:
    """Annualised Sharpe of each trailing ``window`` of periods (NaN for the first ``window −
    1``)."""
    if window < 2:
        raise ValueError(f"window must be >= 2 periods (got {window})")
    x = np.asarray(period_pnl, dtype=np.float64)
    out = np.full(x.shape, np.nan)
    for k in range(window - 1, x.size):
        out[k] = sharpe(x[k - window + 1 : k + 1], every_hours)
    return out


def drawdown_periods(period_pnl: ArrayLike, top: int = 5) -> list[dict[str, Any]]:
    """The ``top`` deepest drawdown episodes, deepest first.

    Each: ``peak`` (index of the period whose end is the running peak, -1 for the start at 0),
    ``trough`` (index of the lowest equity), ``recovery`` (first index back at or above the
    peak, None while under water), ``depth_bps`` (trough − peak, < 0) and ``periods`` (peak to
    recovery, or to the last period while under water).
    """
    equity = np.cumsum(np.asarray(period_pnl, dtype=np.float64))
    episodes: list[dict[str, Any]] = []
    peak_value, peak_index = 0.0, -1
    current: dict[str, Any] | None = None
    for k, value in enumerate(equity.tolist()):
        if value >= peak_value:
            if current is not None:
                current["recovery"] = k
                current["periods"] = k - current["peak"]
                episodes.append(current)
                current = None
            peak_value, peak_index = value, k
            continue
        depth = value - peak_value
        if current is None:
            current = {"peak": peak_index, "trough": k, "recovery": None, "depth_bps": depth}
        elif depth < current["depth_bps"]:
            current["trough"], current["depth_bps"] = k, depth
    if current is not None:
        current["periods"] = len(equity) - 1 - current["peak"]
        episodes.append(current)
    episodes.sort(key=lambda e: (e["depth_bps"], e["peak"]))
    return episodes[:top]


def contributions(weights: ArrayLike, agent_pnl: ArrayLike) -> np.ndarray:
    """Each agent's PnL contribution ``Σ_k w_{i,k}·p_{i,k}`` (bps of capital)."""
    w = np.asarray(weights, dtype=np.float64)
    p = np.asarray(agent_pnl, dtype=np.float64)
    return (w * p).sum(axis=0)
