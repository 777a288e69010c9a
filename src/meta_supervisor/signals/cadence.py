r"""Each agent judged against its own cadence: how many records it normally has in a window.

DESIGN.md ("Cadence and calendars"): a gate that counts records in wall-clock hours must not
read a weekend or a holiday as missing evidence. Measured on a daily fleet on the exchange
calendar (1995-2022), a 168 h window with ``min_records = 5`` held four records in every week
with a holiday and put the whole fleet in cash on 17% of trading days.

Definitions, with :math:`L` = ``policy.lookback_hours``, :math:`C` =
``max(policy.cadence_history_hours, L)`` and only records at ``policy.horizon_hours`` with
``matured_at ≤ as_of`` (nothing from the future):

* the agent's **expected records** in a window is
  :math:`E_i = n_i^{(C)} \cdot L / C`, where :math:`n_i^{(C)}` counts its records that matured in
  :math:`(as\_of - C, as\_of]`: what it normally produces in :math:`L` hours, measured over
  the last :math:`C` hours, whatever its calendar (trading days, hours, irregular). Unknown
  (``None``) when none of those records matured in the history's first :math:`L` hours,
  :math:`(as\_of - C, as\_of - C + L]` (the agent was not yet reporting when the history
  began, so its cadence is not known: a young agent is held to ``min_records`` as before;
  the test reads nothing older than :math:`C`, so a store that reads only the last
  :math:`C` hours gives the same answer as the whole ledger), or when
  ``cadence_history_hours = 0`` (cadence off).
* the **min_records gate** (:mod:`meta_supervisor.allocate.gates`) passes an agent with
  :math:`n_i` records in the window when :math:`n_i \ge` ``min_records``, or when :math:`E_i` is
  known and :math:`n_i \ge \max(\text{cadence\_min\_records},\ \text{cadence\_min\_share}\cdot
  E_i)`. Cadence only relaxes the gate, never tightens it: a holiday week (4 of a normal 4.8)
  passes, an agent that stopped reporting (0-2 of its normal 5) is still gated, and so is an
  agent with fewer than ``cadence_min_records`` records whatever its cadence.

:class:`CadenceIndex` holds each agent's sorted ``matured_at`` once, so a backtest asks for
:math:`E_i` at every rebalance by binary search (``O(agents·log n)``) instead of re-reading
the ledger. Pure: no file, no clock.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from meta_supervisor.typing import FloatArray, IntArray
from meta_supervisor.units import US_PER_HOUR

if TYPE_CHECKING:
    from meta_supervisor.policy.model import Policy

__all__ = ["CadenceIndex", "cadence_hours", "min_records_needed", "with_expected_records"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def cadence_hours(policy: Policy) -> float:
    """:math:`C = \\max(\\text{cadence\\_history\\_hours}, L)`; 0 when cadence is off."""
    if policy.cadence_history_hours <= 0:
        return 0.0
    return max(policy.cadence_history_hours, policy.lookback_hours)


def min_records_needed(expected: FloatArray, policy: Policy) -> FloatArray:
    """The record count the min_records gate asks of each agent (see the module docstring):
    ``min(min_records, max(cadence_min_records, cadence_min_share·E))``, or ``min_records``
    where ``E`` is NaN (unknown)."""
    relaxed = np.maximum(policy.cadence_min_records, policy.cadence_min_share * expected)
    return np.where(
        np.isnan(expected),
        float(policy.min_records),
        np.minimum(float(policy.min_records), relaxed),
    )


def _micros(t: datetime) -> int:
    return (t - _EPOCH) // timedelta(microseconds=1)


@dataclass(frozen=True)
class CadenceIndex:
    """Every agent's ``matured_at`` (µs since the epoch), sorted, at one horizon."""

    agents: tuple[str, ...]  # sorted names
    starts: IntArray  # agent a's times are times[starts[a]:starts[a + 1]]
    times: IntArray
    pnl: FloatArray  # realised bps, aligned with times (ties in matured_at ordered by ts)

    @classmethod
    def from_records(cls, records: pl.DataFrame, horizon_hours: int) -> CadenceIndex:
        """Index ``records`` at ``horizon_hours`` (any order; other horizons are ignored)."""
        frame = (
            records.lazy()
            .filter(pl.col("horizon_hours") == horizon_hours)
            .select(
                "agent",
                (pl.col("matured_at") - pl.lit(_EPOCH))
                .dt.total_microseconds()
                .cast(pl.Int64)
                .alias("_us"),
                "ts",
                "realized_pnl_bps",
            )
            .sort("agent", "_us", "ts", "realized_pnl_bps")
            .collect()
        )
        if frame.height == 0:
            empty = np.zeros(0, dtype=np.int64)
            return cls((), np.zeros(1, dtype=np.int64), empty, np.zeros(0))
        names = frame["agent"].to_numpy().astype(str)
        agents, first = np.unique(names, return_index=True)
        starts = np.append(first, names.size).astype(np.int64)
        return cls(
            tuple(agents.tolist()),
            starts,
            frame["_us"].to_numpy().astype(np.int64),
            frame["realized_pnl_bps"].to_numpy().astype(np.float64),
        )

    def recent_loss_z(self, agents: Sequence[str], as_of: datetime, policy: Policy) -> FloatArray:
        """Per agent, the largest ``z`` such that ``broken_consecutive`` consecutive records
        among its last ``broken_memory_records`` each lost at least ``z`` times its own robust
        scale (NaN: unknown; see :mod:`meta_supervisor.signals.broken`)."""
        from meta_supervisor.signals.broken import loss_run_z

        out = np.full(len(agents), np.nan)
        for k, start, _, lo, hi in self._windows(agents, as_of, policy):
            out[k] = loss_run_z(self.pnl[start + lo : start + hi], policy)
        return out

    def _windows(
        self, agents: Sequence[str], as_of: datetime, policy: Policy
    ) -> Iterator[tuple[int, int, IntArray, int, int]]:
        """For each of ``agents`` this index knows: ``(k, start, times, lo, hi)`` with ``k``
        its position in ``agents``, ``times`` its sorted µs maturities (from row ``start``)
        and ``times[lo:hi]`` those in the cadence history ``(as_of − C, as_of]``. Nothing
        when cadence is off."""
        history = cadence_hours(policy)
        if history <= 0 or not self.agents:
            return
        now = _micros(as_of)
        since = now - round(history * US_PER_HOUR)
        index = {a: i for i, a in enumerate(self.agents)}
        for k, agent in enumerate(agents):
            a = index.get(agent)
            if a is None:
                continue
            start = int(self.starts[a])
            times = self.times[start : self.starts[a + 1]]
            lo = int(np.searchsorted(times, since, "right"))
            hi = int(np.searchsorted(times, now, "right"))
            yield k, start, times, lo, hi

    def expected_records(
        self, agents: Sequence[str], as_of: datetime, policy: Policy
    ) -> FloatArray:
        """:math:`E_i` for ``agents`` at ``as_of`` (NaN: unknown), see the module docstring."""
        out = np.full(len(agents), np.nan)
        history = cadence_hours(policy)
        since = _micros(as_of) - round(history * US_PER_HOUR)
        first_band = round(policy.lookback_hours * US_PER_HOUR)
        for k, _, times, lo, hi in self._windows(agents, as_of, policy):
            if lo == hi or times[lo] > since + first_band:
                continue  # not reporting when the history began: young agent, cadence unknown
            out[k] = (hi - lo) * policy.lookback_hours / history
        return out


def with_expected_records(
    stats: pl.DataFrame,
    index: CadenceIndex,
    as_of: datetime,
    policy: Policy,
    *,
    loss_z: bool = True,
) -> pl.DataFrame:
    """``stats`` with the columns the agent's own history gives (null where unknown):
    ``expected_records`` for the min_records gate and, with ``loss_z`` (a profile that reads
    it: *select*), ``recent_loss_z`` for the cut of a broken agent
    (:mod:`meta_supervisor.signals.broken`)."""
    names = stats["agent"].to_list()
    expected = index.expected_records(names, as_of, policy)
    columns = [pl.Series("expected_records", expected, dtype=pl.Float64).fill_nan(None)]
    if loss_z:
        z = index.recent_loss_z(names, as_of, policy)
        columns.append(pl.Series("recent_loss_z", z, dtype=pl.Float64).fill_nan(None))
    return stats.with_columns(columns)
