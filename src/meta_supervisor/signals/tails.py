r"""Strategy tail risk: CVaR95 of the gap (realised − expected), per strategy, as of an instant.

Over the records at ``horizon_hours`` that matured in ``(as_of − cvar_lookback_hours, as_of]``,
grouped by the record's own ``strategy`` (never guessed from agent names):

* ``gap_cvar95_bps``: the raw fractional-tail estimator
  (:func:`meta_supervisor.signals.measures.cvar`),
  signed, negative = the strategy under-delivers its own forecasts in its worst 5%;
* ``gap_cvar95_used_bps``: what the allocation uses. With ``n < cvar_min_samples`` gaps the raw
  value is shrunk linearly toward ``cvar_prior_bps``:
  :math:`used = \lambda\,raw + (1 − \lambda)\,prior`, :math:`\lambda = n / n_{min}`, so three
  samples cannot swing capital. With ``n ≥ n_min``, ``used = raw``.

The estimator is vectorised: within each strategy the gaps are ranked and the first ``m − 1`` are
summed plus the fractional part of the ``m``-th, exactly as the docstring of ``cvar`` states.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from meta_supervisor.policy.model import Policy

__all__ = ["TAIL_COLUMNS", "strategy_tails"]

TAIL_COLUMNS = [
    "strategy",
    "n",
    "gap_cvar95_bps",
    "gap_cvar95_used_bps",
    "shrunk",
    "worst_gap",
    "mean_gap",
    "mean_abs_gap",
]


def strategy_tails(
    records: pl.DataFrame | pl.LazyFrame,
    as_of: datetime,
    policy: Policy,
    horizon_hours: int | None = None,
    alpha: float = 0.05,
) -> pl.DataFrame:
    """One row per strategy with matured gaps in the CVaR window: ``TAIL_COLUMNS``."""
    horizon = policy.horizon_hours if horizon_hours is None else horizon_hours
    start = as_of - timedelta(hours=policy.cvar_lookback_hours)
    ranked = (
        records.lazy()
        .filter(
            (pl.col("matured_at") <= as_of)
            & (pl.col("matured_at") > start)
            & (pl.col("horizon_hours") == horizon)
        )
        .select("strategy", "gap_bps")
        # rank within the strategy instead of sorting the frame on (strategy, gap): the string
        # key made that sort the cost of the whole cycle. Ties get distinct ranks, and the
        # estimator is invariant to how ties are ordered.
        .with_columns(
            pl.col("gap_bps").rank("ordinal").over("strategy").alias("_rank"),
            pl.len().over("strategy").alias("_n"),
        )
        # k = alpha·n rounded to 9 decimals (0.05·20 is exactly 1); m = ceil(k), k < 1 → m = 1.
        .with_columns((pl.col("_n").cast(pl.Float64) * alpha).round(9).alias("_k"))
        .with_columns(pl.max_horizontal(pl.col("_k").ceil(), pl.lit(1.0)).alias("_m"))
        .with_columns(
            pl.when(pl.col("_rank") < pl.col("_m"))
            .then(1.0)
            .when(pl.col("_rank") == pl.col("_m"))
            .then(pl.min_horizontal(pl.col("_k") - pl.col("_m") + 1.0, pl.lit(1.0)))
            .otherwise(0.0)
            .alias("_share")
        )
    )
    n_min, prior = policy.cvar_min_samples, policy.cvar_prior_bps
    tails = (
        ranked.group_by("strategy")
        .agg(
            pl.len().cast(pl.Int64).alias("n"),
            # Sums in sorted order, so the bits are a function of the sample, not of the file
            # order: polars drops a sort before an order-free .sum(), hence cum_sum().last().
            (
                (pl.col("_share") * pl.col("gap_bps")).sort().cum_sum().last()
                / pl.col("_share").sort().cum_sum().last()
            ).alias("gap_cvar95_bps"),
            pl.col("gap_bps").min().alias("worst_gap"),
            (pl.col("gap_bps").sort().cum_sum().last() / pl.len()).alias("mean_gap"),
            (pl.col("gap_bps").abs().sort().cum_sum().last() / pl.len()).alias("mean_abs_gap"),
        )
        .with_columns((pl.col("n") < n_min).alias("shrunk"))
        .with_columns(
            pl.when(pl.col("shrunk"))
            .then(
                pl.col("gap_cvar95_bps") * (pl.col("n") / n_min)
                + prior * (1.0 - pl.col("n") / n_min)
            )
            .otherwise(pl.col("gap_cvar95_bps"))
            .alias("gap_cvar95_used_bps")
        )
    )
    return tails.select(TAIL_COLUMNS).sort("strategy").collect(engine="in-memory")
