"""Backtest: the live cycle, called at each rebalance time, booked against what happened next.

The backtest calls exactly what a live cycle calls, :func:`meta_supervisor.cycle.run.decide` (one
chain of decisions per policy profile, each fed its own previous weights), and the baselines of
:mod:`meta_supervisor.research.baselines` on the same inputs (stats, confidence, tails) of the same
ledger at the same instant. There is no second implementation of the allocation.

Inputs (``engine``): with ``"incremental"`` (the default) the stats, confidence and tails frames
come from one :class:`~meta_supervisor.signals.incremental.IncrementalStats` per distinct set of
window settings (the profiles differ only in ``profile``, which no frame reads, so one engine
serves them all), advanced once per rebalance over a
:class:`~meta_supervisor.signals.incremental.SortedLedger` built once; the same frames go to every
profile's ``decide(..., frames=...)`` and, through
:func:`meta_supervisor.cycle.run.frames_to_inputs`,
to the baselines. Those frames equal a full recompute up to float reassociation (running sums
updated in another order than a fresh sum: ~1e-12 relative), so a backtest decision can differ
from a standalone ``decide`` by one unit of the last weight decimal (weights are rounded *down*
to ``policy.weight_decimals``) and in its inputs fingerprint (a hash of the raw inputs). With
``"full"`` every profile calls ``decide`` on the ledger (a full recompute per profile and
rebalance, plus one for the baselines): byte-identical to a standalone cycle, much slower.

Accounting (the contract of every number the backtest reports)
--------------------------------------------------------------
* **Rebalance times** ``t_k = start + warmup + k·every`` for every ``k`` with
  ``t_k + every ≤ end``. Holding period ``k`` is ``[t_k, t_{k+1})``.
* **Decision at t_k** sees the ledger as of ``t_k``: only records with ``matured_at ≤ t_k``
  (DESIGN.md's visibility rule, applied inside ``decide``; the backtest hands it the whole ledger).
* **Booking**: a record whose *signal time* ``ts`` falls in ``[t_k, t_{k+1})`` is a position opened
  while the weights decided at ``t_k`` were in force, so it is booked to period ``k`` with those
  weights, whenever it matures (its PnL is realised at ``matured_at = ts + horizon``, after
  ``t_k``, so no decision ever saw the record it is paid by). Each record is booked exactly once.
  Only records at the policy's horizon (default 24 h) are booked: the 1 h / 4 h reconciliations
  of the same signal are the same position measured earlier, and booking them would count the
  signal twice.
* **Per-agent period PnL** ``p_{i,k}`` = the **mean** realised bps of agent *i*'s records booked to
  period *k* (0 when it has none). The mean, not the sum: an agent's weight is the capital it
  runs; splitting that slice evenly over the signals it emits in the period makes its return a
  mean, and keeps an agent that signals every hour from counting as six times the leverage of
  one that signals every six hours.
* **Portfolio period PnL** ``r_k = Σ_i w_{i,k} · p_{i,k}`` in bps of capital; cash earns 0.
  Positions opened in different periods overlap in time (a 24 h horizon over 6 h periods), so
  ``r_k`` is the PnL *attributable to the decision at t_k*, not a mark-to-market of the book at
  ``t_{k+1}``. The equity curve is ``cumsum(r_k)`` indexed by decision time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from meta_supervisor.allocate.decision import Decision
from meta_supervisor.allocate.explain import gc_paused
from meta_supervisor.allocate.profiles import method_for
from meta_supervisor.cycle.run import (
    Ledger,
    cycle_frames,
    decide,
    expected_records,
    frames_to_inputs,
)
from meta_supervisor.policy.model import Policy, Profile
from meta_supervisor.research import baselines
from meta_supervisor.research.metrics import summarize
from meta_supervisor.signals.arrays import ArrayStats, LedgerArrays
from meta_supervisor.signals.cadence import CadenceIndex
from meta_supervisor.signals.incremental import IncrementalStats, SortedLedger
from meta_supervisor.signals.persistence import LearnedStrengths, Persistence, history_hours
from meta_supervisor.units import US_PER_HOUR

__all__ = [
    "BASELINES",
    "ENGINES",
    "BacktestResult",
    "MethodRun",
    "agent_period_pnl",
    "calendar_times",
    "decision_times",
    "frames_key",
    "run_backtest",
]

ENGINES = ("incremental", "full")


@dataclass
class MethodRun:
    """One method's weights per period ``(periods, agents)`` and its period PnL (bps)."""

    name: str
    description: str
    weights: np.ndarray
    period_pnl: np.ndarray
    decisions: list[Decision] | None = None


@dataclass
class BacktestResult:
    """Everything a report needs: times, agents, per-method runs and metrics."""

    times: list[datetime]
    every_hours: float
    agents: list[str]
    agent_pnl: np.ndarray
    methods: dict[str, MethodRun]
    events: list[tuple[str, datetime]]
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    default_method: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def equity(self, method: str) -> np.ndarray:
        """Cumulative PnL (bps of capital) after each period."""
        return np.cumsum(self.methods[method].period_pnl)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: metrics per method, and the run's parameters."""

        def clean(v: float) -> float | None:
            return v if math.isfinite(v) else None

        return {
            "info": self.info,
            "every_hours": self.every_hours,
            "periods": len(self.times),
            "start": self.times[0].isoformat() if self.times else None,
            "default_method": self.default_method,
            "metrics": {
                m: {k: clean(v) for k, v in values.items()} for m, values in self.metrics.items()
            },
        }


Baseline = Callable[
    [dict, dict, dict, Policy, Ledger, datetime], dict[str, float] | tuple[dict[str, float], bool]
]
"""A baseline returns its weights, or ``(weights, fell_back)`` when it can fall back to another
rule (HRP to equal weight): the backtest counts those rebalances (``fallback_share``)."""

BASELINES: dict[str, tuple[str, Baseline]] = {
    "equal_weight": (
        "1/n over eligible agents",
        lambda s, c, t, p, ledger, at: baselines.equal_weight(s, p),
    ),
    "inverse_vol": (
        "1/sigma over eligible agents, fully invested",
        lambda s, c, t, p, ledger, at: baselines.inverse_volatility(s, p),
    ),
    "seed_original": (
        "the seed's compute_weights as written (one-pass cap, always 100%)",
        lambda s, c, t, p, ledger, at: baselines.seed_original(s, c, t, p.confidence_prior),
    ),
    "hrp": (
        "skfolio Hierarchical Risk Parity on 60 days of daily agent PnL (research extra; "
        "equal weight with < 10 days, counted as fallback_share)",
        lambda s, c, t, p, ledger, at: baselines.hrp_weights(s, ledger.records, at, p),
    ),
}


def frames_key(policy: Policy) -> str:
    """What the cycle's frames depend on: every policy field but ``profile`` (the allocation
    formula). Policies with the same key share one incremental engine; a field added to the
    policy later splits engines rather than silently sharing the wrong frames."""
    fields = policy.model_dump(mode="json")
    fields.pop("profile")
    return repr(sorted(fields.items()))


def rebalance_times(
    start: datetime, end: datetime, every_hours: float, warmup_hours: float
) -> list[datetime]:
    """``t_k = start + warmup + k·every`` while ``t_k + every ≤ end``."""
    step = timedelta(hours=every_hours)
    t = start + timedelta(hours=warmup_hours)
    times = []
    while t + step <= end:
        times.append(t)
        t += step
    return times


def calendar_times(
    records: pl.DataFrame, horizon_hours: int, first: datetime, end: datetime
) -> tuple[list[datetime], datetime | None]:
    """The ledger's own trading calendar: every distinct ``matured_at`` (at the horizon) in
    ``[first, end]``, as ``(decision times, end of the last period)``.

    On an exchange calendar a record matures at the next session's close, so these are the
    closes at which a desk decides; period ``k`` is ``[t_k, t_{k+1})`` and the last close in
    the range only ends the period before it.
    """
    closes = (
        records.lazy()
        .filter(pl.col("horizon_hours") == horizon_hours)
        .filter((pl.col("matured_at") >= first) & (pl.col("matured_at") <= end))
        .select(pl.col("matured_at").unique().sort())
        .collect()["matured_at"]
        .to_list()
    )
    if len(closes) < 2:
        return [], None
    return closes[:-1], closes[-1]


def decision_times(
    ledger: Ledger,
    start: datetime,
    end: datetime,
    *,
    every_hours: float,
    warmup_hours: float,
    horizon_hours: int,
    calendar: bool = False,
    date_from: datetime | None = None,
    date_to: datetime | None = None,
) -> tuple[list[datetime], datetime | None]:
    """Rebalance times and the end of the last period, for a run over ``[start, end]``.

    ``date_from``/``date_to`` restrict the *decisions* to a date range; the history before
    ``date_from`` is the warm-up (the first decision is at the later of ``date_from`` and
    ``start + warmup``), so a sub-period is decided exactly as inside a run over the whole span
    (up to the stability step's previous weights, which start fresh). ``calendar``: decide at
    the ledger's own closes (:func:`calendar_times`) instead of every ``every_hours``.
    """
    first = start + timedelta(hours=warmup_hours)
    if date_from is not None:
        first = max(first, date_from)
    last = end if date_to is None else min(end, date_to)
    if calendar:
        return calendar_times(ledger.records, horizon_hours, first, last)
    times = rebalance_times(first, last, every_hours, 0.0)
    return times, (times[-1] + timedelta(hours=every_hours) if times else None)


def agent_period_pnl(
    records: pl.DataFrame,
    times: Sequence[datetime],
    every_hours: float,
    horizon_hours: int,
    agents: Sequence[str],
    period_end: datetime | None = None,
) -> np.ndarray:
    """``p[k, i]``: mean realised bps of agent ``i``'s records with ``ts`` in period ``k``.

    Periods are ``[times[k], times[k] + every)``, or with ``period_end`` (irregular times, a
    trading calendar) ``[times[k], times[k + 1])`` and ``[times[-1], period_end)``; 0 where the
    agent has no record there. The mean is the left-to-right sum of the records in the order
    given over their count (``np.bincount``), so every run gives the same bits (a parallel
    group-by's sum order varied with the thread split).
    """
    p = np.zeros((len(times), len(agents)))
    if not times or not agents:
        return p
    t0 = times[0]
    col = {a: i for i, a in enumerate(agents)}
    if period_end is None:
        hours = (pl.col("ts") - pl.lit(t0)).dt.total_microseconds() / US_PER_HOUR
        period = (hours / every_hours).floor().cast(pl.Int64)
    else:
        bounds = pl.Series([*times, period_end]).cast(records.schema["ts"])
        period = (pl.lit(bounds).search_sorted(pl.col("ts"), side="right") - 1).cast(pl.Int64)
    # agents as numbers (an enum of the names asked for; others are null and not booked)
    names = list(col)
    booked = (
        records.lazy()
        .filter(pl.col("horizon_hours") == horizon_hours)
        .select(
            period.alias("_k"),
            pl.col("agent").cast(pl.Enum(names), strict=False).to_physical().alias("_a"),
            pl.col("realized_pnl_bps").alias("_p"),
        )
        .filter((pl.col("_k") >= 0) & (pl.col("_k") < len(times)) & pl.col("_a").is_not_null())
        .collect()
    )
    to_col = np.array([col[name] for name in names], dtype=np.int64)
    cell = booked["_k"].to_numpy() * len(agents) + to_col[booked["_a"].to_numpy()]
    size = p.size
    total = np.bincount(cell, weights=booked["_p"].to_numpy(), minlength=size)
    count = np.bincount(cell, minlength=size)
    seen = count > 0
    p.reshape(-1)[seen] = total[seen] / count[seen]
    return p


def _progress(console: Console | None) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def run_backtest(
    ledger: Ledger,
    start: datetime,
    end: datetime,
    *,
    every_hours: float = 6.0,
    policy: Policy | None = None,
    profiles: Sequence[Profile] | None = None,
    baseline_names: Sequence[str] | None = None,
    events: Sequence[tuple[str, datetime]] = (),
    warmup_hours: float = 168.0,
    progress: bool = True,
    console: Console | None = None,
    info: dict[str, Any] | None = None,
    engine: str = "incremental",
    calendar: bool = False,
    date_from: datetime | None = None,
    date_to: datetime | None = None,
) -> BacktestResult:
    """Run every profile through :func:`decide` and every baseline, every ``every_hours``.

    Parameters
    ----------
    ledger : Ledger
        The whole history; each decision sees only what had matured by its ``as_of``.
    start, end : datetime
        The ledger's span (aware, UTC).
    policy : Policy, optional
        The policy of the *default* method; every other profile runs the same policy with only
        ``profile`` changed.
    profiles : sequence of Profile, optional
        Profiles to run through ``decide`` (default: all).
    baseline_names : sequence of str, optional
        Keys of :data:`BASELINES` (default: all but ``hrp``, plus ``hrp`` when skfolio is there).
    events : sequence of (agent, onset)
        Blow-ups for the time-to-de-risk metric.
    engine : {"incremental", "full"}
        Where the cycle inputs come from (see the module docstring): one incremental state per
        distinct window policy, advanced once per rebalance (default), or a full recompute per
        profile and rebalance (byte-identical to standalone cycles).
    calendar : bool
        Decide at the ledger's own trading calendar (every distinct ``matured_at``: the
        closes) instead of every ``every_hours`` (:func:`decision_times`); the Sharpe is then
        annualised by the mean period length.
    date_from, date_to : datetime, optional
        Decide only inside this range; the history before ``date_from`` is the warm-up.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")
    policy = policy or Policy()
    profiles = list(profiles) if profiles is not None else list(Profile)
    if policy.profile not in profiles:
        profiles.insert(0, policy.profile)
    if baseline_names is None:
        baseline_names = [n for n in BASELINES if n != "hrp"]
        if baselines.hrp_available():
            baseline_names.append("hrp")
    unknown = [n for n in baseline_names if n not in BASELINES]
    if unknown:
        raise KeyError(f"unknown baseline(s) {unknown}; known: {', '.join(BASELINES)}")
    times, period_end = decision_times(
        ledger,
        start,
        end,
        every_hours=every_hours,
        warmup_hours=warmup_hours,
        horizon_hours=policy.horizon_hours,
        calendar=calendar,
        date_from=date_from,
        date_to=date_to,
    )
    if not times or period_end is None:
        raise ValueError(
            f"no rebalance between {start} + {warmup_hours:g} h warm-up and {end} "
            f"at every {every_hours:g} h"
            + (f" inside [{date_from}, {date_to}]" if date_from or date_to else "")
        )
    if calendar:
        every_hours = (period_end - times[0]).total_seconds() / 3600 / len(times)
    agents = sorted(ledger.records["agent"].unique().to_list())
    col = {a: i for i, a in enumerate(agents)}
    policies = {p.value: Policy(**{**policy.model_dump(), "profile": p}) for p in profiles}
    # the engine keeps each agent's expected records; the cadence index only for a profile
    # that reads recent_loss_z (select)
    loss_z = any(
        "recent_loss_z" in method_for(p.profile).keys for p in [policy, *policies.values()]
    )
    cadence = CadenceIndex.from_records(ledger.records, policy.horizon_hours) if loss_z else None
    n_t, n_a = len(times), len(agents)
    weights = {name: np.zeros((n_t, n_a)) for name in [*policies, *baseline_names]}
    decisions: dict[str, list[Decision]] = {name: [] for name in policies}
    previous: dict[str, dict[str, float] | None] = dict.fromkeys(policies)
    engines: dict[str, IncrementalStats] = {}
    if engine == "incremental":
        sorted_ledger = SortedLedger(ledger.records)
        walk = _walk(sorted_ledger, policy.horizon_hours)
        for pol in [policy, *policies.values()]:
            engines.setdefault(
                frames_key(pol), IncrementalStats(pol) if walk is None else ArrayStats(pol)
            )

    learned = LearnedStrengths(ledger.records)
    fallbacks: dict[str, int] = {}
    bar = _progress(console)
    task = bar.add_task("backtest", total=n_t, status="")
    # The collector paused over the loop: the decisions kept grow the heap each of its passes
    # walks (~1.4 s of CPU at 10M records, 2,160 cycles), and a cycle leaves almost no cyclic
    # garbage (about 50 objects over a scenario's whole backtest).
    with bar if progress else _Null(), gc_paused():
        for k, t in enumerate(times):
            frames: dict[str, tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]] = {}
            for key, inc in engines.items():
                if isinstance(inc, ArrayStats) and walk is not None:
                    inc.advance_to(walk, t)
                    frames[key] = inc.cycle_frames(ledger.telemetry)
                    continue
                inc.advance(sorted_ledger, t)
                agent_frame, conf_frame, tail_frame = inc.frames(ledger.telemetry)
                frames[key] = (inc.with_expected_records(agent_frame), conf_frame, tail_frame)
            for name, pol in policies.items():
                decision = decide(
                    ledger,
                    t,
                    pol,
                    previous[name],
                    frames=frames.get(frames_key(pol)),
                    persistence=_learned(learned, ledger, t, pol),
                    cadence=cadence,
                )
                previous[name] = decision.weights
                decisions[name].append(decision)
                _place(weights[name][k], col, decision.weights)
            if baseline_names:
                base_stats, base_conf, base_tails = frames.get(frames_key(policy)) or cycle_frames(
                    ledger, t, policy
                )
                base_stats = expected_records(base_stats, ledger, t, policy, cadence)
                stats, confidence, tails = frames_to_inputs(
                    base_stats, base_conf, base_tails, policy
                )
                for name in baseline_names:
                    out = BASELINES[name][1](stats, confidence, tails, policy, ledger, t)
                    if isinstance(out, tuple):
                        out, fell_back = out
                        fallbacks[name] = fallbacks.get(name, 0) + int(fell_back)
                    for agent, w in out.items():
                        if agent in col:
                            weights[name][k, col[agent]] = w
            if progress:
                gross = float(weights[policy.profile.value][k].sum())
                bar.update(task, advance=1, status=f"{t:%Y-%m-%d %H:%M} gross {gross:.0%}")

    pnl = agent_period_pnl(
        ledger.records,
        times,
        every_hours,
        policy.horizon_hours,
        agents,
        period_end=period_end if calendar else None,
    )
    runs: dict[str, MethodRun] = {}
    for name, grid in weights.items():
        desc = f"profile {name} via cycle.decide" if name in policies else BASELINES[name][0]
        runs[name] = MethodRun(
            name=name,
            description=desc,
            weights=grid,
            period_pnl=(grid * pnl).sum(axis=1),
            decisions=decisions.get(name),
        )
    t_hours = np.array([(t - times[0]).total_seconds() / 3600 for t in times])
    ev = [(col[a], (onset - times[0]).total_seconds() / 3600) for a, onset in events if a in col]
    metrics = {
        name: summarize(run.period_pnl, run.weights, every_hours, t_hours, ev)
        for name, run in runs.items()
    }
    for name, count in fallbacks.items():
        metrics[name]["fallback_share"] = count / n_t
    return BacktestResult(
        times=times,
        every_hours=every_hours,
        agents=agents,
        agent_pnl=pnl,
        methods=runs,
        events=list(events),
        metrics=metrics,
        default_method=policy.profile.value,
        info={**(info or {}), **({"calendar": True} if calendar else {})},
    )


def _place(row: np.ndarray, col: dict[str, int], weights: dict[str, float]) -> None:
    """``row[col[agent]] = w`` for every agent's weight (one fancy assignment)."""
    if weights:
        at = np.fromiter(map(col.__getitem__, weights), np.int64, len(weights))
        row[at] = np.fromiter(weights.values(), np.float64, len(weights))


def _walk(ledger: SortedLedger, horizon: int) -> LedgerArrays | None:
    """The ledger as NumPy columns for the engines' walk
    (:mod:`meta_supervisor.signals.arrays`: the same bits as advancing them on frames, without
    per-cycle polars calls), or ``None`` for a ledger the walk cannot hold (a null ``ts``,
    ``agent`` or ``strategy``): the engines then advance on the frame."""
    try:
        return LedgerArrays(ledger, horizon)
    except ValueError:
        return None


def _learned(
    learned: LearnedStrengths, ledger: Ledger, t: datetime, policy: Policy
) -> Persistence | None:
    """The learned value at ``t`` (the select profile's rule, the evidence profile's tilt
    strength), computed once per anchor from day
    sums advanced as the walk goes (it reads only records matured by the anchor,
    :func:`meta_supervisor.signals.persistence.anchor`: every rebalance until the next anchor
    gets the same value, as a live cycle keeps it); ``None`` for a profile that does not learn
    one (``decide`` then computes nothing)."""
    if not history_hours(policy):
        return None
    return learned.at(t, policy)


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def run_fleet(
    fleet: Any,
    *,
    every_hours: float | None = None,
    policy: Policy | None = None,
    **kwargs: Any,
) -> BacktestResult:
    """:func:`run_backtest` on a :class:`meta_supervisor.research.simulate.SimulatedFleet`.

    The fleet's ``policy_overrides`` (e.g. a longer lookback for daily real prices) apply to
    ``policy``; its blow-ups become the de-risk events; ``every_hours`` defaults to the fleet's.
    """
    from meta_supervisor.research.simulate import blowup_events

    base = policy or Policy()
    if fleet.policy_overrides:
        base = Policy(**{**base.model_dump(), **fleet.policy_overrides})
    kwargs.setdefault("calendar", fleet.calendar)
    return run_backtest(
        fleet.ledger,
        fleet.start,
        fleet.end,
        every_hours=every_hours or fleet.every_hours,
        policy=base,
        events=blowup_events(fleet),
        **kwargs,
    )
