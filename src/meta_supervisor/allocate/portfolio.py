"""Portfolio steps after the per-agent factors: cap, gross cap, stability, rounding.

All functions are pure and vectorised over a 1-D array of weights (fractions of capital,
``Σ ≤ 1``; ``1 − Σ`` is cash).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["apply_gross_cap", "cap_water_fill", "in_band", "round_down", "smooth"]

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


def cap_water_fill(weights: FloatArray, cap: float) -> FloatArray:
    """Cap every weight at ``cap`` by water-filling, keeping the total where possible.

    Finds the scale ``s ≥ 1`` with ``Σ min(cap, s·w_i) = Σ w_i``: the excess above the cap goes to
    the uncapped agents in proportion to their weights; when every positive weight is capped the
    remainder goes to cash. ``f_i = min(cap, s·w_i)`` is non-decreasing in ``w_i``, so the
    ranking never inverts (the original one-pass cap put an agent at 37.5% for
    pnl 3600/400/100/100 and inverted the ranking).
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.size == 0 or float(w.max(initial=0.0)) <= cap:
        return w.copy()
    total = float(w.sum())
    order = np.argsort(-w, kind="stable")
    sorted_w = w[order]
    tail_sums = np.concatenate([np.cumsum(sorted_w[::-1])[::-1], [0.0]])
    for n_capped in range(1, w.size + 1):
        rest = tail_sums[n_capped]
        if rest <= 0:
            break
        # The uncapped agents share what is left in proportion: w_i/rest ≤ 1 keeps this finite.
        # (A scale (total − n·cap)/rest overflowed to inf for a subnormal rest, and the fallback
        # then put every positive agent at the cap: Σ above the total, above 1.)
        left = max(total - n_capped * cap, 0.0)
        if sorted_w[n_capped] / rest * left <= cap:
            out = np.full_like(w, cap)
            uncapped = order[n_capped:]
            out[uncapped] = np.minimum(cap, w[uncapped] / rest * left)
            return out
    return np.where(w > 0, cap, 0.0)


def apply_gross_cap(weights: FloatArray, gross_cap: float) -> FloatArray:
    """Scale all weights down so ``Σ w ≤ gross_cap``; never scales up."""
    w = np.asarray(weights, dtype=np.float64)
    total = float(w.sum())
    if total <= gross_cap or total <= 0:
        return w.copy()
    return w * (gross_cap / total)


def in_band(
    target: FloatArray, previous: FloatArray, band: float, relative: float | None = None
) -> BoolArray:
    """The moves the no-trade band skips: ``0 < t`` and ``|t − p| < band`` and, with
    ``relative``, ``|t − p| < relative·max(t, p)``.

    The absolute band alone froze large fleets: with 1,000 agents every target is far below
    0.25 points, so an agent at 0 could never enter. The relative condition keeps the band for
    moves that are small *for that position*; entering from 0 (a 100% move) always applies.
    """
    t = np.asarray(target, dtype=np.float64)
    p = np.asarray(previous, dtype=np.float64)
    move = np.abs(t - p)
    tiny = (move < band) & (t > 0)
    if relative is not None:
        tiny &= move < relative * np.maximum(t, p)
    return tiny


def smooth(
    target: FloatArray,
    previous: FloatArray,
    max_increase: float,
    band: float,
    relative: float | None = None,
) -> FloatArray:
    """De-risk at once, re-risk slowly, skip tiny moves.

    Per agent: a decrease applies in full; an increase is limited to ``max_increase`` per cycle;
    a move the no-trade band skips (:func:`in_band`) keeps the previous weight; a target of 0
    (a gated agent) always applies. The caller re-checks the cap and the gross afterwards.
    """
    t = np.asarray(target, dtype=np.float64)
    p = np.asarray(previous, dtype=np.float64)
    out = np.where(t < p, t, np.minimum(t, p + max_increase))
    return np.where(in_band(t, p, band, relative), p, out)


def round_down(weights: FloatArray, decimals: int) -> FloatArray:
    """Round every weight *down* to ``decimals`` so that the float sum never exceeds 1."""
    unit = 10.0**decimals
    units = np.floor(np.asarray(weights, dtype=np.float64) * unit + 1e-9)
    units = np.clip(units, 0, None)
    while units.sum() > unit:
        units[int(np.argmax(units))] -= 1
    out = units / unit
    # Float sums of the rounded values can still exceed 1 by one ulp; take a unit off the largest.
    # Python's sequential sum and numpy's pairwise sum of n values in [0, 1] differ by at most
    # ~n·2^-53 of the total: well below 1 − 1e-9 neither can exceed 1 (skips a Python-level sum).
    if float(np.sum(out)) <= 1.0 - 1e-9 and out.size < 1_000_000:
        return out
    while out.size and (sum(out.tolist()) > 1.0 or float(np.sum(out)) > 1.0):
        units[int(np.argmax(units))] -= 1
        out = units / unit
    return out
