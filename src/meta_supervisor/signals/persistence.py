r"""Has past evidence predicted the next period's PnL in this fleet? (the evidence tilt's strength)

DESIGN.md ("What the seed's formula does on real prices"): a fleet without persistent skill
wants no tilt, one with it wants a hard tilt, and the strength can be learned out of sample
from whether past evidence predicted the next period's PnL. Pure: records and ``as_of`` in,
a number out; no file, no clock.

Definitions, with :math:`H` = ``policy.evidence_persistence_step_hours``, :math:`J` =
``policy.evidence_persistence_lags``, :math:`L` = ``policy.lookback_hours`` and only records at
``policy.horizon_hours`` with ``matured_at ≤ as_of`` (nothing from the future):

* the **anchor** :math:`A` is ``as_of`` rounded down to a multiple of :math:`H` since the epoch
  (midnight UTC for daily steps): the strength uses records matured by :math:`A` only, so it
  is the same for every cycle between two anchors, and a live cycle computes it once per step
  (:func:`meta_supervisor.cycle.engine.store_persistence` keeps it) instead of re-reading
  :math:`JH + L` hours of records every cycle;
* for each lag :math:`j = 1..J` the **evidence instant** is :math:`T_j = A - jH`;
* the agent's **past evidence** is the t-statistic of its mean PnL over the records that
  matured in :math:`(T_j - L, T_j]` (what the cycle at :math:`T_j` saw):
  :math:`t_i = \bar x_i\sqrt{n_i}/s_i` (sample std, ``ddof = 1``), for agents with
  :math:`n_i \ge \max(2, \text{min\_records})` and :math:`s_i > 0`;
* its **next-period PnL** is the mean realised bps of its records that matured in
  :math:`(T_j, T_j + H]` (disjoint from the evidence: they matured after :math:`T_j`);
* both are centred on their strategy's mean over the agents present at that lag (strategies
  with one such agent drop out): a factor shared by a strategy's agents (a market trend
  every buy-and-hold rule rides) moves their evidence and their next PnL together and would
  otherwise pass for individual skill;
* :math:`\rho_j` = Spearman rank correlation of the two centred columns (average ranks for
  ties), over the :math:`N_j` agents present; a lag counts when
  :math:`N_j \ge` ``evidence_min_agents`` and both columns vary. Under the null of no
  persistence :math:`\mathrm{Var}\,\rho_j \approx 1/d_j` with :math:`d_j = N_j - G_j`
  (:math:`G_j` strategies; centring spends one degree of freedom per strategy);
* over the :math:`m` lags that count, :math:`\bar\rho = \frac1m\sum_j\rho_j`,
  :math:`se = \max\big(\sqrt{\sum_j 1/d_j}\,/\,m,\ s_\rho/\sqrt m\big)` where
  :math:`s_\rho` is the sample std (``ddof = 1``) of the :math:`\rho_j` (used when
  :math:`m \ge 3`; the next-period windows are disjoint, so under the null the
  :math:`\rho_j` are close to independent, and their own scatter guards the null formula
  against agents that are not independent), and :math:`z = \bar\rho / se`;
* **strength** :math:`s = \max(0, 1 - (z_0/z)^2)` for :math:`z > z_0` (``evidence_persistence_z0``),
  else 0: zero until past evidence predicted the next PnL at :math:`z_0` standard errors,
  then rising towards 1 as the prediction becomes unmistakable (a James–Stein shape, like the
  cross-sectional signal share it replaces). In [0, 1]; 0 with no lag that counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from meta_supervisor.signals.selection import (
    RuleSelection,
    rule_selection,
    selection_anchor,
    selection_hours,
)
from meta_supervisor.units import US_PER_HOUR

if TYPE_CHECKING:
    from meta_supervisor.policy.model import Policy

__all__ = [
    "PERSISTENCE_COLUMNS",
    "LagCorrelation",
    "LagSample",
    "Persistence",
    "anchor",
    "history_hours",
    "lag_correlations",
    "lag_samples",
    "persistence",
    "persistence_from_lags",
    "ranks",
    "spearman",
]

FloatArray = NDArray[np.float64]
#: The record columns :func:`lag_samples` reads.
PERSISTENCE_COLUMNS = ["agent", "strategy", "matured_at", "ts", "horizon_hours", "realized_pnl_bps"]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EMPTY = np.zeros(0)
_NO_GROUPS = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class LagCorrelation:
    """One lag: evidence at ``as_of − lag·H`` against PnL over the next ``H`` hours."""

    lag: int
    rho: float  # Spearman rank correlation of the strategy-centred columns (NaN: undefined)
    n_agents: int  # N_j, agents with both an evidence t and a next-period PnL
    dof: int  # d_j = N_j − G_j, the null variance of rho is about 1/dof


@dataclass(frozen=True)
class Persistence:
    """How well past evidence predicted the next period's PnL, and the tilt strength it gives."""

    strength: float  # s in [0, 1]
    mean_rho: float  # ρ̄ over the lags that count (NaN when none)
    se: float  # standard error of ρ̄ under the null (NaN when none)
    z: float  # ρ̄ / se (NaN when none)
    n_lags: int  # m, the lags that count
    lags: tuple[LagCorrelation, ...] = ()
    selection: RuleSelection | None = None  # the select profile's learned rule

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN as ``None``); the per-lag detail is left out."""

        def clean(x: float) -> float | None:
            return x if math.isfinite(x) else None

        return {
            "strength": self.strength,
            "mean_rho": clean(self.mean_rho),
            "se": clean(self.se),
            "z": clean(self.z),
            "n_lags": self.n_lags,
            **({"selection": self.selection.to_dict()} if self.selection else {}),
        }

    @classmethod
    def from_dict(cls, blob: dict[str, Any]) -> Persistence:
        """The inverse of :meth:`to_dict` (``None`` back to NaN; no per-lag detail)."""

        def num(x: Any) -> float:
            return math.nan if x is None else float(x)

        return cls(
            float(blob["strength"]),
            num(blob["mean_rho"]),
            num(blob["se"]),
            num(blob["z"]),
            int(blob["n_lags"]),
            selection=(
                RuleSelection.from_dict(blob["selection"]) if blob.get("selection") else None
            ),
        )

    def describe(self) -> str:
        """One line for a reason: what was measured and the strength it gives."""
        if self.n_lags == 0:
            return "no past evidence to test against the next period: strength 0"
        return (
            f"past t vs next-period PnL: mean rank correlation {self.mean_rho:+.3f} "
            f"(z {self.z:+.1f} over {self.n_lags} lags), strength {self.strength:.0%}"
        )


def ranks(x: FloatArray) -> FloatArray:
    """Ranks 1..n of ``x``, ties sharing their average rank (scipy's ``rankdata('average')``)."""
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    # Runs of equal values: every member gets the mean of the positions the run occupies.
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], x.size]
    average = (starts + ends + 1) / 2.0  # mean of (start+1 .. end), 1-based
    out = np.empty(x.size)
    out[order] = np.repeat(average, ends - starts)
    return out


def spearman(x: FloatArray, y: FloatArray) -> float:
    """Spearman's rank correlation (Pearson's of the average ranks); NaN if a column is constant
    or there are fewer than 2 pairs."""
    if x.size < 2:
        return math.nan
    rx, ry = ranks(x), ranks(y)
    dx, dy = rx - rx.mean(), ry - ry.mean()
    den = math.sqrt(float(dx @ dx) * float(dy @ dy))
    return float(dx @ dy) / den if den > 0 else math.nan


def _centred(values: FloatArray, groups: NDArray[np.int64]) -> FloatArray:
    """``values`` minus the mean of their group."""
    sums = np.bincount(groups, weights=values)
    counts = np.bincount(groups)
    return values - (sums / np.maximum(counts, 1))[groups]


@dataclass(frozen=True)
class LagSample:
    """One lag's agents: evidence ``t``, ``next_pnl`` (mean bps) and strategy group codes."""

    lag: int
    t: FloatArray
    next_pnl: FloatArray
    groups: NDArray[np.int64]
    dof: int


def history_hours(policy: Policy) -> float:
    """How far back of ``as_of`` :func:`persistence` may read: ``(J + 1)·H + L`` (the anchor
    is up to ``H`` before ``as_of``; 0 when it does not run: another profile than
    ``evidence``, or ``evidence_persistence_lags = 0``)."""
    from meta_supervisor.policy.model import Profile

    if policy.profile is Profile.SELECT:
        return selection_hours(policy)
    lags = policy.evidence_persistence_lags
    if policy.profile is not Profile.EVIDENCE or lags <= 0:
        return 0.0
    return (lags + 1) * policy.evidence_persistence_step_hours + policy.lookback_hours


def anchor(as_of: datetime, policy: Policy) -> datetime:
    """``as_of`` rounded down to a multiple of the lag step ``H`` since the epoch (UTC)
    (the select profile's step, ``selection_step_hours``, for that profile)."""
    from meta_supervisor.policy.model import Profile

    if policy.profile is Profile.SELECT:
        return selection_anchor(as_of, policy)
    step_us = round(policy.evidence_persistence_step_hours * US_PER_HOUR)
    micros = (as_of - _EPOCH) // timedelta(microseconds=1)
    return _EPOCH + timedelta(microseconds=micros - micros % step_us)


def _time_order(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` sorted by ``(matured_at, ts)``; rows already in that order (a ledger is
    appended in time: one NumPy check) are left as they are."""
    if frame.height > 1 and not frame["matured_at"].null_count() and not frame["ts"].null_count():
        m = frame["matured_at"].dt.epoch("us").to_numpy()
        t = frame["ts"].dt.epoch("us").to_numpy()
        step_m, step_t = m[1:] - m[:-1], t[1:] - t[:-1]
        if bool(((step_m > 0) | ((step_m == 0) & (step_t >= 0))).all()):
            return frame
    return frame.sort("matured_at", "ts")


def _agent_codes(agents: pl.Series) -> tuple[list[str], NDArray[np.int64]]:
    """The distinct agent names in sorted order and each row's index into them (what
    ``np.unique(..., return_inverse=True)`` gives, through a polars ``Enum`` instead of
    comparing every name)."""
    names = agents.unique().sort().to_list()
    codes = agents.cast(pl.Enum(names)).to_physical().to_numpy().astype(np.int64)
    return names, codes


def _last_rows(codes: NDArray[np.int64], size: int) -> NDArray[np.int64]:
    """The last row of each code ``0..size-1`` (every code present): the largest row number
    per code, one unbuffered ``np.maximum.at``."""
    last = np.zeros(size, dtype=np.int64)
    np.maximum.at(last, codes, np.arange(codes.size, dtype=np.int64))
    return last


def lag_samples(records: pl.DataFrame, as_of: datetime, policy: Policy) -> list[LagSample]:
    """Per lag ``j = 1..J``: the agents that count, their evidence t at ``A − j·H`` and
    their mean PnL over the next ``H`` hours, ``A`` = :func:`anchor` (see the module
    docstring)."""
    lags = policy.evidence_persistence_lags
    if lags <= 0 or records.height == 0:
        return []
    as_of = anchor(as_of, policy)
    step = timedelta(hours=policy.evidence_persistence_step_hours)
    lookback = timedelta(hours=policy.lookback_hours)
    earliest = as_of - lags * step - lookback
    frame = (
        records.lazy()
        .filter(
            (pl.col("horizon_hours") == policy.horizon_hours)
            & (pl.col("matured_at") <= as_of)
            & (pl.col("matured_at") > earliest)
        )
        .select("agent", "strategy", "matured_at", "ts", "realized_pnl_bps")
        .collect()
    )
    if frame.height == 0:
        return [LagSample(j, _EMPTY, _EMPTY, _NO_GROUPS, 0) for j in range(1, lags + 1)]
    frame = _time_order(frame)
    names, agent_codes = _agent_codes(frame["agent"])
    n_codes = len(names)
    # Group each agent by the strategy of its latest visible record (what it declares now).
    strategies = frame["strategy"].gather(_last_rows(agent_codes, n_codes)).to_list()
    strategy_index: dict[str, int] = {}
    agent_group = np.array(
        [
            strategy_index.setdefault(str(s or "unclassified"), len(strategy_index))
            for s in strategies
        ],
        dtype=np.int64,
    )
    hours = (frame["matured_at"] - as_of).dt.total_microseconds().to_numpy() / US_PER_HOUR
    pnl = frame["realized_pnl_bps"].to_numpy().astype(np.float64)
    step_h, look_h = policy.evidence_persistence_step_hours, policy.lookback_hours
    need = max(2, policy.min_records)
    out = []
    for j in range(1, lags + 1):
        t_j = -j * step_h  # hours relative to as_of
        # the rows are in time order: each interval (lo, hi] of hours is a slice
        ev = slice(*np.searchsorted(hours, [t_j - look_h, t_j], side="right"))
        nx = slice(*np.searchsorted(hours, [t_j, t_j + step_h], side="right"))
        a_ev, x_ev = agent_codes[ev], pnl[ev]
        n = np.bincount(a_ev, minlength=n_codes).astype(np.float64)
        mean = np.bincount(a_ev, weights=x_ev, minlength=n_codes) / np.maximum(n, 1)
        ss = np.bincount(a_ev, weights=(x_ev - mean[a_ev]) ** 2, minlength=n_codes)
        sd = np.sqrt(ss / np.maximum(n - 1, 1))
        n_next = np.bincount(agent_codes[nx], minlength=n_codes).astype(np.float64)
        next_mean = np.bincount(agent_codes[nx], weights=pnl[nx], minlength=n_codes) / np.maximum(
            n_next, 1
        )
        ok = (n >= need) & (sd > 0) & (n_next > 0)
        # Strategies with one agent present have nothing to be compared with: drop them.
        groups_ok = agent_group[ok]
        size = np.bincount(groups_ok, minlength=len(strategy_index))
        ok[ok] = size[groups_ok] >= 2
        idx = np.flatnonzero(ok)
        n_agents = int(idx.size)
        groups = agent_group[idx]
        n_groups = int(np.unique(groups).size)
        t = mean[idx] * np.sqrt(n[idx]) / sd[idx]
        out.append(LagSample(j, t, next_mean[idx], groups, n_agents - n_groups))
    return out


def lag_correlations(
    records: pl.DataFrame, as_of: datetime, policy: Policy
) -> list[LagCorrelation]:
    """:math:`\\rho_j` for ``j = 1..evidence_persistence_lags`` (see the module docstring)."""
    out = []
    for sample in lag_samples(records, as_of, policy):
        n_agents = int(sample.t.size)
        if n_agents < 2:
            out.append(LagCorrelation(sample.lag, math.nan, n_agents, 0))
            continue
        rho = spearman(_centred(sample.t, sample.groups), _centred(sample.next_pnl, sample.groups))
        out.append(LagCorrelation(sample.lag, rho, n_agents, sample.dof))
    return out


def persistence_from_lags(lags: list[LagCorrelation], policy: Policy) -> Persistence:
    """ρ̄, its null standard error, z and the strength over the lags that count."""
    used = [
        lag
        for lag in lags
        if math.isfinite(lag.rho) and lag.n_agents >= policy.evidence_min_agents and lag.dof > 0
    ]
    if not used:
        return Persistence(0.0, math.nan, math.nan, math.nan, 0, tuple(lags))
    m = len(used)
    mean_rho = math.fsum(lag.rho for lag in used) / m
    se = math.sqrt(math.fsum(1.0 / lag.dof for lag in used)) / m
    if m >= 3:
        # The null's 1/d_j assumes agents independent within a strategy; when the lags
        # disagree more than that, their own scatter is the honest standard error.
        spread = math.fsum((lag.rho - mean_rho) ** 2 for lag in used) / (m - 1)
        se = max(se, math.sqrt(spread / m))
    z = mean_rho / se
    z0 = policy.evidence_persistence_z0
    strength = max(0.0, 1.0 - (z0 / z) ** 2) if z > z0 else 0.0
    return Persistence(strength, mean_rho, se, z, m, tuple(lags))


def persistence(records: pl.DataFrame, as_of: datetime, policy: Policy) -> Persistence:
    """The tilt strength learned from the fleet's past: see the module docstring. For the
    select profile, what it learns instead: the rule it follows
    (:func:`meta_supervisor.signals.selection.rule_selection`, in ``selection``)."""
    from meta_supervisor.policy.model import Profile

    if policy.profile is Profile.SELECT:
        chosen = rule_selection(records, as_of, policy)
        return Persistence(0.0, math.nan, math.nan, math.nan, 0, selection=chosen)
    return persistence_from_lags(lag_correlations(records, as_of, policy), policy)
