"""Builders for record and telemetry frames in the ledger's schema, and small brute forces.

The brute forces here are deliberately naive (plain Python, O(n²)) so that the vectorised code
under test is checked against something written independently of it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from hypothesis import strategies as st

from meta_supervisor.allocate.decision import iso
from meta_supervisor.ingest.records import RECORD_SCHEMA, TELEMETRY_SCHEMA
from meta_supervisor.policy.model import Policy, Profile

AS_OF = datetime(2026, 1, 15, tzinfo=UTC)

#: A select profile small enough for property tests: its learned rule over 12 lags of 6 h
#: with a 24 h lookback (cells of 6 h), two records and two agents enough to count.
SMALL_SELECT = Policy(
    profile=Profile.SELECT,
    lookback_hours=24.0,
    selection_step_hours=6.0,
    selection_lags=12,
    min_records=2,
    evidence_min_agents=2,
)


def rec(
    agent: str,
    age_hours: float,
    realized: float,
    expected: float = 0.0,
    *,
    strategy: str = "momentum",
    horizon: int = 24,
    sigma: float | None = None,
    as_of: datetime = AS_OF,
    ts_offset_hours: float = 0.0,
    record_id: str | None = None,
) -> dict[str, Any]:
    """One normalised record that matured ``age_hours`` before ``as_of`` (negative: not yet)."""
    matured = as_of - timedelta(hours=age_hours)
    ts = matured - timedelta(hours=horizon) + timedelta(hours=ts_offset_hours)
    # keep matured_at = ts + horizon exactly, as the ingest does
    matured = ts + timedelta(hours=horizon)
    return {
        "record_id": record_id,
        "ts": ts,
        "matured_at": matured,
        "agent": agent,
        "strategy": strategy,
        "horizon_hours": horizon,
        "realized_pnl_bps": float(realized),
        "expected_pnl_bps": float(expected),
        "expected_sigma_bps": sigma,
        "gap_bps": float(realized) - float(expected),
        "run_id": None,
        "symbol": "BTC-USD",
        "direction": "LONG",
        "regime": "normal",
    }


def records_frame(rows: Sequence[dict[str, Any]]) -> pl.DataFrame:
    """A ledger frame from :func:`rec` rows; missing record ids become ``r00000``, ``r00001``..."""
    filled = []
    for i, given_row in enumerate(rows):
        row = dict(given_row)
        if row.get("record_id") is None:
            row["record_id"] = f"r{i:05d}"
        filled.append(row)
    if not filled:
        return pl.DataFrame(schema=RECORD_SCHEMA)
    return pl.DataFrame(filled, schema=RECORD_SCHEMA, orient="row")


def telemetry_frame(
    rows: Iterable[tuple[str, float, bool]], as_of: datetime = AS_OF
) -> pl.DataFrame:
    """Telemetry frame from ``(agent, age_hours, is_error)`` tuples."""
    data = [
        {
            "ts": as_of - timedelta(hours=age),
            "agent": agent,
            "run_id": f"t{i}",
            "is_error": is_error,
        }
        for i, (agent, age, is_error) in enumerate(rows)
    ]
    if not data:
        return pl.DataFrame(schema=TELEMETRY_SCHEMA)
    return pl.DataFrame(data, schema=TELEMETRY_SCHEMA, orient="row")


def raw_record(
    agent: str,
    ts: datetime,
    realized: float,
    expected: float = 0.0,
    *,
    strategy: str = "momentum",
    horizon: int = 24,
    run_id: str = "",
    sigma: float | None = 5.0,
) -> dict[str, Any]:
    """One line of the original system's ``alpha/reconciled.jsonl``."""
    return {
        "ts": iso(ts),
        "agent": agent,
        "run_id": run_id,
        "symbol": "BTC-USD",
        "direction": "LONG",
        "entry_price": 100.0,
        "exit_price": 100.0 * (1 + realized / 1e4),
        "horizon_hours": horizon,
        "realized_pnl_bps": realized,
        "expected_pnl_bps": expected,
        "expected_sigma_bps": sigma,
        "pnl_error_bps": realized - expected,
        "abs_error_bps": abs(realized - expected),
        "sim_version": "sim-3",
        "strategy_class": strategy,
        "regime": "normal",
        "confidence": 0.7,
        "score_final": 0.5,
    }


def write_jsonl(path: Path, rows: Iterable[dict[str, Any] | str]) -> Path:
    """Write rows (dicts as JSON, strings verbatim) one a line; create parent directories."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# ---------------------------------------------------------------- brute forces


def brute_drawdown(pnl: Sequence[float]) -> float:
    """O(n²): the worst ``c_j − c_i`` over ``i ≤ j`` on the path ``0, p1, p1+p2, ...``."""
    path = [0.0]
    for value in pnl:
        path.append(path[-1] + value)
    worst = 0.0
    for i in range(len(path)):
        for j in range(i, len(path)):
            worst = min(worst, path[j] - path[i])
    return worst


def brute_cvar_ru(values: Sequence[float], alpha: Fraction = Fraction(1, 20)) -> float:
    """Rockafellar–Uryasev, signed for a lower tail: ``max_t t − (1/k)·Σ (t − g)^+``, k = αn.

    The objective is concave and piecewise linear with kinks at the sample values, so scanning
    ``t`` over the sample is exact. ``k`` is an exact fraction (no float noise).
    """
    k = alpha * len(values)
    best = -math.inf
    for t in values:
        shortfall = math.fsum(max(t - g, 0.0) for g in values)
        best = max(best, t - float(Fraction(shortfall) / k))
    return best


def loop_cvar(values: Sequence[float], alpha: Fraction = Fraction(1, 20)) -> float:
    """DESIGN.md's formula with explicit loops: ``[g1 + … + g(m−1) + (k−m+1)·g(m)] / k``."""
    g = sorted(values)
    k = alpha * len(g)
    if k < 1:
        return g[0]
    m = math.ceil(k)
    head = 0.0
    for i in range(m - 1):
        head += g[i]
    return (head + float(k - m + 1) * g[m - 1]) / float(k)


def brute_water_fill(weights: Sequence[float], cap: float) -> list[float]:
    """Iterative water-filling: clamp, hand the excess to the uncapped in proportion, repeat."""
    w = [float(x) for x in weights]
    fixed = [False] * len(w)
    for _ in range(len(w) + 1):
        excess = 0.0
        for i, x in enumerate(w):
            if not fixed[i] and x > cap:
                excess += x - cap
                w[i] = cap
                fixed[i] = True
        if excess <= 0:
            break
        free = math.fsum(x for i, x in enumerate(w) if not fixed[i])
        if free <= 0:
            break  # everyone capped: the excess is cash
        for i, x in enumerate(w):
            if not fixed[i]:
                w[i] = x + excess * x / free
    return w


# ---------------------------------------------------------------- hypothesis fleets

#: Strategies the generated fleets draw from.
STRATEGIES = ["momentum", "basis", "perp_funding"]

#: One agent's stats dict, every statistic both profiles read, in plausible ranges (bps).
agent_stats_st = st.fixed_dictionaries(
    {
        "pnl_sum_bps": st.floats(-100, 3_000),
        "pnl_mean_bps": st.floats(-5, 20),
        "pnl_std_bps": st.floats(0.5, 50),
        "hit_rate": st.floats(0, 1),
        "error_rate": st.floats(0, 0.3),
        "avg_abs_error_bps": st.floats(0, 200),
        "strategy": st.sampled_from(STRATEGIES),
        "max_drawdown_bps": st.floats(-400, 0),
        "n_records": st.integers(0, 200),
    }
)
#: Strategy tails: gap CVaR95 (bps) per strategy.
tails_st = st.dictionaries(st.sampled_from(STRATEGIES), st.floats(-150, 10), max_size=3)


def fleet_strategies(
    names: Sequence[str], max_previous_weight: float
) -> tuple[st.SearchStrategy, st.SearchStrategy, st.SearchStrategy]:
    """``(fleet, confidence, previous)`` strategies over agents named from ``names``: stats per
    agent, confidence multipliers in [0.5, 1], and no previous decision or previous weights in
    ``[0, max_previous_weight]``."""
    fleet = st.dictionaries(st.sampled_from(names), agent_stats_st, min_size=1, max_size=len(names))
    conf = st.dictionaries(st.sampled_from(names), st.floats(0.5, 1.0), max_size=len(names))
    previous = st.one_of(
        st.none(),
        st.dictionaries(st.sampled_from(names), st.floats(0, max_previous_weight), max_size=4),
    )
    return fleet, conf, previous


def _bits(frame: pl.DataFrame, canonical_nan: bool = False) -> dict[str, list]:
    """Every column's values, floats by their int64 view (so -0.0 differs from 0.0) with a
    null mask; NaNs made one NaN when ``canonical_nan``."""
    out: dict[str, list] = {}
    for name in frame.columns:
        column = frame[name]
        if column.dtype == pl.Float64:
            nulls = column.is_null().to_list()
            array = column.fill_null(0.0).to_numpy().copy()
            if canonical_nan:
                array[np.isnan(array)] = np.nan
            values = array.view(np.int64).tolist()
            out[name] = list(zip(nulls, values, strict=True))
        else:
            out[name] = column.to_list()
    return out


def assert_same_bits(mine: tuple, theirs: tuple, canonical_nan: bool = False) -> None:
    """Frames equal bit for bit (``assert_frame_equal(check_exact=True)`` takes -0.0 for
    0.0)."""
    for a, b in zip(mine, theirs, strict=True):
        assert a.columns == b.columns and a.height == b.height
        assert _bits(a, canonical_nan) == _bits(b, canonical_nan)


def brute_earlier_scale(x: Sequence[float], cut: int) -> tuple[float, float]:
    """By hand, the broken cut's reference (:mod:`meta_supervisor.signals.broken`): the median
    of the records before ``cut`` (the latest ``MAX_SCALE_RECORDS`` of them) and their robust
    scale ``1.4826·median|x − median|``; ``(nan, nan)`` with fewer than ``MIN_SCALE_RECORDS``
    or a zero scale."""
    from meta_supervisor.signals.broken import MAD_TO_SIGMA, MAX_SCALE_RECORDS, MIN_SCALE_RECORDS

    if cut < MIN_SCALE_RECORDS:
        return math.nan, math.nan
    past = sorted(x[max(cut - MAX_SCALE_RECORDS, 0) : cut])
    med = float(np.median(past))
    scale = MAD_TO_SIGMA * float(np.median([abs(v - med) for v in past]))
    return (med, scale) if scale > 0 else (math.nan, math.nan)
