r"""Confidence multipliers: how far an agent's simulator can be trusted, as of an instant.

Pure function of the records and ``as_of`` (no state, so running it twice on the same data gives
the same number, and old evidence is never re-applied: the original system's ratchet to the
floor cannot happen).

Formula, per agent, over its records at ``policy.horizon_hours`` that matured in
``(as_of − confidence_lookback_hours, as_of]``:

* error ratio of record *i*: :math:`z_i = |gap_i| / s_i`, with :math:`s_i` the record's
  ``expected_sigma_bps`` when positive, else ``sim_error_scale_bps`` (75 bps);
* evidence weight: :math:`w_i = 0.5^{age_i / h}`, ``age_i`` = hours from ``matured_at`` to
  ``as_of``, :math:`h` = ``confidence_half_life_hours``;
* shrunk mean ratio, with a prior worth :math:`W_0` = ``confidence_prior_weight`` records at
  :math:`z_0`: :math:`e = (W_0 z_0 + \sum w_i z_i) / (W_0 + \sum w_i)`;
* multiplier: :math:`c = f + (u - f)\,\min(1, \tau / e)`, with floor :math:`f`, ceiling
  :math:`u` and tolerance :math:`\tau` (0.8 ≈ E|N(0,1)|: a calibrated simulator scores
  :math:`e ≈ 0.8`); :math:`z_0` is chosen so that :math:`c(z_0)` = ``confidence_prior``.

So :math:`c \in [f, u]`, is non-increasing in every :math:`|gap_i|`, equals the prior with no
evidence, and tends to :math:`f + (u − f)\tau/e` as evidence piles up. An error twice the
tolerance halves the distance to the floor.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import polars as pl

from meta_supervisor.policy.model import Policy
from meta_supervisor.units import US_PER_HOUR

__all__ = ["CONFIDENCE_COLUMNS", "confidence_from_ratio", "confidence_multipliers", "prior_ratio"]

CONFIDENCE_COLUMNS = ["agent", "confidence", "n_evidence", "evidence_weight", "error_ratio"]


def prior_ratio(policy: Policy) -> float:
    """The error ratio :math:`z_0` at which the multiplier equals ``confidence_prior``."""
    span = policy.confidence_ceiling - policy.confidence_floor
    above = policy.confidence_prior - policy.confidence_floor
    if span <= 0 or above <= 0:
        return policy.confidence_tolerance
    return policy.confidence_tolerance * span / above


def confidence_from_ratio(error_ratio: float, policy: Policy) -> float:
    """Map a mean error ratio ``e ≥ 0`` to ``f + (u − f)·min(1, τ/e)``."""
    floor, ceiling = policy.confidence_floor, policy.confidence_ceiling
    if not math.isfinite(error_ratio):
        return floor
    if error_ratio <= policy.confidence_tolerance:
        return ceiling
    return floor + (ceiling - floor) * policy.confidence_tolerance / error_ratio


def confidence_multipliers(
    records: pl.DataFrame | pl.LazyFrame, as_of: datetime, policy: Policy
) -> pl.DataFrame:
    """One row per agent with evidence: ``CONFIDENCE_COLUMNS``.

    Agents absent from the result have no evidence: their multiplier is ``confidence_prior``.
    """
    start = as_of - timedelta(hours=policy.confidence_lookback_hours)
    floor, ceiling = policy.confidence_floor, policy.confidence_ceiling
    tol, w0, z0 = policy.confidence_tolerance, policy.confidence_prior_weight, prior_ratio(policy)
    age_h = (pl.lit(as_of) - pl.col("matured_at")).dt.total_microseconds() / US_PER_HOUR
    scale = (
        pl.when(pl.col("expected_sigma_bps") > 0)
        .then(pl.col("expected_sigma_bps"))
        .otherwise(pl.lit(policy.sim_error_scale_bps))
    )
    weight = pl.lit(2.0).pow(-age_h.clip(lower_bound=0.0) / policy.confidence_half_life_hours)
    per_agent = (
        records.lazy()
        .filter(
            (pl.col("matured_at") <= as_of)
            & (pl.col("matured_at") > start)
            & (pl.col("horizon_hours") == policy.horizon_hours)
        )
        .with_columns(weight.alias("_w"), (pl.col("gap_bps").abs() / scale).alias("_z"))
        .group_by("agent")
        .agg(
            pl.len().cast(pl.Int64).alias("n_evidence"),
            # Summed in sorted order so that the same records in any file order give the same
            # bits: a plain .sum() follows the row order, and polars drops a sort before an
            # order-free .sum(), hence the order-dependent cum_sum().last().
            pl.col("_w").sort().cum_sum().last().alias("evidence_weight"),
            (pl.col("_w") * pl.col("_z")).sort().cum_sum().last().alias("_wz"),
        )
        .with_columns(
            ((w0 * z0 + pl.col("_wz")) / (w0 + pl.col("evidence_weight")))
            .fill_nan(z0)
            .alias("error_ratio")
        )
        .with_columns(
            pl.when(pl.col("error_ratio") <= tol)
            .then(pl.lit(ceiling))
            .otherwise(floor + (ceiling - floor) * tol / pl.col("error_ratio"))
            .clip(floor, ceiling)
            .alias("confidence")
        )
    )
    return per_agent.select(CONFIDENCE_COLUMNS).sort("agent").collect(engine="in-memory")
