"""The allocation: per-agent statistics + confidence + strategy tails + policy -> decision.

Pure: no file, no clock (``as_of`` is an argument). Two profiles share the steps below and
differ in the quality and risk factors: ``evidence`` (the default; its factors are in
:mod:`meta_supervisor.allocate.evidence`) and ``seed``, DESIGN.md's "Allocation" made correct, whose
factors are the ones written here. Every step's output is kept in the explanation:

1. **gates** (each a named reason): operator exclusion (with reason and expiry), ``decision:
   "KILL"``, unusable numbers (non-numeric, NaN, inf, hit/error rate outside [0, 1], negative
   errors or counts), ``error_rate > max_error_rate``, ``pnl_sum_bps ≤ 0``, fewer than
   ``min_records`` records (only when the count is known).
2. **quality** ``q = sqrt(pnl_sum) · (0.6 + hit_rate) · confidence · 1/(1 + avg_abs_error/75)``.
3. **risk** ``r = cvar_mult · dd_mult`` with ``cvar_mult = max(0.25, 1 + 0.015·cvar)`` for a
   strategy CVaR95 of the gap ``cvar < 0`` (bps) and ``dd_mult = max(0.4, 1 + 0.01·dd)`` for a
   drawdown ``dd < 0`` (bps). A positive drawdown handed in is read as its magnitude.
4. **cap** the quality shares ``s_i = q_i / Σ_j q_j`` by water-filling
   (:func:`meta_supervisor.allocate.portfolio.cap_water_fill`): no share above the cap, the excess
   to the uncapped agents in proportion to quality, to cash when all are capped; then operator caps.
5. **pull-back** ``w_i = capped(s)_i · r_i``: normalising by the pre-risk total sends the capital
   that risk removes to cash, not to the other agents.

   DESIGN.md lists the pull-back before the cap. Capping *after* the risk multipliers let the
   water-filling hand a capped agent's excess to the agents that risk had just cut (in the demo
   a tail-penalised agent went from 0.9% after risk to 2.6% after the cap), undoing the pull-back.
   Capping the quality shares first keeps the cap's guarantees (``w_i ≤ cap`` since ``r_i ≤ 1``,
   no rank inversion by quality) and makes an agent's risk multiplier move only its own weight.
6. **gross cap**: scale down, never up.
7. **stability** against the previous decision (:func:`meta_supervisor.allocate.portfolio.smooth`);
   the cap and the gross are re-checked afterwards. No previous decision: the target itself.
8. **rounding down** so that ``Σ ≤ 1``; ``cash = 1 − Σ``.

Missing optional inputs never gate an agent: a missing ``hit_rate``, ``error_rate`` or
``max_drawdown_bps`` takes the seed's default (0), a missing ``avg_abs_error_bps`` applies no
sim-integrity penalty (the original system silently used 999), and each is said in the
explanation.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from meta_supervisor.allocate import evidence
from meta_supervisor.allocate.decision import Decision, fingerprint, iso
from meta_supervisor.allocate.inputs import Confidence, Override, Tail
from meta_supervisor.allocate.portfolio import apply_gross_cap, cap_water_fill, round_down, smooth
from meta_supervisor.policy.model import Policy, Profile
from meta_supervisor.signals.persistence import Persistence
from meta_supervisor.views.attribution import stability_note

__all__ = ["allocate", "allocate_frames"]

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.int64]


# ---------------------------------------------------------------- reading inputs


def _number(value: Any) -> tuple[float | None, str | None]:
    """``(number, None)``, ``(None, None)`` when absent, or ``(None, problem)`` when unusable."""
    if value is None:
        return None, None
    if isinstance(value, bool):
        return None, f"is a boolean ({value!r}), not a number"
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None, f"is not a number ({value[:40]!r})"
    else:
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None, f"is not a number ({type(value).__name__})"
    if not math.isfinite(number):
        return None, f"is not finite ({number!r})"
    return number, None


_RANGES: dict[str, tuple[float, float]] = {
    "pnl_sum_bps": (-math.inf, math.inf),
    "hit_rate": (0.0, 1.0),
    "error_rate": (0.0, 1.0),
    "avg_abs_error_bps": (0.0, math.inf),
    "max_drawdown_bps": (-math.inf, math.inf),
    "n_records": (0.0, math.inf),
}
# Read by the evidence profile only (no range: a negative mean is a fine mean).
_EVIDENCE_KEYS = ("pnl_mean_bps", "pnl_std_bps")
_PLAIN_TYPES = frozenset({float, int, type(None)})


@dataclass
class _Column:
    """One statistic for every agent.

    ``value``: the number, NaN when absent or unusable (what the evidence profile reads);
    ``checked``: also NaN outside the statistic's range (what the seed profile reads);
    ``absent``: ``None`` or missing; ``problems``: agent index -> why the value is unusable.
    """

    value: FloatArray
    checked: FloatArray
    absent: BoolArray
    problems: dict[int, str]


def _column(value: FloatArray, absent: BoolArray, problems: dict[int, str], key: str) -> _Column:
    """Add the non-finite and range problems and the range-checked values."""
    value = np.where(absent, np.nan, value)
    bad = np.flatnonzero(~np.isfinite(value) & ~absent)
    for i in bad.tolist():
        if i not in problems:
            problems[i] = f"is not finite ({float(value[i])!r})"
    value[bad] = np.nan
    checked = value
    low, high = _RANGES.get(key, (-math.inf, math.inf))
    outside = np.flatnonzero((value < low) | (value > high))
    if outside.size:
        checked = value.copy()
        for i in outside.tolist():
            problems[i] = f"is outside [{low:g}, {high:g}] ({float(value[i]):g})"
        checked[outside] = np.nan
    return _Column(value, checked, absent, problems)


def _column_from_values(values: list[Any], key: str) -> _Column:
    """Parse any Python values (hostile ones included) as :func:`_number` does."""
    n = len(values)
    if set(map(type, values)) <= _PLAIN_TYPES:
        # The common case: floats, ints and None convert at C speed (None -> NaN).
        value = np.array(values, dtype=np.float64).reshape(n)
        absent = np.fromiter((v is None for v in values), bool, n)
        return _column(value, absent, {}, key)
    value = np.full(n, np.nan)
    absent = np.zeros(n, dtype=bool)
    problems: dict[int, str] = {}
    for i, v in enumerate(values):
        number, problem = _number(v)
        if problem is not None:
            problems[i] = problem
        elif number is None:
            absent[i] = True
        else:
            value[i] = number
    return _column(value, absent, problems, key)


def _column_from_series(series: pl.Series | None, n: int, key: str) -> _Column:
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
class _Fleet:
    """The allocation's inputs as arrays, one entry per agent in name order.

    ``views``, ``confidence`` and ``tails`` give the inputs as the explanation and the inputs
    fingerprint show them; they are called only when the explanation is built.
    """

    names: list[Any]
    columns: dict[str, _Column]
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

    def problems(self) -> dict[int, list[str]]:
        """Agent index -> its unusable numbers, in the order of ``_RANGES``."""
        out: dict[int, list[str]] = {}
        for key in _RANGES:
            for i, problem in self.columns[key].problems.items():
                out.setdefault(i, []).append(f"{key} {problem}")
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
        finite = evidence.number(value)
        number.append(np.nan if finite is None else finite)
        size = evidence.number(scale_by_strategy.get(strategy))
        scale.append(np.nan if size is None else size)
    return tuple(  # type: ignore[return-value]
        np.array(a, dtype=t).reshape(len(strategies))[codes]
        for a, t in ((present, bool), (used, np.float64), (number, np.float64), (scale, np.float64))
    )


def _fleet_from_dicts(
    agent_stats: Mapping[str, Mapping[str, Any]],
    confidence: Mapping[str, Confidence],
    tails: Mapping[str, Tail],
    policy: Policy,
) -> _Fleet:
    names = sorted(agent_stats)
    # Copies: the explanation is built later, from the inputs as they were at the call.
    rows = [dict(agent_stats[name]) for name in names]
    confidence = dict(confidence)
    tails = dict(tails)
    keys = list(_RANGES) + (list(_EVIDENCE_KEYS) if policy.profile is Profile.EVIDENCE else [])
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
    return _Fleet(
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


def _fleet_from_frames(
    stats: pl.DataFrame,
    confidence: pl.DataFrame | None,
    tails: pl.DataFrame | None,
    policy: Policy,
) -> _Fleet:
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
    keys = list(_RANGES) + (list(_EVIDENCE_KEYS) if policy.profile is Profile.EVIDENCE else [])
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
        return {row["agent"]: Confidence.from_row(row) for row in confidence.iter_rows(named=True)}

    def tail_map() -> dict[str, Tail]:
        if tails is None:
            return {}
        return {
            row["strategy"]: Tail.from_row(row, policy.cvar_lookback_hours)
            for row in tails.iter_rows(named=True)
        }

    return _Fleet(
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


# ---------------------------------------------------------------- factors, vectorised


def _max(a: Any, b: Any) -> Any:
    """Python's ``max(a, b)`` elementwise: ``b`` only when ``b > a`` (NaN never wins)."""
    return np.where(b > a, b, a)


def _or_zero(x: FloatArray) -> FloatArray:
    """Python's ``x or 0.0`` with NaN for ``None``: NaN and ±0 become +0."""
    return np.where(np.isnan(x) | (x == 0), 0.0, x)


@dataclass
class _Computed:
    """Every number of the decision, one array per quantity (agents in name order)."""

    gates: dict[str, BoolArray]  # gate -> passed, in the explanation's order
    passed: BoolArray
    factors: dict[str, FloatArray]  # factor -> value, quality factors first, in order
    quality: FloatArray
    risk: FloatArray
    fleet: evidence.FleetEvidence | None
    extra: dict[str, FloatArray]  # per-agent numbers the reasons quote


#: ``pnl_sum_bps`` within this of 0 is 0 for the ``pnl_sum > 0`` gate: the same window summed
#: in another order (the store's running sums, a fresh compensated sum) lands on either side of
#: an exact 0 (0.1 + 0.2 − 0.3), and the gate must not flip a whole position on the last bit.
PNL_ZERO_BPS = 1e-6


def _compute(
    f: _Fleet, policy: Policy, excluded: BoolArray, persistence: Persistence | None = None
) -> _Computed:
    # Hostile numbers overflow (1e308 / 1e-10): inf, as Python's floats give, without warnings.
    with np.errstate(all="ignore"):
        return _compute_arrays(f, policy, excluded, persistence)


def _compute_arrays(
    f: _Fleet, policy: Policy, excluded: BoolArray, persistence: Persistence | None = None
) -> _Computed:
    c = f.columns
    err, n_rec, pnl = (c[k].checked for k in ("error_rate", "n_records", "pnl_sum_bps"))
    gates = {
        "operator_exclusion": ~excluded,
        "kill": ~f.killed,
        "usable_numbers": np.ones(len(f.names), dtype=bool),
        "error_rate": np.isnan(err) | (err <= policy.max_error_rate),
        "min_records": np.isnan(n_rec) | (n_rec >= policy.min_records),
    }
    for key in _RANGES:
        gates["usable_numbers"][list(c[key].problems)] = False
    # A loss inside the noise is no evidence: the evidence profile has no pnl_sum gate.
    if policy.profile is not Profile.EVIDENCE:
        gates["positive_pnl"] = ~np.isnan(pnl) & (pnl > PNL_ZERO_BPS)
    passed = np.logical_and.reduce(list(gates.values()))
    conf = np.where(f.has_confidence, f.confidence_multiplier, policy.confidence_prior)
    extra: dict[str, FloatArray] = {}
    fleet = None
    if policy.profile is Profile.EVIDENCE:
        n, mean, sd = c["n_records"].value, c["pnl_mean_bps"].value, c["pnl_std_bps"].value
        t = evidence.t_stats(n, mean, sd)
        in_fleet = evidence.eligible(n, c["error_rate"].value, policy)
        z, dd_own = evidence.drawdown_multipliers(c["max_drawdown_bps"].value, n, sd, policy)
        fleet = evidence.fleet_from_arrays(t, in_fleet, f.groups, policy, persistence, dd_own)
        shrunk, tilt = evidence.tilts(t, fleet, policy)
        # Without evidence of skill, neither calibration nor a drawdown inside the noise moves
        # capital between agents (the fleet's drawdown level still goes to cash).
        conf = evidence.confidence_used(conf, fleet, policy)
        _, dd_mult = evidence.drawdown_used(z, dd_own, fleet, policy)
        used = f.tail_number
        # The tail is the strategy's, so its scale is the strategy's own mean |gap|: scaling
        # by the agent's |gap| made a worse |gap| *lower* the penalty (and raise the weight).
        scale = f.tail_scale
        rho, tail_mult = evidence.tail_multipliers(used, scale, policy)
        factors = {"prior": np.ones(len(f.names)), "evidence": tilt, "confidence": conf}
        factors |= {"drawdown": dd_mult, "cvar": tail_mult}
        quality = 1.0 * tilt * conf
        risk = dd_mult * tail_mult
        extra = {"t": t, "shrunk": shrunk, "z": z, "rho": rho, "used": used, "dd_own": dd_own}
    else:
        pnl_used = _or_zero(pnl)
        pnl_used = _max(pnl_used, 0.0)  # max(p, 0.0)
        hit = _or_zero(c["hit_rate"].checked)
        aae = c["avg_abs_error_bps"].checked
        sim = np.where(np.isnan(aae), 1.0, 1.0 / (1.0 + aae / policy.sim_error_scale_bps))
        cvar = np.where(
            f.has_tail & (f.tail_used < 0),
            _max(policy.cvar_floor, 1.0 + f.tail_used * policy.cvar_k),
            1.0,
        )
        dd_in = c["max_drawdown_bps"].checked
        dd = _or_zero(np.where(np.isnan(dd_in), 0.0, -np.abs(dd_in)))
        dd_mult = np.where(dd < 0, _max(policy.drawdown_floor, 1.0 + dd * policy.drawdown_k), 1.0)
        factors = {
            "alpha": np.sqrt(pnl_used),
            "hit_rate": policy.hit_rate_offset + hit,
            "confidence": conf,
            "sim_integrity": sim,
            "cvar": cvar,
            "drawdown": dd_mult,
        }
        quality = factors["alpha"] * factors["hit_rate"] * conf * sim
        risk = cvar * dd_mult
        extra = {"pnl": pnl_used, "hit": hit, "dd": dd}
    return _Computed(
        gates=gates,
        passed=passed,
        factors=factors,
        quality=np.where(passed, quality, 0.0),
        risk=risk,
        fleet=fleet,
        extra=extra,
    )


def _active_overrides(overrides: Iterable[Override], as_of: datetime) -> dict[str, Override]:
    """The binding active override per agent: any exclusion, else the tightest cap.

    Keeping the latest-expiring one let a week-long cap shadow an hour-long exclusion.
    """
    active: dict[str, Override] = {}
    for o in sorted(overrides, key=lambda o: o.expires_at):
        if not o.active(as_of):
            continue
        held = active.get(o.agent)
        if held is None or _strictness(o) < _strictness(held):
            active[o.agent] = o
    return active


def _strictness(o: Override) -> tuple[int, float]:
    return (0, 0.0) if o.action == "exclude" else (1, math.inf if o.cap is None else o.cap)


# ---------------------------------------------------------------- the allocation


def allocate(
    agent_stats: Mapping[str, Mapping[str, Any]],
    *,
    as_of: datetime,
    policy: Policy | None = None,
    confidence: Mapping[str, Confidence] | None = None,
    tails: Mapping[str, Tail] | None = None,
    previous: Mapping[str, float] | None = None,
    overrides: list[Override] | tuple[Override, ...] = (),
    previous_hash: str | None = None,
    persistence: Persistence | None = None,
) -> Decision:
    """Decide each agent's share of capital as of ``as_of``; see the module docstring.

    Parameters
    ----------
    agent_stats : {agent: stats}
        The seed's stats dict per agent (``pnl_sum_bps, hit_rate, error_rate,
        avg_abs_error_bps, strategy, max_drawdown_bps``), optionally ``n_records`` and
        ``decision``. Any value may be hostile (a string, NaN, a list): it gates the agent
        with the reason.
    confidence : {agent: Confidence}, optional
        Agents absent get ``policy.confidence_prior``.
    tails : {strategy: Tail}, optional
        Strategies absent get no CVaR penalty.
    previous : {agent: weight}, optional
        The previous decision's weights, for the stability step.
    overrides : list of Override
        Only those active at ``as_of`` apply.
    persistence : Persistence, optional
        The evidence profile's learned tilt strength
        (:func:`meta_supervisor.signals.persistence.persistence` of the ledger as of ``as_of``);
        without it the profile uses the cross-sectional signal share. Ignored by the seed
        profile.

    Returns
    -------
    Decision
        Its per-agent explanations (``decision.agents``) and the inputs fingerprint are built
        on first access; weights, cash, gross and portfolio are computed here.
    """
    policy = policy or Policy()
    fleet = _fleet_from_dicts(agent_stats, confidence or {}, tails or {}, policy)
    return _decide(fleet, as_of, policy, previous, overrides, previous_hash, persistence)


def allocate_frames(
    stats: pl.DataFrame,
    confidence: pl.DataFrame | None = None,
    tails: pl.DataFrame | None = None,
    *,
    as_of: datetime,
    policy: Policy | None = None,
    previous: Mapping[str, float] | None = None,
    overrides: list[Override] | tuple[Override, ...] = (),
    previous_hash: str | None = None,
    persistence: Persistence | None = None,
) -> Decision:
    """:func:`allocate` on the cycle's frames, read as columns (no dict per agent).

    Parameters
    ----------
    stats : polars.DataFrame
        One row per agent (``agent`` unique), columns as
        :func:`meta_supervisor.signals.stats.agent_stats`
        returns them (any subset of the seed's statistics; a numeric column's null is "not
        reported"). Every column shows in the explanation's inputs.
    confidence : polars.DataFrame, optional
        :func:`meta_supervisor.signals.confidence.confidence_multipliers` (``agent, confidence,
        n_evidence, evidence_weight, error_ratio``).
    tails : polars.DataFrame, optional
        :func:`meta_supervisor.signals.tails.strategy_tails`; each tail's window is
        ``policy.cvar_lookback_hours``.

    Returns
    -------
    Decision
        Byte for byte the decision :func:`allocate` gives on the same rows as dicts (what
        :func:`meta_supervisor.cycle.run.cycle_inputs` builds).
    """
    policy = policy or Policy()
    fleet = _fleet_from_frames(stats, confidence, tails, policy)
    return _decide(fleet, as_of, policy, previous, overrides, previous_hash, persistence)


def _decide(
    f: _Fleet,
    as_of: datetime,
    policy: Policy,
    previous: Mapping[str, float] | None,
    overrides: Iterable[Override],
    previous_hash: str | None,
    persistence: Persistence | None = None,
) -> Decision:
    if policy.profile is not Profile.EVIDENCE:
        persistence = None  # the seed profile reads no such input (and hashes none)
    names = f.names
    n = len(names)
    active = _active_overrides(overrides, as_of)
    excluded = np.zeros(n, dtype=bool)
    caps = np.full(n, policy.max_weight)
    if active:
        index = {name: i for i, name in enumerate(names)}
        for agent, o in active.items():
            i = index.get(agent)  # type: ignore[assignment]
            if i is None:
                continue
            if o.action == "exclude":
                excluded[i] = True
            elif o.action == "cap" and o.cap is not None:
                caps[i] = min(caps[i], o.cap)
    computed = _compute(f, policy, excluded, persistence)
    quality, risk = computed.quality, computed.risk

    total_q = float(quality.sum())
    share = quality / total_q if total_q > 0 else np.zeros_like(quality)
    water = cap_water_fill(share, policy.max_weight)
    after_cap = np.minimum(water, caps)
    after_risk = after_cap * risk
    after_gross = apply_gross_cap(after_risk, policy.gross_cap)
    if previous is None:
        prev = np.zeros(n)
    else:
        previous = dict(previous)  # a copy: the fingerprint is hashed later
        prev = np.fromiter(map(previous.get, names, itertools.repeat(0.0)), np.float64, count=n)
    if previous is None:
        after_stability = after_gross.copy()
    else:
        after_stability = smooth(
            after_gross,
            prev,
            policy.max_increase_per_cycle,
            policy.no_trade_band,
            policy.no_trade_band_relative,
        )
        after_stability = np.minimum(after_stability, caps)
        after_stability = np.where(quality > 0, after_stability, 0.0)
        after_stability = apply_gross_cap(after_stability, policy.gross_cap)
    final = round_down(after_stability, policy.weight_decimals)

    allocated = final > 0
    weights = dict(
        zip(itertools.compress(names, allocated.tolist()), final[allocated].tolist(), strict=True)
    )
    # Weights are whole multiples of 10**-decimals: so are gross and cash (no float noise).
    gross = round(math.fsum(weights.values()), policy.weight_decimals)
    portfolio = {
        "gross": gross,
        "cash": round(max(0.0, 1.0 - gross), policy.weight_decimals),
        "cash_from_risk": max(0.0, float(after_cap.sum() - after_risk.sum())),
        "cash_from_caps": max(0.0, 1.0 - float(after_cap.sum())) if total_q > 0 else 0.0,
        "n_agents": n,
        "n_allocated": len(weights),
        "n_gated": int(n - np.count_nonzero(computed.passed)),
        "binding_caps": [names[i] for i in np.flatnonzero(share > caps + 1e-15).tolist()],
        "gross_cap_binding": bool(after_risk.sum() > policy.gross_cap + 1e-12),
        "turnover": float(np.abs(final - prev).sum()) if previous is not None else None,
        "reason": _portfolio_reason(total_q, water, after_cap, after_risk, gross),
    }
    steps = {
        "quality": quality,
        "share_before_risk": share,
        "after_cap": after_cap,
        "after_risk": after_risk,
        "after_gross_cap": after_gross,
        "after_stability": after_stability,
        "final": final,
    }
    explain = _Explanation(
        f, computed, steps, prev if previous is not None else None, active, policy
    )

    def provenance() -> dict[str, Any]:
        with _gc_paused():
            views = f.views()
        inputs_blob = {
            "agent_stats": dict(zip(names, views, strict=True)),
            "confidence": {k: vars(v) for k, v in sorted(f.confidence().items())},
            "tails": {k: vars(v) for k, v in sorted(f.tails().items())},
            "previous": dict(sorted(previous.items())) if previous is not None else None,
            "overrides": [o.to_dict() for o in active.values()],
        }
        if persistence is not None:
            inputs_blob["persistence"] = persistence.to_dict()
        return {
            "as_of": iso(as_of),
            "policy_fingerprint": policy.fingerprint(),
            "inputs_fingerprint": fingerprint(inputs_blob),
            "previous_decision_hash": previous_hash,
        }

    return Decision(
        as_of=iso(as_of),
        profile=str(policy.profile.value),
        weights=weights,
        cash=portfolio["cash"],
        gross=gross,
        agents=explain.build,
        portfolio=portfolio,
        provenance=provenance,
        policy=policy.model_dump(mode="json"),
    )


# ---------------------------------------------------------------- the explanation (lazy)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many small acyclic dicts.

    Each of its generational passes walks the growing heap: for 10,000 explanations (about
    half a million objects) that was a third of the build time. Restored even on error.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _Explanation:
    """Builds ``decision.agents`` from the arrays: inputs, notes, gates with details, factors
    with one-line reasons, the weight after every step and a summary, per agent."""

    def __init__(
        self,
        fleet: _Fleet,
        computed: _Computed,
        steps: dict[str, FloatArray],
        previous: FloatArray | None,
        active: dict[str, Override],
        policy: Policy,
    ) -> None:
        self.fleet, self.computed, self.steps = fleet, computed, steps
        self.previous, self.active, self.policy = previous, active, policy

    def build(self) -> dict[Any, dict[str, Any]]:
        """Every agent's explanation, in name order."""
        with _gc_paused():
            return self._build()

    def _build(self) -> dict[Any, dict[str, Any]]:
        f, c, policy = self.fleet, self.computed, self.policy
        views, confidence, tails = f.views(), f.confidence(), f.tails()
        problems = f.problems()
        gates = {k: v.tolist() for k, v in c.gates.items()}
        factors = {k: v.tolist() for k, v in c.factors.items()}
        steps = {k: v.tolist() for k, v in self.steps.items()}
        extra = {k: v.tolist() for k, v in c.extra.items()}
        cols = f.columns
        checked = {k: cols[k].checked.tolist() for k in _RANGES}
        absent = {k: cols[k].absent.tolist() for k in _RANGES}
        raw = {k: v.value.tolist() for k, v in cols.items()}
        previous = None if self.previous is None else self.previous.tolist()
        codes = f.strategy_code.tolist()
        out: dict[Any, dict[str, Any]] = {}
        for i, name in enumerate(f.names):
            strategy = f.strategies[codes[i]]
            override = self.active.get(name)
            gate_list = self._gates(i, gates, problems.get(i), checked, override)
            held = confidence.get(name) if f.has_confidence[i] else None
            tail = tails.get(strategy)
            if c.fleet is not None:
                agent_factors = evidence.quality_factor_dicts(
                    extra["t"][i], extra["shrunk"][i], factors["evidence"][i], held, c.fleet, policy
                ) + evidence.risk_factor_dicts(
                    raw["max_drawdown_bps"][i],
                    raw["n_records"][i],
                    raw["pnl_std_bps"][i],
                    extra["z"][i],
                    factors["drawdown"][i],
                    tail,
                    extra["used"][i],
                    float(f.tail_scale[i]),
                    extra["rho"][i],
                    factors["cvar"][i],
                    policy,
                    c.fleet,
                    extra["dd_own"][i],
                )
            else:
                agent_factors = self._seed_factors(i, factors, extra, checked, held, tail, strategy)
            e: dict[str, Any] = {
                "agent": name,
                "strategy": strategy,
                "inputs": dict(views[i]),  # a copy: the fingerprint hashes the original
                "notes": _notes({k: absent[k][i] for k in absent}),
                "gates": gate_list,
                "factors": agent_factors,
                "override": override.to_dict() if override else None,
                "steps": {k: v[i] for k, v in steps.items()},
                "weight": steps["final"][i],
                "previous_weight": previous[i] if previous is not None else None,
            }
            e["summary"] = _summary(e, policy)
            out[name] = e
        return out

    def _gates(
        self,
        i: int,
        passed: dict[str, list[bool]],
        problems: list[str] | None,
        checked: dict[str, list[float]],
        override: Override | None,
    ) -> list[dict[str, Any]]:
        policy = self.policy
        excluded = not passed["operator_exclusion"][i]
        err, n, pnl = (checked[k][i] for k in ("error_rate", "n_records", "pnl_sum_bps"))
        details = {
            "operator_exclusion": (
                f"excluded by {override.created_by} until {iso(override.expires_at)}: "
                f"{override.reason}"
                if excluded and override is not None
                else "no active exclusion"
            ),
            "kill": "not killed" if passed["kill"][i] else "stats say decision KILL",
            "usable_numbers": "; ".join(problems) if problems else "all numbers usable",
            "error_rate": (
                "no telemetry: not gated"
                if math.isnan(err)
                else f"error rate {err:.1%} vs limit {policy.max_error_rate:.1%}"
            ),
            "min_records": (
                "record count not given: not gated"
                if math.isnan(n)
                else f"{int(n)} records in window vs minimum {policy.min_records}"
            ),
            "positive_pnl": "pnl_sum_bps missing" if math.isnan(pnl) else f"pnl_sum {pnl:+.1f} bps",
        }
        return [
            {"gate": gate, "passed": values[i], "detail": details[gate]}
            for gate, values in passed.items()
        ]

    def _seed_factors(
        self,
        i: int,
        factors: dict[str, list[float]],
        extra: dict[str, list[float]],
        checked: dict[str, list[float]],
        held: Confidence | None,
        tail: Tail | None,
        strategy: str,
    ) -> list[dict[str, Any]]:
        policy = self.policy
        n = checked["n_records"][i]
        n_records = None if math.isnan(n) else int(n)
        out = [
            _factor(
                "alpha",
                factors["alpha"][i],
                f"sqrt of pnl_sum {extra['pnl'][i]:.1f} bps"
                f"{_over(n_records, policy.lookback_hours)} "
                "(concave: steady gains count more than one big win)",
            ),
            _factor(
                "hit_rate",
                factors["hit_rate"][i],
                f"{policy.hit_rate_offset:g} + hit rate {extra['hit'][i]:.0%} "
                "(share of records with PnL > 0)",
            ),
        ]
        if held is None:
            out.append(
                _factor(
                    "confidence",
                    policy.confidence_prior,
                    "no calibration evidence: prior (a new agent is not punished)",
                )
            )
        else:
            ratio = (
                ""
                if held.error_ratio is None
                else f", mean |gap|/σ {held.error_ratio:.2f} vs tolerance "
                f"{policy.confidence_tolerance:g}"
            )
            out.append(
                _factor(
                    "confidence",
                    held.multiplier,
                    f"{held.n_evidence} records (weight {held.evidence_weight:.1f}){ratio}"
                    f", evidence half-life {policy.confidence_half_life_hours:g} h",
                )
            )
        aae = checked["avg_abs_error_bps"][i]
        if math.isnan(aae):
            out.append(_factor("sim_integrity", 1.0, "avg |gap| not reported: no penalty"))
        else:
            scale = policy.sim_error_scale_bps
            out.append(
                _factor(
                    "sim_integrity",
                    factors["sim_integrity"][i],
                    f"avg |gap| {aae:.1f} bps vs scale {scale:g} bps "
                    "(how far results miss the simulator's forecasts)",
                )
            )
        used = None if tail is None else tail.gap_cvar95_used_bps
        if tail is None or used is None:
            out.append(_factor("cvar", 1.0, f"no tail evidence for strategy {strategy}"))
        else:
            mult = factors["cvar"][i]
            window = f" in the last {tail.window_hours:g} h" if tail.window_hours else ""
            shrink = (
                f" (raw {tail.gap_cvar95_bps:+.1f} shrunk: n < {policy.cvar_min_samples})"
                if tail.shrunk and tail.gap_cvar95_bps is not None
                else ""
            )
            out.append(
                _factor(
                    "cvar",
                    mult,
                    f"strategy {strategy}, tail {used:+.1f} bps over {tail.n} records"
                    f"{window}{shrink}{_at_floor(mult, policy.cvar_floor)}",
                )
            )
        dd, mult = extra["dd"][i], factors["drawdown"][i]
        out.append(
            _factor(
                "drawdown",
                mult,
                f"max drawdown {dd:+.1f} bps in window (last {policy.lookback_hours:g} h)"
                f"{_at_floor(mult, policy.drawdown_floor)}",
            )
        )
        return out


def _notes(absent: Mapping[str, bool]) -> list[str]:
    """What a missing optional input falls back to (``absent``: the value is ``None``)."""
    notes = []
    fallbacks = (
        ("hit_rate", "using 0 (the seed's default)"),
        ("error_rate", "the error-rate gate is not applied"),
        ("max_drawdown_bps", "using 0 (no drawdown penalty)"),
    )
    for key, fallback in fallbacks:
        if absent[key]:
            notes.append(f"{key} not reported: {fallback}")
    if absent["avg_abs_error_bps"]:
        notes.append("avg_abs_error_bps not reported: no sim-integrity penalty")
    return notes


def _over(n_records: int | None, hours: float) -> str:
    counted = "" if n_records is None else f" {n_records} records"
    return f" over{counted} in the last {hours:g} h"


def _at_floor(mult: float, floor: float) -> str:
    return f"; at its floor x{floor:g}" if mult <= floor else ""


def _factor(name: str, value: float, reason: str) -> dict[str, Any]:
    return {"factor": name, "value": value, "reason": reason}


def _view_value(value: Any) -> Any:
    """One input, JSON-safe: non-finite numbers and odd types become strings."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else repr(float(value))
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
        numbers = as_float.to_numpy()
        for i in np.flatnonzero(~np.isfinite(numbers) & ~as_float.is_null().to_numpy()).tolist():
            values[i] = repr(values[i])
        return values
    return [_view_value(v) for v in series.to_list()]


def _frame_views(stats: pl.DataFrame) -> list[dict[str, Any]]:
    """:func:`_inputs_view` of every row of ``stats``, built column by column."""
    keys = sorted(stats.columns)
    columns = [_view_column(stats[k]) for k in keys]
    return [dict(zip(keys, values, strict=True)) for values in zip(*columns, strict=True)]


def _summary(e: Mapping[str, Any], policy: Policy) -> str:
    """One line: why this agent got its weight."""
    failed = [g for g in e["gates"] if not g["passed"]]
    if failed:
        return f"gated by {failed[0]['gate']}: {failed[0]['detail']}"
    steps = e["steps"]
    parts = [f"{steps['share_before_risk']:.1%} on quality"]
    if steps["after_cap"] + 1e-12 < steps["share_before_risk"]:
        parts.append(f"capped at {steps['after_cap']:.1%}")
    elif steps["after_cap"] > steps["share_before_risk"] + 1e-12:
        extra = steps["after_cap"] - steps["share_before_risk"]
        parts.append(f"+{extra:.1%} excess from capped agents")
    penalties = [f for f in e["factors"] if f["factor"] in ("cvar", "drawdown") and f["value"] < 1]
    for f in penalties:
        parts.append(f"{f['factor']} x{f['value']:.2f}")
    if abs(steps["after_gross_cap"] - steps["after_risk"]) > 1e-12:
        parts.append("gross cap")
    if abs(steps["after_stability"] - steps["after_gross_cap"]) > 1e-12:
        limits = {
            "no_trade_band": policy.no_trade_band,
            "no_trade_band_relative": policy.no_trade_band_relative,
            "max_increase_per_cycle": policy.max_increase_per_cycle,
        }
        note = stability_note(e, limits) or "stability step"
        # The table's one-liner keeps the verdict; explain/memo give the numbers.
        parts.append("held (move inside the no-trade band)" if note.startswith("held") else note)
    if e.get("override"):
        o = e["override"]
        cap = "" if o.get("cap") is None else f" {o['cap']:.1%}"
        parts.append(f"operator cap{cap} until {o['expires_at']}: {o['reason']}")
    return ", ".join(parts) + f" -> {steps['final']:.2%}"


def _portfolio_reason(
    total_q: float,
    water: np.ndarray,
    after_cap: np.ndarray,
    after_risk: np.ndarray,
    gross: float,
) -> str:
    """The headline: what held capital back, step by step (``water``: shares after the
    water-filled cap, before operator caps)."""
    if total_q <= 0:
        return "no agent passed the gates: everything in cash"
    reasons = []
    by_cap = 1.0 - float(water.sum())
    by_operator = float(water.sum() - after_cap.sum())
    by_risk = float(after_cap.sum() - after_risk.sum())
    if by_risk > 1e-9:
        reasons.append(f"risk penalties held back {by_risk:.1%} of capital")
    if by_cap > 1e-9:
        reasons.append(f"the per-agent cap held back {by_cap:.1%} (too few agents to place it)")
    if by_operator > 1e-9:
        reasons.append(f"operator caps held back {by_operator:.1%}")
    reasons.append(f"deployed {gross:.1%}")
    return "; ".join(reasons)
