"""Risk measures: plain, pure functions over 1-D arrays of bps values.

Conventions (normative, DESIGN.md "Definitions"):

* Values are PnL-like in bps; larger is better.
* ``cvar95`` is returned **signed**: negative means a bad left tail.
* ``max_drawdown`` is returned **≤ 0**.
* Inputs must be finite; NaN handling is the caller's job (the ingest quarantines them).
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
from numpy.typing import ArrayLike, NDArray

__all__ = ["below_peak", "cumulative_pnl", "cvar", "decay_weights", "max_drawdown", "tail_count"]


def tail_count(n: int, alpha: float = 0.05) -> tuple[float, int]:
    """Return ``(k, m)`` with ``k = alpha·n`` and ``m = ceil(k)``, free of float noise.

    ``alpha·n`` is rounded to 9 decimals before the ceiling so that ``0.05·20`` is exactly 1
    (in binary floating point ``0.05*20`` is 1.0 but ``0.05*60`` is 3.0000000000000004).
    """
    k = round(alpha * n, 9)
    return k, math.ceil(k)


def cvar(values: ArrayLike, alpha: float = 0.05) -> float:
    r"""Fractional-tail historical CVaR at level ``1 − alpha`` (lower tail), signed.

    With ``n`` values sorted ascending :math:`g_{(1)} \le \dots \le g_{(n)}`,
    :math:`k = \alpha n` and :math:`m = \lceil k \rceil`:

    .. math:: \mathrm{CVaR} = \frac{g_{(1)} + \dots + g_{(m-1)} + (k - m + 1)\,g_{(m)}}{k}

    This is the estimator of skfolio and Riskfolio-Lib; it equals the Rockafellar–Uryasev
    minimum :math:`\max_t \{ t - \frac{1}{k}\sum_i (t - g_i)^+ \}`, is invariant to ties,
    and for ``k < 1`` is the worst value.

    Parameters
    ----------
    values : array_like, shape (n,)
        Finite values (bps). ``n ≥ 1``.
    alpha : float
        Tail probability, default 0.05 (CVaR95).

    Returns
    -------
    float
        Mean of the worst ``alpha`` fraction, in the units of ``values`` (negative = bad tail).
    """
    g = np.sort(np.asarray(values, dtype=np.float64).ravel())
    n = g.size
    if n == 0:
        raise ValueError("cvar of an empty sample is undefined")
    k, m = tail_count(n, alpha)
    if k < 1:
        return float(g[0])
    head = float(np.sum(g[: m - 1])) if m > 1 else 0.0
    return (head + (k - m + 1) * float(g[m - 1])) / k


def max_drawdown(pnl: ArrayLike) -> float:
    """Largest fall of the cumulative PnL path from its running peak, reported ``≤ 0``.

    The path starts at 0 before the first value: ``c_0 = 0``, ``c_i = pnl_1 + … + pnl_i``;
    ``dd = min_i (c_i − max_{j ≤ i} c_j)``. The order of ``pnl`` is the caller's (by
    ``matured_at``, then ``ts``, then record id; never file order).

    Parameters
    ----------
    pnl : array_like, shape (n,)
        Per-record realised PnL in bps, in time order. An empty array gives 0.
    """
    x = np.asarray(pnl, dtype=np.float64).ravel()
    if x.size == 0:
        return 0.0
    path = np.cumsum(x)
    peak = np.maximum.accumulate(np.maximum(path, 0.0))
    return float(min(0.0, np.min(path - peak)))


def cumulative_pnl(by: str, pnl: str = "realized_pnl_bps") -> pl.Expr:
    """The polars form of :func:`max_drawdown`'s path ``c_i``, per group ``by`` (rows in time
    order): ``Σ pnl`` up to and including each row."""
    return pl.col(pnl).cum_sum().over(by)


def below_peak(path: pl.Expr, by: str) -> pl.Expr:
    """The polars form of :func:`max_drawdown`'s fall at each row, per group ``by``:
    ``c_i − max(0, max_{j ≤ i} c_j)`` (≤ 0; the path starts at 0, so a first loss counts). Its
    minimum over a group is that group's ``max_drawdown``."""
    return path - pl.max_horizontal(path.cum_max().over(by), pl.lit(0.0))


def decay_weights(age_hours: ArrayLike, half_life_hours: float) -> NDArray[np.float64]:
    """Evidence weights ``0.5 ** (age_hours / half_life_hours)``; negative ages weigh 1.

    Ages are wall-clock hours between a record becoming visible (``matured_at``) and ``as_of``.
    """
    age = np.maximum(np.asarray(age_hours, dtype=np.float64), 0.0)
    return np.exp2(-age / half_life_hours)
