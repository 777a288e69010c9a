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

import math
from datetime import datetime, timedelta

import numpy as np
import polars as pl

from meta_supervisor.policy.model import Policy

__all__ = ["TAIL_COLUMNS", "strategy_tails", "strategy_tails_reference", "with_prior"]

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


def with_prior(frame: pl.DataFrame, policy: Policy) -> pl.DataFrame:
    """``frame`` (``strategy``, ``n``, ``gap_cvar95_bps``, ``worst_gap``, ``mean_gap``,
    ``mean_abs_gap``) with ``shrunk`` (``n < n_min``) and the CVaR used, shrunk toward the prior
    (module docstring), as :data:`TAIL_COLUMNS` sorted by strategy: the one place of that rule
    for the fast form, the reference and the incremental engine."""
    n_min, prior = policy.cvar_min_samples, policy.cvar_prior_bps
    return (
        frame.with_columns((pl.col("n") < n_min).alias("shrunk"))
        .with_columns(
            pl.when(pl.col("shrunk"))
            .then(
                pl.col("gap_cvar95_bps") * (pl.col("n") / n_min)
                + prior * (1.0 - pl.col("n") / n_min)
            )
            .otherwise(pl.col("gap_cvar95_bps"))
            .alias("gap_cvar95_used_bps")
        )
        .select(TAIL_COLUMNS)
        .sort("strategy")
    )


def _window(
    records: pl.DataFrame | pl.LazyFrame, as_of: datetime, policy: Policy, horizon_hours: int | None
) -> pl.LazyFrame:
    """``strategy, gap_bps`` of the records at the horizon (default the policy's) that matured
    in the CVaR window ``(as_of − cvar_lookback_hours, as_of]``."""
    horizon = policy.horizon_hours if horizon_hours is None else horizon_hours
    start = as_of - timedelta(hours=policy.cvar_lookback_hours)
    return (
        records.lazy()
        .filter(
            (pl.col("matured_at") <= as_of)
            & (pl.col("matured_at") > start)
            & (pl.col("horizon_hours") == horizon)
        )
        .select("strategy", "gap_bps")
    )


def strategy_tails_reference(
    records: pl.DataFrame | pl.LazyFrame,
    as_of: datetime,
    policy: Policy,
    horizon_hours: int | None = None,
    alpha: float = 0.05,
) -> pl.DataFrame:
    """:func:`strategy_tails` written as one polars query (a rank of every gap within its
    strategy, six sorted sums): the definition the faster function is tested against."""
    ranked = (
        _window(records, as_of, policy, horizon_hours)
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
    tails = ranked.group_by("strategy").agg(
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
    return with_prior(tails.collect(engine="in-memory"), policy)


def _sequential_sum(values: np.ndarray) -> float:
    """``((0 + v1) + v2) + …``: the left-to-right sum polars' ``cum_sum().last()`` gives (it
    starts from +0.0, so a sum of zeros is +0.0 whatever their signs)."""
    return float(np.cumsum(np.concatenate([[0.0], values]))[-1])


def _sorted_sum(values: np.ndarray) -> float:
    """The sum of ``values`` in ascending order, left to right (``sort().cum_sum().last()``).

    Zeros change a non-zero partial sum not at all (and a zero one keeps its +0.0), so only
    the non-zero values are sorted and summed.
    """
    return _sequential_sum(np.sort(values[values != 0]))


def _strategy_row(gaps: np.ndarray, k: float, m: float) -> tuple[float, float, float, float]:
    """``(cvar, worst, Σ gap, Σ |gap|)`` of one strategy's gaps, each sum taken as
    :func:`strategy_tails_reference` takes it (sorted, left to right).

    The CVaR's shares are 1 for the ``m − 1`` smallest gaps, ``min(k − m + 1, 1)`` for the
    ``m``-th and 0 for the rest, so only the ``m`` smallest gaps are selected
    (``np.partition``) and sorted; the zero shares add nothing to either sum.
    """
    ordered = np.sort(gaps)
    m_i = int(m)
    frac = min(k - m + 1.0, 1.0)
    shares = np.ones(m_i)
    shares[m_i - 1] = frac
    products = shares * ordered[:m_i]
    numerator = _sorted_sum(products)  # the other shares are 0: their products add nothing
    denominator = _sequential_sum(np.sort(shares))
    return (
        numerator / denominator,
        float(gaps.min()),  # in row order, as polars takes the minimum (-0.0 vs 0.0)
        _sequential_sum(ordered),
        _sorted_sum(np.abs(ordered)),
    )


def strategy_tails(
    records: pl.DataFrame | pl.LazyFrame,
    as_of: datetime,
    policy: Policy,
    horizon_hours: int | None = None,
    alpha: float = 0.05,
) -> pl.DataFrame:
    """One row per strategy with matured gaps in the CVaR window: ``TAIL_COLUMNS``.

    The same numbers, bit for bit, as :func:`strategy_tails_reference` (a rank of every gap
    within its strategy and six sorted sums in one polars query), computed per strategy with
    NumPy: one sort of the strategy's gaps serves its worst gap, the sorted sum of its gaps
    and the CVaR's ``m`` smallest; ``k`` is rounded by polars as the reference rounds it.
    """
    window = _window(records, as_of, policy, horizon_hours).collect()
    names = window["strategy"].drop_nulls().unique().sort().to_list()
    has_null = window["strategy"].null_count() > 0
    codes = window["strategy"].cast(pl.Enum(names)).to_physical()
    if has_null:  # a null strategy is a group of its own, as polars groups it (sorted first)
        codes = (codes.cast(pl.Int64) + 1).fill_null(0)
        names = [None, *names]
    code_array = codes.to_numpy().astype(np.int64)
    gaps = window["gap_bps"].to_numpy().astype(np.float64)
    counts = np.bincount(code_array, minlength=len(names))
    order = np.argsort(
        code_array.astype(np.uint16 if len(names) < 2**16 else np.int64), kind="stable"
    )
    bounds = np.concatenate([[0], np.cumsum(counts)])
    present = np.flatnonzero(counts)
    k_all = (pl.Series(counts[present], dtype=pl.Float64) * alpha).round(9).to_numpy()
    rows = []
    for code, k in zip(present.tolist(), k_all.tolist(), strict=True):
        group = gaps[order[bounds[code] : bounds[code + 1]]]
        m = max(math.ceil(k), 1.0)
        cvar, worst, total, total_abs = _strategy_row(group, k, float(m))
        n = group.size
        rows.append((names[code], n, cvar, worst, total / n, total_abs / n))
    frame = pl.DataFrame(
        rows,
        schema={
            "strategy": pl.String,
            "n": pl.Int64,
            "gap_cvar95_bps": pl.Float64,
            "worst_gap": pl.Float64,
            "mean_gap": pl.Float64,
            "mean_abs_gap": pl.Float64,
        },
        orient="row",
    )
    return with_prior(frame, policy)
