r"""Has past evidence predicted the next period's PnL in this fleet? (the evidence tilt's strength)

DESIGN.md ("What the seed's formula does on real prices"): a fleet without persistent skill
wants no tilt, one with it wants a hard tilt, and the strength can be learned out of sample
from whether past evidence predicted the next period's PnL. Pure: records and ``as_of`` in,
a number out; no file, no clock.

Definitions, with :math:`H` = ``policy.evidence_persistence_step_hours``, :math:`J` =
``policy.evidence_persistence_lags``, :math:`L` = ``policy.lookback_hours`` and only records at
``policy.horizon_hours`` with ``matured_at ≤ as_of`` (nothing from the future):

* the **anchor** :math:`A` is ``as_of`` rounded down to a multiple of :math:`H` since the epoch
  (midnight UTC for daily steps): the strength uses records matured in
  :math:`(A - JH - L, A]` only, so it is the same for every cycle between two anchors;
* for each lag :math:`j = 1..J` the **evidence instant** is :math:`T_j = A - jH`;
* the agent's **past evidence** is the t-statistic of its mean PnL over the records that
  matured in :math:`(T_j - L, T_j]` (what the cycle at :math:`T_j` saw):
  :math:`t_i = \bar x_i\sqrt{n_i}/s_i` (sample std, ``ddof = 1``), for agents with
  :math:`n_i \ge \max(2, \text{min\_records})` and :math:`s_i > 0`;
* its **next-period PnL** is the mean realised bps of its records that matured in
  :math:`(T_j, T_j + H]` (disjoint from the evidence: they matured after :math:`T_j`);
* an agent's **strategy** is that of its latest record in :math:`(A - JH - L, A]`, the largest
  ``(matured_at, ts, strategy)`` (a missing one reads ``unclassified``);
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

**One computation.** Every window above is a union of whole buckets of width
:math:`\gcd(H, L)` (a day by default), so all of it is a function of per-(agent, bucket) sums
(:class:`~meta_supervisor.signals.daysums.DaySums`: count, :math:`\sum x`, squared deviations
from the bucket mean, latest strategy), combined per window in bucket order
(:func:`~meta_supervisor.signals.daysums.lag_windows`). :func:`persistence` builds those sums
from records and calls :func:`persistence_from_sums`; a live cycle keeps them between cycles
(:mod:`meta_supervisor.cycle.learned`: one new day per day) and a backtest advances them as it
walks (:class:`LearnedStrengths`). The sums are canonical by construction, so all of these
give the same bits. The select profile's learned rule
(:mod:`meta_supervisor.signals.selection`) reads the same cells over its own step and lags,
through the same functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from meta_supervisor.signals.daysums import (
    SUMS_COLUMNS,
    DaySums,
    anchor,
    bucket_us,
    lag_grid,
    lag_windows,
    sums_range,
    window_cells,
)
from meta_supervisor.signals.incremental import SortedLedger
from meta_supervisor.signals.selection import RuleSelection, rule_selection_from_sums
from meta_supervisor.units import US_PER_HOUR

if TYPE_CHECKING:
    from meta_supervisor.policy.model import Policy

__all__ = [
    "PERSISTENCE_COLUMNS",
    "LagCorrelation",
    "LagSample",
    "LearnedStrengths",
    "Persistence",
    "anchor",
    "day_sums",
    "history_hours",
    "lag_correlations",
    "lag_samples",
    "lag_samples_from_sums",
    "persistence",
    "persistence_from_lags",
    "persistence_from_sums",
    "ranks",
    "spearman",
    "sums_range",
]

FloatArray = NDArray[np.float64]
#: The record columns :func:`lag_samples` reads.
PERSISTENCE_COLUMNS = SUMS_COLUMNS
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


@np.errstate(invalid="ignore")  # a stored ±inf PnL: inf − inf is NaN (the lag then drops out)
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
    """How far back of ``as_of`` the learned value may read: ``(J + 1)·H + L``
    (:func:`~meta_supervisor.signals.daysums.lag_grid`; the anchor is up to ``H`` before
    ``as_of``); 0 when nothing is learned: a profile other than ``evidence`` and ``select``,
    or the evidence profile with ``evidence_persistence_lags = 0``."""
    if not _learns(policy):
        return 0.0
    step, lags, look = lag_grid(policy)
    return ((lags + 1) * step + look) / US_PER_HOUR


def day_sums(records: pl.DataFrame | pl.LazyFrame, as_of: datetime, policy: Policy) -> DaySums:
    """The cells :func:`lag_samples_from_sums` reads at ``as_of``: the records at the
    policy horizon matured in :func:`sums_range`."""
    low, high = sums_range(as_of, policy)
    return DaySums.from_records(records, policy, low, high)


def lag_samples(records: pl.DataFrame, as_of: datetime, policy: Policy) -> list[LagSample]:
    """Per lag ``j = 1..J``: the agents that count, their evidence t at ``A − j·H`` and
    their mean PnL over the next ``H`` hours, ``A`` = :func:`anchor` (see the module
    docstring): :func:`lag_samples_from_sums` of :func:`day_sums`."""
    if policy.evidence_persistence_lags <= 0:
        return []
    return lag_samples_from_sums(day_sums(records, as_of, policy), as_of, policy)


def lag_samples_from_sums(sums: DaySums, as_of: datetime, policy: Policy) -> list[LagSample]:
    """:func:`lag_samples` from the per-(agent, bucket) cells (every bucket of
    :func:`sums_range`; cells of other buckets are ignored): THE computation, whether the
    cells were built from records just now or kept between cycles. The windows' numbers are
    :func:`~meta_supervisor.signals.daysums.lag_windows`'."""
    lags = lag_grid(policy)[1]
    if lags <= 0:
        return []
    cells = window_cells(sums, as_of, policy)
    if cells.size == 0:
        return [LagSample(j, _EMPTY, _EMPTY, _NO_GROUPS, 0) for j in range(1, lags + 1)]
    # cells are sorted by (agent, bucket): agent codes in name order
    agent_code = cells.agent
    # Group each agent by the strategy of its latest visible record (what it declares now).
    last = np.r_[np.flatnonzero(agent_code[1:] != agent_code[:-1]), agent_code.size - 1]
    strategy_index: dict[str, int] = {}
    agent_group = np.array(
        [
            strategy_index.setdefault(cells.strategies[s], len(strategy_index))
            for s in cells.strategy[last].tolist()
        ],
        dtype=np.int64,
    )
    need = max(2, policy.min_records)
    out = []
    for window in lag_windows(cells, as_of, policy):
        n, sd = window.n, window.sd
        ok = (n >= need) & (sd > 0) & (window.n_next > 0)
        # Strategies with one agent present have nothing to be compared with: drop them.
        groups_ok = agent_group[ok]
        size = np.bincount(groups_ok, minlength=len(strategy_index))
        ok[ok] = size[groups_ok] >= 2
        idx = np.flatnonzero(ok)
        n_agents = int(idx.size)
        groups = agent_group[idx]
        n_groups = int(np.count_nonzero(np.bincount(groups)))
        t = window.mean[idx] * np.sqrt(n[idx]) / sd[idx]
        out.append(LagSample(window.lag, t, window.next_mean[idx], groups, n_agents - n_groups))
    return out


def lag_correlations(
    records: pl.DataFrame, as_of: datetime, policy: Policy
) -> list[LagCorrelation]:
    """:math:`\\rho_j` for ``j = 1..evidence_persistence_lags`` (see the module docstring)."""
    return _correlations(lag_samples(records, as_of, policy))


def _correlations(samples: list[LagSample]) -> list[LagCorrelation]:
    out = []
    for sample in samples:
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


def _learns(policy: Policy) -> bool:
    """Whether ``policy`` learns a value from the fleet's past: the select profile's rule, or
    the evidence profile's tilt strength over ``evidence_persistence_lags > 0`` lags (the one
    test; :func:`history_hours` is 0 otherwise)."""
    from meta_supervisor.policy.model import Profile

    if policy.profile is Profile.SELECT:
        return True
    return policy.profile is Profile.EVIDENCE and policy.evidence_persistence_lags > 0


def persistence_from_sums(sums: DaySums, as_of: datetime, policy: Policy) -> Persistence:
    """What ``policy`` learns from the per-(agent, bucket) cells: THE definition
    (:func:`persistence` builds the cells from records and calls this; a live cycle keeps
    them between cycles, :mod:`meta_supervisor.cycle.learned`; a backtest advances them,
    :class:`LearnedStrengths`). The evidence profile's tilt strength; for the select profile,
    the rule it follows instead
    (:func:`~meta_supervisor.signals.selection.rule_selection_from_sums`, in ``selection``)."""
    from meta_supervisor.policy.model import Profile

    if policy.profile is Profile.SELECT:
        chosen = rule_selection_from_sums(sums, as_of, policy)
        return Persistence(0.0, math.nan, math.nan, math.nan, 0, selection=chosen)
    return persistence_from_lags(_correlations(lag_samples_from_sums(sums, as_of, policy)), policy)


def persistence(
    records: pl.DataFrame | pl.LazyFrame, as_of: datetime, policy: Policy
) -> Persistence:
    """What ``policy`` learns from the fleet's past (the evidence profile's tilt strength, see
    the module docstring; the select profile's rule): :func:`persistence_from_sums` of
    :func:`day_sums`."""
    if not _learns(policy):
        return persistence_from_lags([], policy)
    return persistence_from_sums(day_sums(records, as_of, policy), as_of, policy)


class LearnedStrengths:
    """The learned strength at successive instants of one in-memory ledger (a backtest's
    walk), from day sums advanced as the anchor moves: each bucket's cells are built once
    from its records (a time slice of the ledger), the buckets that leave the range are
    dropped, and the strength at each anchor is :func:`persistence_from_sums` of the kept
    cells, bit-identical to :func:`persistence` on the whole ledger (the cells are canonical,
    :mod:`meta_supervisor.signals.daysums`); the select profile's rule alike."""

    def __init__(self, records: pl.DataFrame) -> None:
        self.records = records
        self._sorted: SortedLedger | None = None
        # (horizon, bucket width, range length) -> (cells, the range's end in µs)
        self._sums: dict[tuple[int, int, int], tuple[DaySums, int]] = {}
        self._values: dict[tuple[str, datetime], Persistence] = {}

    def at(self, as_of: datetime, policy: Policy) -> Persistence:
        """:func:`persistence` ``(records, as_of, policy)``, computed once per anchor."""
        key = (policy.fingerprint(), anchor(as_of, policy))
        if key not in self._values:
            if not _learns(policy):
                self._values[key] = persistence(self.records, as_of, policy)
            else:
                sums = self._advanced(as_of, policy)
                self._values[key] = persistence_from_sums(sums, as_of, policy)
        return self._values[key]

    def _advanced(self, as_of: datetime, policy: Policy) -> DaySums:
        """The cells of :func:`sums_range` at ``as_of``, advancing the kept ones."""
        low, high = sums_range(as_of, policy)
        width = bucket_us(policy)
        key = (policy.horizon_hours, width, high - low)
        kept, upto = self._sums.get(key, (DaySums.empty(policy), low))
        if high < upto:  # a walk backwards: start again
            kept, upto = DaySums.empty(policy), low
        start = max(upto, low)
        if self._sorted is None:
            self._sorted = SortedLedger(self.records)
        fresh = DaySums.from_records(self._sorted.range(start, high), policy, start, high)
        kept = kept.within(low // width, high // width - 1)
        sums = kept.replaced(range(start // width, high // width), fresh)
        self._sums[key] = (sums, high)
        return sums
