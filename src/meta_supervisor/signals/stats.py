"""Per-agent statistics as of an instant, from the ledger's records and telemetry.

Pure: frames in, frame out; no file, no clock. Definitions (DESIGN.md, normative):

* **Visibility**: a record exists at ``as_of`` only if ``matured_at <= as_of``.
* **Window**: records at ``policy.horizon_hours`` with ``matured_at`` in
  ``(as_of − lookback_hours, as_of]``; telemetry runs with ``ts`` in the same interval.
* **Order**: by ``matured_at``, then ``ts``, then ``record_id`` (never file order).
* ``pnl_sum_bps`` = Σ realised; ``hit_rate`` = share with realised > 0;
  ``avg_abs_error_bps`` = mean |gap|; ``max_drawdown_bps`` ≤ 0 on the cumulative realised path
  starting at 0 (see :func:`meta_supervisor.signals.measures.max_drawdown`);
  ``error_rate`` = share of telemetry runs with an error (null when there is no telemetry).
* An agent's ``strategy`` is that of its latest record in the window.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from meta_supervisor.policy.model import Policy
from meta_supervisor.signals.measures import below_peak, cumulative_pnl
from meta_supervisor.signals.order import ORDER, in_record_order

__all__ = ["STATS_COLUMNS", "agent_stats", "visible_window"]

STATS_COLUMNS = [
    "agent",
    "strategy",
    "n_records",
    "pnl_sum_bps",
    "pnl_mean_bps",
    "pnl_std_bps",
    "hit_rate",
    "avg_abs_error_bps",
    "max_drawdown_bps",
    "last_matured_at",
    "n_runs",
    "error_rate",
]


def visible_window(
    records: pl.DataFrame | pl.LazyFrame,
    as_of: datetime,
    lookback_hours: float,
    horizon_hours: int | None,
) -> pl.LazyFrame:
    """Records visible at ``as_of`` that matured in ``(as_of − lookback, as_of]``, in order."""
    start = as_of - timedelta(hours=lookback_hours)
    lazy = records.lazy()
    cond = (pl.col("matured_at") <= as_of) & (pl.col("matured_at") > start)
    if horizon_hours is not None:
        cond = cond & (pl.col("horizon_hours") == horizon_hours)
    return lazy.filter(cond).sort(ORDER)


def _window_rows(
    records: pl.DataFrame | pl.LazyFrame,
    as_of: datetime,
    lookback_hours: float,
    horizon_hours: int | None,
) -> pl.DataFrame:
    """The columns agent stats need, of the records in the window (unsorted)."""
    start = as_of - timedelta(hours=lookback_hours)
    cond = (pl.col("matured_at") <= as_of) & (pl.col("matured_at") > start)
    if horizon_hours is not None:
        cond = cond & (pl.col("horizon_hours") == horizon_hours)
    columns = ["agent", "strategy", "realized_pnl_bps", "gap_bps", *ORDER]
    return records.lazy().filter(cond).select(columns).collect()


def _in_order(frame: pl.DataFrame) -> pl.LazyFrame:
    """``frame`` sorted by ``ORDER``, as :func:`visible_window` sorts (without sorting rows
    that arrive in time order, and on ``record_id`` only within exact ``(matured_at, ts)``
    ties: :func:`meta_supervisor.signals.order.in_record_order`)."""
    return in_record_order(frame).lazy()


def agent_stats(
    records: pl.DataFrame | pl.LazyFrame,
    telemetry: pl.DataFrame | pl.LazyFrame | None,
    as_of: datetime,
    policy: Policy,
) -> pl.DataFrame:
    """One row per agent seen in the window (records or telemetry), columns ``STATS_COLUMNS``.

    Agents present only in telemetry get ``n_records = 0`` and null PnL statistics.
    """
    window = _in_order(_window_rows(records, as_of, policy.lookback_hours, policy.horizon_hours))
    per_record = window.with_columns(below_peak(cumulative_pnl("agent"), "agent").alias("_dd"))
    from_records = per_record.group_by("agent").agg(
        pl.col("strategy").last().alias("strategy"),
        pl.len().cast(pl.Int64).alias("n_records"),
        pl.col("realized_pnl_bps").sum().alias("pnl_sum_bps"),
        pl.col("realized_pnl_bps").mean().alias("pnl_mean_bps"),
        # two-pass sample std written out: polars' grouped std kernel gave different last bits
        # for the same ordered window depending on how the input frame was built
        pl.when(pl.len() > 1)
        .then(
            (
                (pl.col("realized_pnl_bps") - pl.col("realized_pnl_bps").mean()).pow(2).sum()
                / (pl.len() - 1)
            ).sqrt()
        )
        .alias("pnl_std_bps"),
        (pl.col("realized_pnl_bps") > 0).mean().alias("hit_rate"),
        pl.col("gap_bps").abs().mean().alias("avg_abs_error_bps"),
        pl.min_horizontal(pl.col("_dd").min(), pl.lit(0.0)).alias("max_drawdown_bps"),
        pl.col("matured_at").max().alias("last_matured_at"),
    )
    if telemetry is None:
        runs = pl.LazyFrame(
            schema={"agent": pl.String, "n_runs": pl.Int64, "error_rate": pl.Float64}
        )
    else:
        start = as_of - timedelta(hours=policy.lookback_hours)
        runs = (
            telemetry.lazy()
            .filter((pl.col("ts") <= as_of) & (pl.col("ts") > start))
            .group_by("agent")
            .agg(
                pl.len().cast(pl.Int64).alias("n_runs"),
                pl.col("is_error").cast(pl.Float64).mean().alias("error_rate"),
            )
        )
    # Every agent with any visible record belongs to the universe, so a stale agent shows up
    # with 0 records in the window (and is gated for it) instead of silently vanishing.
    # The latest record of an agent has its largest matured_at: sorting only those candidates
    # (about one per agent) gives the same answer as sorting every visible record.
    visible = records.lazy().filter(pl.col("matured_at") <= as_of)
    universe = (
        visible.filter(pl.col("matured_at") == pl.col("matured_at").max().over("agent"))
        .select("agent", "strategy", *ORDER)
        .sort(ORDER)
        .group_by("agent")
        .agg(pl.col("strategy").last().alias("_latest_strategy"))
        .join(runs.select("agent"), on="agent", how="full", coalesce=True)
    )
    joined = universe.join(from_records, on="agent", how="left").join(runs, on="agent", how="left")
    return (
        joined.with_columns(
            pl.col("n_records").fill_null(0),
            pl.col("pnl_sum_bps").fill_null(0.0),
            pl.col("max_drawdown_bps").fill_null(0.0),
            pl.col("n_runs").fill_null(0),
            pl.col("strategy").fill_null(pl.col("_latest_strategy")).fill_null("unclassified"),
        )
        .select(STATS_COLUMNS)
        .sort("agent")
        # polars 2's default streaming engine sums a group's morsels in a varying order, so
        # pnl_sum_bps & co. changed in the last bit from one run to the next (and the decision's
        # bytes with them); the in-memory engine sums the ordered window deterministically.
        .collect(engine="in-memory")
    )
