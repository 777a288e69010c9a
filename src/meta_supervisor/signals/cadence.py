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

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from meta_supervisor.signals.order import in_record_order
from meta_supervisor.typing import FloatArray, IntArray
from meta_supervisor.units import epoch_us

if TYPE_CHECKING:
    from meta_supervisor.policy.model import Policy

__all__ = [
    "CadenceIndex",
    "cadence_hours",
    "hours_us",
    "loss_columns",
    "min_records_needed",
    "with_expected_records",
]


def cadence_hours(policy: Policy) -> float:
    """:math:`C = \\max(\\text{cadence\\_history\\_hours}, L)`; 0 when cadence is off."""
    if policy.cadence_history_hours <= 0:
        return 0.0
    return max(policy.cadence_history_hours, policy.lookback_hours)


def hours_us(hours: float) -> int:
    """``hours`` as whole µs, rounded as ``timedelta(hours=hours)`` rounds them: the length of
    every window the store reads (``as_of − timedelta(hours=h)``), so a bound computed here is
    the store's to the µs (``round(h·3.6e9)`` is one µs off for some fractional ``h``)."""
    return timedelta(hours=hours) // timedelta(microseconds=1)


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


@dataclass(frozen=True)
class CadenceIndex:
    """Every agent's ``matured_at`` (µs since the epoch), sorted, at one horizon."""

    agents: tuple[str, ...]  # sorted names
    starts: IntArray  # agent a's times are times[starts[a]:starts[a + 1]]
    times: IntArray
    pnl: FloatArray  # realised bps, aligned with times (each agent's rows in record order)

    @classmethod
    def from_records(cls, records: pl.DataFrame, horizon_hours: int) -> CadenceIndex:
        """Index ``records`` at ``horizon_hours`` (any order; other horizons are ignored).

        Each agent's records in record order (``matured_at``, ``ts``, ``record_id``; by
        ``realized_pnl_bps`` for frames without ids): the rows put in record order once (no
        sort when they already are, the common case), then grouped by a stable radix sort of
        the agents' numbers, linear in the rows."""
        keys = ["record_id"] if "record_id" in records.columns else []
        frame = records.filter(
            (pl.col("horizon_hours") == horizon_hours) & pl.col("matured_at").is_not_null()
        ).select("agent", "matured_at", "ts", "realized_pnl_bps", *keys)
        if frame.height == 0:
            empty = np.zeros(0, dtype=np.int64)
            return cls((), np.zeros(1, dtype=np.int64), empty, np.zeros(0))
        if keys:
            frame = in_record_order(frame)
        else:
            frame = frame.sort("matured_at", "ts", "realized_pnl_bps")
        agents = sorted(frame["agent"].unique().to_list())
        codes = frame["agent"].cast(pl.Enum(agents)).to_physical().to_numpy()
        small = codes.astype(np.uint16) if len(agents) < 2**16 else codes.astype(np.int64)
        order = np.argsort(small, kind="stable")
        starts = np.searchsorted(small[order], np.arange(len(agents) + 1), side="left")
        times = frame["matured_at"].dt.epoch("us").to_numpy().astype(np.int64)
        return cls(
            tuple(agents),
            starts.astype(np.int64),
            times[order],
            frame["realized_pnl_bps"].to_numpy().astype(np.float64)[order],
        )

    def recent_loss_z(self, agents: Sequence[str], as_of: datetime, policy: Policy) -> FloatArray:
        """Per agent, the largest ``z`` such that ``broken_consecutive`` consecutive records
        among its last ``broken_memory_records`` each lost at least ``z`` times its own robust
        scale, divided by the fleet's ``V`` when ``V ≥ 1.5`` with ``broken_regime_relative``
        (NaN: unknown; see :mod:`meta_supervisor.signals.broken`)."""
        return self.loss_regime(agents, as_of, policy)[0]

    def loss_regime(
        self, agents: Sequence[str], as_of: datetime, policy: Policy
    ) -> tuple[FloatArray, float]:
        """``(recent_loss_z, V)``: per agent the run judged in the fleet's regime, and the
        fleet's volatility ratio ``V`` over ``agents`` (NaN: unknown, or the cut is absolute:
        ``broken_regime_relative`` off), see :mod:`meta_supervisor.signals.broken`."""
        from meta_supervisor.signals.broken import fleet_loss_runs, loss_regime

        z = np.full(len(agents), np.nan)
        ratio = np.full(len(agents), np.nan)
        history = cadence_hours(policy)
        if history > 0 and self.agents:
            now = epoch_us(as_of)
            k, lo, hi = self._bounds(agents, now - hours_us(history), now)

            def rows_of(rows: IntArray, n: int) -> FloatArray:
                return self.pnl[(hi[rows] - n)[:, None] + np.arange(n)]

            z[k], ratio[k] = fleet_loss_runs(hi - lo, rows_of, policy)
        return loss_regime(z, ratio, policy)

    @functools.cached_property
    def _positions(self) -> dict[str, int]:
        return {a: i for i, a in enumerate(self.agents)}

    @functools.cached_property
    def _span(self) -> tuple[int, int]:
        """``(t_min, S)``: the earliest time and the time span + 2 (µs)."""
        if not self.times.size:
            return 0, 2
        low = int(self.times.min())
        return low, int(self.times.max()) - low + 2

    @functools.cached_property
    def _keys(self) -> IntArray | None:
        """``a·S + (t − t_min + 1)`` per row (``a`` its agent's number, ``S`` from
        :attr:`_span`): sorted, so every agent's window bounds are one vectorised binary search;
        ``None`` when the product would not fit an int64 (then each agent is searched alone)."""
        low, span = self._span
        if not self.times.size or span * len(self.agents) >= 2**62:
            return None
        agent = np.repeat(np.arange(len(self.agents), dtype=np.int64), np.diff(self.starts))
        return agent * span + (self.times - low + 1)

    def _bounds(
        self, agents: Sequence[str], since: int, now: int
    ) -> tuple[IntArray, IntArray, IntArray]:
        """``(k, lo, hi)``: for each of ``agents`` this index knows (``k`` its position in
        ``agents``), its rows ``lo:hi`` (absolute) are those with ``since < t ≤ now``."""
        found = [(k, self._positions.get(name, -1)) for k, name in enumerate(agents)]
        k = np.array([i for i, a in found if a >= 0], dtype=np.int64)
        a = np.array([a for _, a in found if a >= 0], dtype=np.int64)
        keys = self._keys
        if keys is None:
            lo = np.array(
                [s + np.searchsorted(self.times[s:e], since, "right") for s, e in self._spans(a)],
                dtype=np.int64,
            )
            hi = np.array(
                [s + np.searchsorted(self.times[s:e], now, "right") for s, e in self._spans(a)],
                dtype=np.int64,
            )
            return k, lo, hi
        low, span = self._span

        def bound(t: int) -> IntArray:
            offset = min(max(t - low + 1, 0), span - 1)
            return np.searchsorted(keys, a * span + offset, "right").astype(np.int64)

        return k, bound(since), bound(now)

    def _spans(self, agents: IntArray) -> list[tuple[int, int]]:
        return [(int(self.starts[a]), int(self.starts[a + 1])) for a in agents]

    def expected_records(
        self, agents: Sequence[str], as_of: datetime, policy: Policy
    ) -> FloatArray:
        """:math:`E_i` for ``agents`` at ``as_of`` (NaN: unknown), see the module docstring.
        Vectorised over the agents (one binary search each, no per-agent Python)."""
        out = np.full(len(agents), np.nan)
        history = cadence_hours(policy)
        if history <= 0 or not self.agents:
            return out
        now = epoch_us(as_of)
        since = now - hours_us(history)
        first_band = hours_us(policy.lookback_hours)
        k, lo, hi = self._bounds(agents, since, now)
        some = lo < hi
        # not reporting when the history began: young agent, cadence unknown
        first = np.where(some, self.times[np.minimum(lo, self.times.size - 1)], 0)
        known = some & (first <= since + first_band)
        out[k[known]] = (hi - lo)[known] * policy.lookback_hours / history
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
    it: *select*), ``recent_loss_z`` for the cut of a broken agent and ``fleet_vol_ratio``
    (the fleet's ``V``, the same in every row; null when unknown or the cut is absolute), see
    :mod:`meta_supervisor.signals.broken`."""
    names = stats["agent"].to_list()
    expected = index.expected_records(names, as_of, policy)
    columns = [pl.Series("expected_records", expected, dtype=pl.Float64).fill_nan(None)]
    if loss_z:
        columns += loss_columns(*index.loss_regime(names, as_of, policy), len(names))
    return stats.with_columns(columns)


def loss_columns(loss_z: FloatArray, fleet_v: float, rows: int) -> list[pl.Series]:
    """The broken cut's stats columns: ``recent_loss_z`` per agent and the fleet's
    ``fleet_vol_ratio`` in each of ``rows`` rows (null where NaN)."""
    return [
        pl.Series("recent_loss_z", loss_z, dtype=pl.Float64).fill_nan(None),
        pl.Series("fleet_vol_ratio", np.full(rows, fleet_v), dtype=pl.Float64).fill_nan(None),
    ]
