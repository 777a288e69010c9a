"""The reference points of the benchmark table: the best plain implementation and the floor.

* :func:`polars_cycle_frames`: the cycle's statistics, confidence and tails written plainly and
  well in polars, as a competent analyst would write them without the product: one read of the
  needed columns (``record_id`` only when an exact ``(matured_at, ts)`` tie needs it), one
  grouped pass per output (the drawdown inside the agent group-by, not in window passes), the
  CVaR from each strategy's worst ``max m`` gaps (``bottom_k``) instead of a rank of every gap.
  Same definitions as :mod:`meta_supervisor.signals.stats`, :mod:`~meta_supervisor.signals.
  confidence` and :mod:`~meta_supervisor.signals.tails` (DESIGN.md "Definitions"); the ``check``
  case asserts it equals the product (rtol 1e-9) before anything is timed.
* :func:`floor_pass`: what no implementation can beat: a pyarrow read of the needed columns
  (agent and strategy as the file's dictionary codes) and one NumPy pass (one ``bincount`` per
  column, grouped by agent) over them.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from meta_supervisor.policy.model import Policy
from meta_supervisor.signals.confidence import prior_ratio
from meta_supervisor.signals.incremental import COLUMNS

__all__ = [
    "FLOOR_COLUMNS",
    "PLAIN_COLUMNS",
    "check_close",
    "floor_pass",
    "polars_confidence",
    "polars_cycle_frames",
    "polars_stats",
    "polars_tails",
    "read_plain",
]

#: Columns every statistic needs (``record_id`` is read only to break exact time ties).
PLAIN_COLUMNS = [c for c in COLUMNS if c != "record_id"]
#: The floor reads what the statistics read, less ``ts`` (only the order's tie-break).
FLOOR_COLUMNS = [c for c in PLAIN_COLUMNS if c != "ts"]


def _window(frame: pl.DataFrame, as_of: datetime, hours: float, horizon: int) -> pl.DataFrame:
    start = as_of - timedelta(hours=hours)
    return frame.filter(
        (pl.col("matured_at") <= as_of)
        & (pl.col("matured_at") > start)
        & (pl.col("horizon_hours") == horizon)
    )


def _ordered(window: pl.DataFrame, reread: Path | None) -> pl.DataFrame:
    """``window`` in record order (``matured_at``, ``ts``, ``record_id``).

    Left as it is when already in time order (a ledger is appended in time), else sorted on
    the two timestamps; rows that tie on both (a handful in 10M) are then put in ``record_id``
    order, read from ``reread`` for those rows only (``_row`` numbers the file's rows).
    """
    if window.height < 2:
        return window
    m = window["matured_at"].to_physical().to_numpy()
    t = window["ts"].to_physical().to_numpy()
    step_m, step_t = np.diff(m), np.diff(t)
    if not bool(((step_m > 0) | ((step_m == 0) & (step_t >= 0))).all()):
        window = window.sort("matured_at", "ts")
        m = window["matured_at"].to_physical().to_numpy()
        t = window["ts"].to_physical().to_numpy()
    tied = np.flatnonzero((np.diff(m) == 0) & (np.diff(t) == 0))
    if not tied.size or reread is None:
        return window
    rows = np.union1d(tied, tied + 1)
    ids = pl.read_parquet(reread, columns=["record_id"])["record_id"]
    keys = pl.DataFrame(
        {
            "pos": rows,
            "run": np.cumsum(~np.isin(rows - 1, tied)),
            "id": ids.gather(window["_row"].gather(rows)),
        }
    ).sort("run", "id")
    order = np.arange(window.height)
    order[rows] = keys["pos"].to_numpy()
    return window[order]


def polars_stats(
    records: pl.DataFrame,
    telemetry: pl.DataFrame,
    as_of: datetime,
    policy: Policy,
    records_path: Path | None = None,
) -> pl.DataFrame:
    """Per agent: n, Σ pnl, mean, std, hit rate, mean |gap|, max drawdown (≤ 0, in record order),
    last strategy, error rate (telemetry runs with an error ÷ runs, same window)."""
    w = _window(records, as_of, policy.lookback_hours, policy.horizon_hours)
    w = _ordered(w, records_path)
    pnl = pl.col("realized_pnl_bps")
    path = pnl.cum_sum()
    stats = w.group_by("agent").agg(
        pl.col("strategy").last(),
        pl.len().alias("n_records"),
        pnl.sum().alias("pnl_sum_bps"),
        pnl.mean().alias("pnl_mean_bps"),
        pnl.std().alias("pnl_std_bps"),
        (pnl > 0).mean().alias("hit_rate"),
        pl.col("gap_bps").abs().mean().alias("avg_abs_error_bps"),
        (path - path.cum_max().clip(lower_bound=0.0)).min().clip(upper_bound=0.0).alias("max_dd"),
    )
    start = as_of - timedelta(hours=policy.lookback_hours)
    runs = (
        telemetry.filter((pl.col("ts") <= as_of) & (pl.col("ts") > start))
        .group_by("agent")
        .agg(pl.col("is_error").cast(pl.Float64).mean().alias("error_rate"))
    )
    return stats.join(runs, on="agent", how="full", coalesce=True).rename(
        {"max_dd": "max_drawdown_bps"}
    )


def polars_confidence(records: pl.DataFrame, as_of: datetime, policy: Policy) -> pl.DataFrame:
    """Per agent confidence multiplier (formula in :mod:`meta_supervisor.signals.confidence`)."""
    w = _window(records, as_of, policy.confidence_lookback_hours, policy.horizon_hours)
    age_h = (pl.lit(as_of) - pl.col("matured_at")).dt.total_microseconds() / 3.6e9
    weight = pl.lit(2.0).pow(-age_h.clip(lower_bound=0.0) / policy.confidence_half_life_hours)
    sigma = pl.col("expected_sigma_bps")
    scale = pl.when(sigma > 0).then(sigma).otherwise(pl.lit(policy.sim_error_scale_bps))
    w0, z0, tol = policy.confidence_prior_weight, prior_ratio(policy), policy.confidence_tolerance
    floor, ceiling = policy.confidence_floor, policy.confidence_ceiling
    ratio = (w0 * z0 + pl.col("wz")) / (w0 + pl.col("w"))
    return (
        w.group_by("agent")
        .agg(weight.sum().alias("w"), (weight * pl.col("gap_bps").abs() / scale).sum().alias("wz"))
        .with_columns(ratio.alias("ratio"))
        .select(
            "agent",
            pl.when(pl.col("ratio") <= tol)
            .then(pl.lit(ceiling))
            .otherwise(floor + (ceiling - floor) * tol / pl.col("ratio"))
            .clip(floor, ceiling)
            .alias("confidence"),
        )
    )


def polars_tails(
    records: pl.DataFrame, as_of: datetime, policy: Policy, alpha: float = 0.05
) -> pl.DataFrame:
    """Per strategy the fractional-tail CVaR95 of the gap (raw, signed), from each strategy's
    worst ``max m`` gaps only: with ``k = 0.05·n``, ``m = ⌈k⌉``,
    ``CVaR = (g(1) + … + g(m−1) + (k − m + 1)·g(m)) / k`` (``k < 1``: the worst gap)."""
    w = _window(records, as_of, policy.cvar_lookback_hours, policy.horizon_hours)
    counts = w.group_by("strategy").len()
    worst = max(1, max((math.ceil(round(alpha * n, 9)) for n in counts["len"]), default=1))
    tails = w.group_by("strategy").agg(
        pl.len().alias("n"), pl.col("gap_bps").bottom_k(worst).sort().alias("tail")
    )
    out = []
    for strategy, n, tail in tails.iter_rows():
        g = np.asarray(tail, dtype=np.float64)
        k = round(alpha * n, 9)
        m = math.ceil(k)
        cvar = g[0] if k < 1 else (g[: m - 1].sum() + (k - m + 1) * g[m - 1]) / k
        out.append((strategy, float(cvar)))
    return pl.DataFrame(
        out, schema={"strategy": pl.String, "gap_cvar95_bps": pl.Float64}, orient="row"
    )


def read_plain(records_path: Path) -> pl.DataFrame:
    """The needed columns of the ledger file, rows numbered (``_row``) for the tie-break."""
    return pl.read_parquet(records_path, columns=PLAIN_COLUMNS, row_index_name="_row")


def polars_cycle_frames(
    records_path: Path, telemetry_path: Path, as_of: datetime, policy: Policy
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Read the needed columns once, then stats, confidence and tails (the plain baseline)."""
    records = read_plain(records_path)
    telemetry = pl.read_parquet(telemetry_path, columns=["ts", "agent", "is_error"])
    return (
        polars_stats(records, telemetry, as_of, policy, records_path),
        polars_confidence(records, as_of, policy),
        polars_tails(records, as_of, policy),
    )


def floor_pass(records_path: Path, as_of: datetime, hours: float) -> dict[str, np.ndarray]:
    """pyarrow read of :data:`FLOOR_COLUMNS` (agent and strategy as dictionary codes) and one
    NumPy pass: per agent the count, Σ realised, hits, Σ |gap|, Σ σ and the latest
    ``matured_at``, per strategy the count, over the records matured in ``(as_of − hours,
    as_of]``. A lower bound on any implementation's cost, not a result."""
    import pyarrow.parquet as pq

    table = pq.read_table(
        records_path, columns=FLOOR_COLUMNS, read_dictionary=["agent", "strategy"]
    )
    matured = table["matured_at"].combine_chunks().cast("int64").to_numpy()
    as_of_us = int(as_of.timestamp() * 1_000_000)
    keep = (matured <= as_of_us) & (matured > as_of_us - int(hours * 3.6e9))
    agent = table["agent"].combine_chunks().indices.to_numpy()[keep]
    strategy = table["strategy"].combine_chunks().indices.to_numpy()[keep]
    pnl = table["realized_pnl_bps"].to_numpy()[keep]
    gap = table["gap_bps"].to_numpy()[keep]
    sigma = np.nan_to_num(table["expected_sigma_bps"].to_numpy()[keep])
    last = np.zeros(int(agent.max(initial=0)) + 1, dtype=np.int64)
    np.maximum.at(last, agent, matured[keep])
    return {
        "n": np.bincount(agent),
        "pnl": np.bincount(agent, weights=pnl),
        "hits": np.bincount(agent, weights=pnl > 0),
        "abs_gap": np.bincount(agent, weights=np.abs(gap)),
        "sigma": np.bincount(agent, weights=sigma),
        "last": last,
        "n_strategy": np.bincount(strategy),
    }


def check_close(
    name: str, ours: pl.DataFrame, theirs: pl.DataFrame, key: str, column: str, rtol: float = 1e-9
) -> int:
    """Assert two per-key columns agree (same keys, values within ``rtol``; nulls alike);
    return how many values were compared."""
    joined = ours.select(key, pl.col(column).alias("a")).join(
        theirs.select(key, pl.col(column).alias("b")), on=key, how="full", coalesce=True
    )
    if joined.height != ours.height or joined.height != theirs.height:
        raise AssertionError(f"{name}: keys differ ({ours.height} vs {theirs.height})")
    a = joined["a"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    b = joined["b"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    scale = max(1.0, float(np.nanmax(np.abs(b)))) if np.isfinite(b).any() else 1.0
    if not np.allclose(a, b, rtol=rtol, atol=1e-9 * scale, equal_nan=True):
        worst = int(np.nanargmax(np.abs(a - b)))
        raise AssertionError(
            f"{name}: {joined[key][worst]} product {a[worst]!r} plain {b[worst]!r}"
        )
    return len(a)
