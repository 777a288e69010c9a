"""The allocation's inputs as arrays: one :class:`Fleet` from stats dicts or from frames.

Every statistic becomes a :class:`Column` (value, range-checked value, absent flag and the
problem with each unusable number, parsed by :func:`~meta_supervisor.allocate.numbers.
parse_number`); strategies become integer codes; confidence and tails are looked up per
agent. Both constructors give the same arrays for the same rows, so the dict path (the
seed's ``compute_weights``) and the frame path (the cycle) decide byte for byte alike.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl

from meta_supervisor.allocate.decision import iso
from meta_supervisor.allocate.inputs import Confidence, Tail
from meta_supervisor.allocate.numbers import finite_number, parse_number
from meta_supervisor.policy.model import Policy
from meta_supervisor.typing import BoolArray, FloatArray, IntArray
from meta_supervisor.units import MULTIPLIER_EPS

__all__ = ["RANGES", "Column", "Fleet", "fleet_from_dicts", "fleet_from_frames"]

RANGES: dict[str, tuple[float, float]] = {
    "pnl_sum_bps": (-math.inf, math.inf),
    "hit_rate": (0.0, 1.0),
    "error_rate": (0.0, 1.0),
    "avg_abs_error_bps": (0.0, math.inf),
    "max_drawdown_bps": (-math.inf, math.inf),
    "n_records": (0.0, math.inf),
    "expected_records": (0.0, math.inf),
}
_PLAIN_TYPES = frozenset({float, int, type(None)})


@dataclass
class Column:
    """One statistic for every agent.

    ``value``: the number, NaN when absent or unusable (what the evidence profile reads);
    ``checked``: also NaN outside the statistic's range (what the seed profile reads);
    ``absent``: ``None`` or missing; ``problems``: agent index -> why the value is unusable.
    """

    value: FloatArray
    checked: FloatArray
    absent: BoolArray
    problems: dict[int, str]


def _column(value: FloatArray, absent: BoolArray, problems: dict[int, str], key: str) -> Column:
    """Add the non-finite and range problems and the range-checked values."""
    value = np.where(absent, np.nan, value)
    bad = np.flatnonzero(~np.isfinite(value) & ~absent)
    for i in bad.tolist():
        if i not in problems:
            problems[i] = f"is not finite ({float(value[i])!r})"
    value[bad] = np.nan
    checked = value
    low, high = RANGES.get(key, (-math.inf, math.inf))
    outside = np.flatnonzero((value < low) | (value > high))
    if outside.size:
        checked = value.copy()
        for i in outside.tolist():
            problems[i] = f"is outside [{low:g}, {high:g}] ({float(value[i]):g})"
        checked[outside] = np.nan
    return Column(value, checked, absent, problems)


def _column_from_values(values: list[Any], key: str) -> Column:
    """Parse any Python values (hostile ones included) as :func:`_number` does."""
    n = len(values)
    if set(map(type, values)) <= _PLAIN_TYPES:
        # The common case: floats, ints and None convert at C speed (None -> NaN). An integer
        # too large for a float raises there; it takes the slow path below (unusable, named).
        with contextlib.suppress(OverflowError):
            value = np.array(values, dtype=np.float64).reshape(n)
            absent = np.fromiter((v is None for v in values), bool, n)
            return _column(value, absent, {}, key)
    value = np.full(n, np.nan)
    absent = np.zeros(n, dtype=bool)
    problems: dict[int, str] = {}
    for i, v in enumerate(values):
        number, problem = parse_number(v)
        if problem is not None:
            problems[i] = problem
        elif number is None:
            absent[i] = True
        else:
            value[i] = number
    return _column(value, absent, problems, key)


def _column_from_series(series: pl.Series | None, n: int, key: str) -> Column:
    """A frame column: numeric dtypes vectorised (null = absent), anything else as values."""
    if series is None:
        return _column(np.full(n, np.nan), np.ones(n, dtype=bool), {}, key)
    if series.dtype.is_numeric():
        value = series.to_numpy().astype(np.float64)  # nulls -> NaN
        absent = series.is_null().to_numpy() if series.null_count() else np.zeros(n, dtype=bool)
        return _column(value, absent, {}, key)
    return _column_from_values(series.to_list(), key)


def _strategy_names(value: Any) -> tuple[str, str]:
    """``(strategy, group)``: the strategy as the explanation and the tails read it (stripped,
    ``"unclassified"`` when missing), and as the evidence profile groups agents by it."""
    strategy = str(value).strip() if value not in (None, "") else "unclassified"
    return strategy, str(value or "unclassified")


def _is_kill(value: Any) -> bool:
    return isinstance(value, str) and value.strip().upper() == "KILL"


@dataclass
class Fleet:
    """The allocation's inputs as arrays, one entry per agent in name order.

    ``views``, ``confidence`` and ``tails`` give the inputs as the explanation and the inputs
    fingerprint show them; they are called only when the explanation is built.
    """

    names: list[Any]
    columns: dict[str, Column]
    strategy_code: IntArray  # per agent: index into strategies
    strategies: list[str]  # per code: the strategy as explained and looked up in the tails
    groups: IntArray  # per agent: the evidence profile's strategy group
    killed: BoolArray
    has_confidence: BoolArray
    confidence_multiplier: FloatArray
    has_tail: BoolArray  # a tail whose used CVaR is not None
    tail_used: FloatArray  # that CVaR (bps), NaN without one
    tail_number: FloatArray  # the same where it is a finite number, else NaN
    tail_scale: FloatArray  # the strategy's mean |gap| (bps), NaN without one
    views: Callable[[], list[dict[str, Any]]]  # per agent: its stats, JSON-safe (cached)
    confidence: Callable[[], Mapping[str, Confidence]]
    tails: Callable[[], Mapping[str, Tail]]

    def bad_confidence(self, policy: Policy) -> BoolArray:
        """Agents whose given confidence multiplier is not finite or lies outside
        ``[confidence_floor, confidence_ceiling]``: an unusable number, gated like one."""
        value = self.confidence_multiplier
        low, high = policy.confidence_floor, policy.confidence_ceiling
        inside = (value >= low - MULTIPLIER_EPS) & (value <= high + MULTIPLIER_EPS)
        return self.has_confidence & ~(np.isfinite(value) & inside)

    def problems(self, policy: Policy) -> dict[int, list[str]]:
        """Agent index -> its unusable numbers, in the order of ``RANGES``, then confidence."""
        out: dict[int, list[str]] = {}
        for key in RANGES:
            for i, problem in self.columns[key].problems.items():
                out.setdefault(i, []).append(f"{key} {problem}")
        for i in np.flatnonzero(self.bad_confidence(policy)).tolist():
            out.setdefault(i, []).append(
                f"confidence multiplier {float(self.confidence_multiplier[i])!r} is outside "
                f"[{policy.confidence_floor:g}, {policy.confidence_ceiling:g}]"
            )
        return out


def _strategy_codes(
    values: list[Any],
) -> tuple[IntArray, list[str], IntArray]:
    """Codes per agent, the strategy per code and the evidence group per code."""
    seen: dict[str, int] = {}
    strategies: list[str] = []
    group_of: dict[str, int] = {}
    group_codes: list[int] = []
    codes = np.empty(len(values), dtype=np.int64)
    for i, value in enumerate(values):
        # Only strings share a code: 1, 1.0 and True (equal as keys) name different strategies.
        code = seen.get(value) if type(value) is str else None
        if code is None:
            strategy, group = _strategy_names(value)
            code = len(strategies)
            strategies.append(strategy)
            group_codes.append(group_of.setdefault(group, len(group_of)))
            if type(value) is str:
                seen[value] = code
        codes[i] = code
    return codes, strategies, np.array(group_codes, dtype=np.int64)


def _tail_arrays(
    codes: IntArray,
    strategies: list[str],
    used_by_strategy: Mapping[str, Any],
    scale_by_strategy: Mapping[str, Any],
) -> tuple[BoolArray, FloatArray, FloatArray, FloatArray]:
    """Per agent: has a used CVaR (not None), the value, the value as a finite number (NaN
    otherwise: what the evidence profile reads) and the strategy's mean |gap| (NaN if none)."""
    present, used, number, scale = [], [], [], []
    for strategy in strategies:
        value = used_by_strategy.get(strategy)
        present.append(value is not None)
        used.append(np.nan if value is None else float(value))
        finite = finite_number(value)
        number.append(np.nan if finite is None else finite)
        size = finite_number(scale_by_strategy.get(strategy))
        scale.append(np.nan if size is None else size)
    return tuple(  # type: ignore[return-value]
        np.array(a, dtype=t).reshape(len(strategies))[codes]
        for a, t in ((present, bool), (used, np.float64), (number, np.float64), (scale, np.float64))
    )


def fleet_from_dicts(
    agent_stats: Mapping[str, Mapping[str, Any]],
    confidence: Mapping[str, Confidence],
    tails: Mapping[str, Tail],
    policy: Policy,
    extra_keys: Sequence[str] = (),
) -> Fleet:
    names = sorted(agent_stats)
    # Copies: the explanation is built later, from the inputs as they were at the call.
    rows = [dict(agent_stats[name]) for name in names]
    confidence = dict(confidence)
    tails = dict(tails)
    keys = [*RANGES, *extra_keys]
    columns = {k: _column_from_values([r.get(k) for r in rows], k) for k in keys}
    codes, strategies, group_of = _strategy_codes([r.get("strategy") for r in rows])
    decisions = [r.get("decision") for r in rows]
    killed = np.fromiter(
        (d is not None and _is_kill(d) for d in decisions), dtype=bool, count=len(rows)
    )
    held = [confidence.get(name) for name in names]
    has_conf = np.fromiter((c is not None for c in held), dtype=bool, count=len(held))
    multiplier = np.array(
        [policy.confidence_prior if c is None else c.multiplier for c in held], dtype=np.float64
    ).reshape(len(held))
    has_tail, used, used_number, tail_scale = _tail_arrays(
        codes,
        strategies,
        {k: (None if t is None else t.gap_cvar95_used_bps) for k, t in tails.items()},
        {k: (None if t is None else t.mean_abs_gap) for k, t in tails.items()},
    )
    return Fleet(
        names=names,
        columns=columns,
        strategy_code=codes,
        strategies=strategies,
        groups=group_of[codes],
        killed=killed,
        has_confidence=has_conf,
        confidence_multiplier=multiplier,
        has_tail=has_tail,
        tail_used=used,
        tail_number=used_number,
        tail_scale=tail_scale,
        views=functools.cache(lambda: [_inputs_view(row) for row in rows]),
        confidence=lambda: confidence,
        tails=lambda: tails,
    )


def _lookup(
    agents: pl.Series, keys: pl.Series, values: pl.Series, policy: Policy
) -> tuple[BoolArray, FloatArray]:
    """Per agent (``agents`` in order): has a confidence row, and its multiplier (the prior
    without one). A repeated agent keeps its last row, as a dict built from the rows would."""
    right = pl.DataFrame({"agent": keys, "#conf": values})
    numbered = agents.to_frame("agent").with_row_index("#row")
    for attempt in range(2):
        # An inner join in any order, placed by row number: half the cost of an ordered join.
        found = right.join(numbered, on="agent", how="inner")
        rows = found["#row"].to_numpy().astype(np.int64)
        held = np.zeros(agents.len(), dtype=bool)
        held[rows] = True
        if np.count_nonzero(held) == rows.size or attempt:
            break
        right = right.unique("agent", keep="last", maintain_order=True)  # repeated agents
    multiplier = np.full(agents.len(), policy.confidence_prior)
    multiplier[rows] = found["#conf"].to_numpy()
    return held, multiplier


def fleet_from_frames(
    stats: pl.DataFrame,
    confidence: pl.DataFrame | None,
    tails: pl.DataFrame | None,
    policy: Policy,
    extra_keys: Sequence[str] = (),
) -> Fleet:
    if "agent" not in stats.columns:
        raise ValueError("stats frame has no 'agent' column")
    if stats["agent"].null_count():
        raise ValueError("stats frame: 'agent' is null in some rows")
    agents = stats["agent"]
    if not agents.is_sorted():
        stats = stats.sort("agent")
        agents = stats["agent"]
    if agents.n_unique() != stats.height:
        dup = stats.filter(pl.col("agent").is_duplicated())["agent"][0]
        raise ValueError(f"stats frame: agent {dup!r} appears in more than one row")
    n = stats.height
    names = agents.to_list()
    keys = [*RANGES, *extra_keys]
    numeric = [k for k in keys if k in stats.columns and stats[k].dtype.is_numeric()]
    # One conversion for all numeric columns (each polars call has a fixed cost); nulls -> NaN.
    matrix = stats.select(pl.col(numeric).cast(pl.Float64)).to_numpy() if numeric else None
    columns = {}
    for k in keys:
        if k in numeric and matrix is not None:
            value = matrix[:, numeric.index(k)].copy()
            nulls = stats[k].null_count()
            absent = np.isnan(value)
            if not nulls:
                absent[:] = False
            elif np.count_nonzero(absent) != nulls:  # NaN values besides the nulls
                absent = stats[k].is_null().to_numpy()
            columns[k] = _column(value, absent, {}, k)
        else:
            columns[k] = _column_from_series(stats[k] if k in stats.columns else None, n, k)
    strategy = stats["strategy"] if "strategy" in stats.columns else None
    if strategy is not None and strategy.dtype == pl.String:
        # Few distinct strategies: name each once, find each agent's by binary search.
        filled = strategy.fill_null("") if strategy.null_count() else strategy
        distinct = filled.unique().sort()
        per, strategies, group_of = _strategy_codes(distinct.to_list())
        codes = per[distinct.search_sorted(filled).to_numpy().astype(np.int64)]
    else:
        column = strategy.to_list() if strategy is not None else [None] * n
        codes, strategies, group_of = _strategy_codes(column)
    if "decision" in stats.columns:
        killed = np.array([_is_kill(d) for d in stats["decision"].to_list()], dtype=bool)
    else:
        killed = np.zeros(n, dtype=bool)
    has_conf = np.zeros(n, dtype=bool)
    multiplier = np.full(n, policy.confidence_prior)
    if confidence is not None and confidence.height:
        values = confidence["confidence"].cast(pl.Float64)
        if confidence["agent"].equals(agents):  # the same agents in the same order
            has_conf = np.ones(n, dtype=bool)
            multiplier = values.to_numpy().astype(np.float64)
        else:
            has_conf, multiplier = _lookup(agents, confidence["agent"], values, policy)
    used_by_strategy: dict[Any, Any] = {}
    scale_by_strategy: dict[Any, Any] = {}
    if tails is not None:
        names_t = tails["strategy"].to_list()
        used_by_strategy = dict(zip(names_t, tails["gap_cvar95_used_bps"].to_list(), strict=True))
        if "mean_abs_gap" in tails.columns:
            scale_by_strategy = dict(zip(names_t, tails["mean_abs_gap"].to_list(), strict=True))
    has_tail, tail_used, tail_number, tail_scale = _tail_arrays(
        codes, strategies, used_by_strategy, scale_by_strategy
    )

    def confidence_map() -> dict[str, Confidence]:
        if confidence is None:
            return {}
        return Confidence.by_agent(confidence)

    def tail_map() -> dict[str, Tail]:
        if tails is None:
            return {}
        return {
            row["strategy"]: Tail.from_row(row, policy.cvar_lookback_hours)
            for row in tails.iter_rows(named=True)
        }

    return Fleet(
        names=names,
        columns=columns,
        strategy_code=codes,
        strategies=strategies,
        groups=group_of[codes],
        killed=killed,
        has_confidence=has_conf,
        confidence_multiplier=multiplier,
        has_tail=has_tail,
        tail_used=tail_used,
        tail_number=tail_number,
        tail_scale=tail_scale,
        views=functools.cache(lambda: _frame_views(stats)),
        confidence=functools.cache(confidence_map),
        tails=functools.cache(tail_map),
    )


def _view_value(value: Any) -> Any:
    """One input, JSON-safe: non-finite numbers and odd types become strings."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        number = finite_number(value)  # an integer too large for a float is not a crash
        return number if number is not None else repr(value)[:80]
    if isinstance(value, datetime):
        return iso(value)
    return repr(value)[:80]


def _inputs_view(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The raw inputs, JSON-safe (non-finite numbers and odd types become strings)."""
    return {str(key): _view_value(raw[key]) for key in sorted(raw, key=str)}


def _view_column(series: pl.Series) -> list[Any]:
    """:func:`_view_value` of every value of a column, by dtype where that is faster."""
    dtype = series.dtype
    if dtype in (pl.String, pl.Boolean, pl.Null):
        return series.to_list()
    if dtype.is_integer() or dtype.is_float():
        as_float = series.cast(pl.Float64)  # float(int) rounds to nearest, as the cast does
        values = as_float.to_list()
        odd = ~np.isfinite(as_float.to_numpy())
        if as_float.null_count():
            odd &= ~as_float.is_null().to_numpy()
        for i in np.flatnonzero(odd).tolist():
            values[i] = repr(values[i])
        return values
    if isinstance(dtype, pl.Datetime) and dtype.time_zone == "UTC":
        return _iso_column(series)
    return [_view_value(v) for v in series.to_list()]


#: Microseconds since the epoch of 0001-01-01T00:00 and of 10000-01-01T00:00 (Python's range).
_FIRST_US, _END_US = -62_135_596_800_000_000, 253_402_300_800_000_000


def _iso_column(series: pl.Series) -> list[Any]:
    """:func:`~meta_supervisor.allocate.decision.iso` of every value of a UTC datetime column
    (``None`` for a null), at once: seconds by NumPy, then ``.ffffff`` where the microseconds
    are not 0, then ``Z``, as ``datetime.isoformat`` writes them. A unit finer than µs (which a
    Python datetime cannot hold) is left to :func:`iso`; a value outside years 1-9999 (no
    Python datetime holds it; reading it as one panics in polars) is written as its count of
    units since the epoch, never as another instant."""
    unit = series.dtype.time_unit  # type: ignore[attr-defined]
    if unit not in ("us", "ms"):
        return [_view_value(v) for v in series.to_list()]
    physical = series.to_physical()
    raw = physical.fill_null(0).to_numpy().astype(np.int64)
    per = 1000 if unit == "ms" else 1
    # the range is checked in the column's own unit, before any scaling could wrap around
    outside = (raw < -(-_FIRST_US // per)) | (raw >= -(-_END_US // per))
    us = np.where(outside, 0, raw) * per
    seconds = np.datetime_as_string(us.astype("datetime64[us]"), unit="s").tolist()
    fraction = (us % 1_000_000).tolist()
    out: list[Any] = [
        f"{s}.{f:06d}Z" if f else f"{s}Z" for s, f in zip(seconds, fraction, strict=True)
    ]
    for i in np.flatnonzero(outside).tolist():  # no instant a datetime holds: said as it is
        out[i] = f"{int(raw[i])} {unit} since 1970-01-01 (outside years 1-9999)"
    if physical.null_count():
        for i in np.flatnonzero(physical.is_null().to_numpy()).tolist():
            out[i] = None
    return out


def _frame_views(stats: pl.DataFrame) -> list[dict[str, Any]]:
    """:func:`_inputs_view` of every row of ``stats``, built column by column."""
    keys = sorted(stats.columns)
    columns = [_view_column(stats[k]) for k in keys]
    return [dict(zip(keys, values, strict=True)) for values in zip(*columns, strict=True)]
