r"""Per-(agent, step) PnL sums at the policy horizon: all the learned value reads.

What a profile learns from the fleet's past, the evidence profile's tilt strength
(:mod:`meta_supervisor.signals.persistence`) or the select profile's rule
(:mod:`meta_supervisor.signals.selection`), reads each agent's count, mean and spread of
realised PnL over windows whose ends are multiples of the lag step :math:`H` and whose lengths
are :math:`L` (the lookback) and :math:`H` (:func:`lag_grid` names them per profile). Every such
window is a union of whole **buckets** of width :math:`g = \gcd(H, L)` (in µs; a day for the
default 24 h step and 168 h lookback): bucket :math:`b` holds the records matured in
:math:`(b g, (b+1) g]` (µs since the epoch; a record matured at midnight belongs to the day that
ends there).

A **cell** is one (agent, bucket) and holds, over that agent's records at
``policy.horizon_hours`` matured in the bucket:

* ``n``: how many (≥ 1; a cell with no record is not stored);
* ``pnl_sum`` :math:`S_c = \sum x` (bps);
* ``pnl_m2`` :math:`M_c = \sum (x - S_c/n)^2` (bps²), the sum of squared deviations from the
  cell's own mean (two passes, so a large common level does not cancel the spread away);
* ``strategy``: the strategy of the cell's latest record, the largest
  ``(matured_at, ts, strategy)`` (a missing or empty strategy reads ``unclassified``; ties on
  time are broken by the name, so no input order decides it).

**Canonical by construction.** A cell is always computed from *all* its records, in the
canonical order ``(matured_at, ts, strategy, pnl)`` (PnL in a total order: NaN last, −0.0
before 0.0), and summed in that order (``np.bincount`` adds in input order; a NaN sum is stored
as one NaN, whichever NaN it met first), so its bits depend only on the multiset of its records
(a stored NaN or ±inf PnL included: ingest refuses them, a store appended to directly may hold
them): a cell built from
scratch, or recomputed after a late record arrived for its bucket, is the same to the last bit
however the records were ordered or batched. A ledger is appended in time, so the canonical
order is usually the input order (one O(n) check; only runs of records with equal
``(matured_at, ts)`` are reordered), and no sort of the records is needed.

The cells are kept as arrays sorted by ``(agent, bucket)``, agents and strategies as codes into
sorted name lists that hold exactly the names used, so equal cells are equal arrays and
:meth:`DaySums.to_bytes` is canonical. Pure: frames in, arrays out; no file, no clock.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import polars as pl
from numpy.typing import NDArray

from meta_supervisor.units import US_PER_HOUR, UTC_US, epoch_us, from_epoch_us

if TYPE_CHECKING:
    from meta_supervisor.policy.model import Policy

__all__ = [
    "CELL_SCHEMA",
    "SUMS_COLUMNS",
    "DaySums",
    "LagWindow",
    "anchor",
    "bucket_of",
    "bucket_us",
    "lag_grid",
    "lag_windows",
    "sums_range",
    "window_cells",
]

#: The record columns :meth:`DaySums.from_records` reads.
SUMS_COLUMNS = ["agent", "strategy", "matured_at", "ts", "horizon_hours", "realized_pnl_bps"]
#: :attr:`DaySums.cells`: one row per cell, sorted by ``(agent, bucket)``.
CELL_SCHEMA: dict[str, pl.DataType] = {
    "agent": pl.String(),
    "bucket": pl.Int64(),
    "n": pl.Int64(),
    "pnl_sum": pl.Float64(),
    "pnl_m2": pl.Float64(),
    "strategy": pl.String(),
}
UNCLASSIFIED = "unclassified"
_MAGIC = b"meta-supervisor day sums 1\n"
#: Above this many (agent, bucket) slots per record, cells are numbered by a sort instead of
#: a dense grid (tiny buckets: a gcd of a few µs).
_DENSE_SLOTS_PER_ROW = 4
_I64_MIN = np.iinfo(np.int64).min

Ints = NDArray[np.int64]
Floats = NDArray[np.float64]


def lag_grid(policy: Policy) -> tuple[int, int, int]:
    """``(H, J, L)`` of the profile's learned value: the lag step and the lookback in µs (each
    rounded to the µs) and the number of lags (0 for a negative one). The select profile's are
    ``selection_step_hours`` and ``selection_lags``; any other profile's
    ``evidence_persistence_step_hours`` and ``evidence_persistence_lags``; ``L`` is
    ``lookback_hours`` for both."""
    from meta_supervisor.policy.model import Profile

    if policy.profile is Profile.SELECT:
        step, lags = policy.selection_step_hours, policy.selection_lags
    else:
        step, lags = policy.evidence_persistence_step_hours, policy.evidence_persistence_lags
    return round(step * US_PER_HOUR), max(lags, 0), round(policy.lookback_hours * US_PER_HOUR)


def bucket_us(policy: Policy) -> int:
    """The bucket width :math:`g = \\gcd(H, L)` in µs (:func:`lag_grid`)."""
    step, _, look = lag_grid(policy)
    return max(1, math.gcd(step, look))


def anchor(as_of: datetime, policy: Policy) -> datetime:
    """The anchor :math:`A`: ``as_of`` rounded down to a multiple of the lag step :math:`H`
    since the epoch (UTC; :func:`lag_grid`). The learned value reads only records matured by
    :math:`A`, so it is the same for every cycle between two anchors."""
    micros = epoch_us(as_of)
    return from_epoch_us(micros - micros % lag_grid(policy)[0])


def sums_range(as_of: datetime, policy: Policy) -> tuple[int, int]:
    """``(A − J·H − L, A]`` in µs since the epoch, ``A`` = :func:`anchor`: the records the
    learned value reads (bucket boundaries: :func:`bucket_us` divides both ``H`` and ``L``)."""
    step, lags, look = lag_grid(policy)
    high = epoch_us(anchor(as_of, policy))
    return high - lags * step - look, high


def bucket_of(matured_us: int, width_us: int) -> int:
    """The bucket holding an instant matured at ``matured_us``: ``b`` with
    ``b·g < matured ≤ (b+1)·g``."""
    return (matured_us - 1) // width_us


@dataclass(frozen=True, eq=False)
class DaySums:
    """The cells (see the module docstring) of one horizon and bucket width, as arrays sorted
    by ``(agent, bucket)``; ``agents``/``strategies`` are the sorted names the codes index."""

    horizon_hours: int
    bucket_us: int
    agents: tuple[str, ...]
    strategies: tuple[str, ...]
    agent: Ints
    bucket: Ints
    n: Ints
    pnl_sum: Floats
    pnl_m2: Floats
    strategy: Ints

    _ARRAYS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("agent", "<i4"),
        ("bucket", "<i8"),
        ("n", "<i8"),
        ("pnl_sum", "<f8"),
        ("pnl_m2", "<f8"),
        ("strategy", "<i4"),
    )

    # ---- building ------------------------------------------------------------------------

    @classmethod
    def empty(cls, policy: Policy) -> DaySums:
        """No cell, for ``policy``'s horizon and bucket width."""
        none = np.zeros(0, dtype=np.int64)
        zero = np.zeros(0)
        return cls(
            policy.horizon_hours, bucket_us(policy), (), (), none, none, none, zero, zero, none
        )

    @classmethod
    def from_records(
        cls, records: pl.DataFrame | pl.LazyFrame, policy: Policy, low_us: int, high_us: int
    ) -> DaySums:
        """The cells of the records at ``policy.horizon_hours`` matured in ``(low, high]``
        (µs since the epoch; pass bucket boundaries, or a bucket partly in the range is built
        from part of its records)."""
        lazy = records.lazy() if isinstance(records, pl.DataFrame) else records
        frame = (
            lazy.filter(
                (pl.col("matured_at") > pl.lit(low_us).cast(UTC_US))
                & (pl.col("matured_at") <= pl.lit(high_us).cast(UTC_US))
                & (pl.col("horizon_hours") == policy.horizon_hours)
            )
            .select("agent", "strategy", "matured_at", "ts", "realized_pnl_bps")
            .collect()
        )
        return _cells(frame, policy.horizon_hours, bucket_us(policy))

    @classmethod
    def from_cells(cls, horizon_hours: int, width_us: int, cells: pl.DataFrame) -> DaySums:
        """From a frame of :data:`CELL_SCHEMA` (any row order; one row per cell)."""
        agents = tuple(sorted(set(cells["agent"].to_list())))
        strategies = tuple(sorted(set(cells["strategy"].to_list())))
        a = _codes_of(cells["agent"], agents)
        s = _codes_of(cells["strategy"], strategies)
        b = cells["bucket"].to_numpy().astype(np.int64)
        order = np.lexsort((b, a))
        return cls(
            horizon_hours,
            width_us,
            agents,
            strategies,
            a[order],
            b[order],
            cells["n"].to_numpy().astype(np.int64)[order],
            cells["pnl_sum"].to_numpy().astype(np.float64)[order],
            cells["pnl_m2"].to_numpy().astype(np.float64)[order],
            s[order],
        )

    # ---- reading -------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """How many cells."""
        return int(self.agent.size)

    @property
    def cells(self) -> pl.DataFrame:
        """The cells as a frame of :data:`CELL_SCHEMA` (for people and tests)."""
        agents = np.array(self.agents, dtype=object)
        strategies = np.array(self.strategies, dtype=object)
        return pl.DataFrame(
            {
                "agent": agents[self.agent].tolist() if self.size else [],
                "bucket": self.bucket,
                "n": self.n,
                "pnl_sum": self.pnl_sum,
                "pnl_m2": self.pnl_m2,
                "strategy": strategies[self.strategy].tolist() if self.size else [],
            },
            schema=CELL_SCHEMA,
        )

    def buckets(self) -> set[int]:
        """The buckets that hold at least one cell."""
        return set(np.unique(self.bucket).tolist())

    # ---- updating ------------------------------------------------------------------------

    def _take(self, rows: Ints) -> DaySums:
        """The cells at ``rows`` (in that order), names pruned to those still used."""
        agents, a = _pruned(self.agents, self.agent[rows])
        strategies, s = _pruned(self.strategies, self.strategy[rows])
        return DaySums(
            self.horizon_hours,
            self.bucket_us,
            agents,
            strategies,
            a,
            self.bucket[rows],
            self.n[rows],
            self.pnl_sum[rows],
            self.pnl_m2[rows],
            s,
        )

    def within(self, low_bucket: int, high_bucket: int) -> DaySums:
        """Only the cells of buckets ``low..high`` (both included)."""
        rows = np.flatnonzero((self.bucket >= low_bucket) & (self.bucket <= high_bucket))
        return self if rows.size == self.size else self._take(rows)

    def replaced(self, recomputed: Iterable[int], fresh: DaySums) -> DaySums:
        """These sums with every bucket in ``recomputed`` replaced by ``fresh``'s cells of it
        (``fresh`` holds cells of those buckets only: they were rebuilt from all their
        records)."""
        if (fresh.horizon_hours, fresh.bucket_us) != (self.horizon_hours, self.bucket_us):
            raise ValueError("day sums of another horizon or bucket width")
        dropped = np.array(sorted(set(recomputed)), dtype=np.int64)
        if fresh.size and not np.isin(fresh.bucket, dropped).all():
            raise ValueError("fresh cells outside the recomputed buckets")
        kept = self._take(np.flatnonzero(~np.isin(self.bucket, dropped)))
        agents = tuple(sorted(set(kept.agents) | set(fresh.agents)))
        strategies = tuple(sorted(set(kept.strategies) | set(fresh.strategies)))

        def remap(names: tuple[str, ...], within: tuple[str, ...], codes: Ints) -> Ints:
            lookup = np.searchsorted(np.array(names, dtype=object), np.array(within, dtype=object))
            return np.asarray(lookup, dtype=np.int64)[codes] if codes.size else codes

        a = np.r_[remap(agents, kept.agents, kept.agent), remap(agents, fresh.agents, fresh.agent)]
        b = np.r_[kept.bucket, fresh.bucket]
        order = np.lexsort((b, a))
        s = np.r_[
            remap(strategies, kept.strategies, kept.strategy),
            remap(strategies, fresh.strategies, fresh.strategy),
        ]
        merged = DaySums(
            self.horizon_hours,
            self.bucket_us,
            agents,
            strategies,
            a[order].astype(np.int64),
            b[order].astype(np.int64),
            np.r_[kept.n, fresh.n][order].astype(np.int64),
            np.r_[kept.pnl_sum, fresh.pnl_sum][order].astype(np.float64),
            np.r_[kept.pnl_m2, fresh.pnl_m2][order].astype(np.float64),
            s[order].astype(np.int64),
        )
        return merged._take(np.arange(merged.size))  # prune names no cell uses

    # ---- canonical bytes -----------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """A canonical encoding: equal cells give equal bytes (a header line of JSON with
        sorted keys naming the agents and strategies in sorted order, then one little-endian
        array per column)."""
        header = {
            "agents": list(self.agents),
            "bucket_us": self.bucket_us,
            "cells": self.size,
            "horizon_hours": self.horizon_hours,
            "strategies": list(self.strategies),
        }
        text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        body = [
            np.ascontiguousarray(getattr(self, name), dtype=dtype).tobytes()
            for name, dtype in self._ARRAYS
        ]
        return _MAGIC + text.encode("ascii") + b"\n" + b"".join(body)

    @classmethod
    def from_bytes(cls, data: bytes) -> DaySums:
        """The inverse of :meth:`to_bytes`; ``ValueError`` for anything that is not exactly
        such an encoding (wrong lengths, codes out of range or unused, names not sorted,
        cells out of order, a count below 1, a negative spread). A NaN or infinite sum or
        spread is accepted: it is what a stored NaN or infinite PnL gives."""
        if not data.startswith(_MAGIC):
            raise ValueError("not a day-sums encoding")
        line_end = data.find(b"\n", len(_MAGIC))
        if line_end < 0:
            raise ValueError("day sums: no header")
        header = json.loads(data[len(_MAGIC) : line_end].decode("ascii"))
        size = int(header["cells"])
        agents, strategies = tuple(header["agents"]), tuple(header["strategies"])
        if any(not isinstance(x, str) for x in (*agents, *strategies)):
            raise ValueError("day sums: a name that is not a string")
        arrays: dict[str, np.ndarray] = {}
        offset = line_end + 1
        for name, dtype in cls._ARRAYS:
            width = np.dtype(dtype).itemsize * size
            if size < 0 or offset + width > len(data):
                raise ValueError("day sums: truncated")
            raw = np.frombuffer(data, dtype=dtype, count=size, offset=offset)
            arrays[name] = raw.astype(np.float64 if dtype == "<f8" else np.int64)
            offset += width
        if offset != len(data):
            raise ValueError("day sums: trailing bytes")
        sums = cls(
            int(header["horizon_hours"]),
            int(header["bucket_us"]),
            agents,
            strategies,
            arrays["agent"],
            arrays["bucket"],
            arrays["n"],
            arrays["pnl_sum"],
            arrays["pnl_m2"],
            arrays["strategy"],
        )
        sums._check()
        return sums

    def _check(self) -> None:
        """Raise ``ValueError`` unless these are cells as :func:`_cells` makes them."""
        a, s, b = self.agent, self.strategy, self.bucket
        if list(self.agents) != sorted(set(self.agents)) or list(self.strategies) != sorted(
            set(self.strategies)
        ):
            raise ValueError("day sums: names not sorted and distinct")
        for codes, names in ((a, self.agents), (s, self.strategies)):
            if codes.size and (codes.min() < 0 or codes.max() >= len(names)):
                raise ValueError("day sums: a code out of range")
            if not bool((np.bincount(codes, minlength=len(names)) > 0).all()):
                raise ValueError("day sums: a name no cell uses")
        if self.size > 1:
            step_a, step_b = np.diff(a), np.diff(b)
            if not bool(((step_a > 0) | ((step_a == 0) & (step_b > 0))).all()):
                raise ValueError("day sums: cells not sorted by (agent, bucket)")
        if self.size and self.n.min() < 1:
            raise ValueError("day sums: a cell with no record")
        # NaN and ±inf sums and spreads are what IEEE arithmetic gives for a stored NaN or
        # infinite PnL (ingest refuses them; a store appended to directly may hold them)
        if self.size and bool((self.pnl_m2 < 0).any()):
            raise ValueError("day sums: a negative spread")


def _pruned(names: tuple[str, ...], codes: Ints) -> tuple[tuple[str, ...], Ints]:
    """``names`` reduced to those ``codes`` use, and the codes renumbered into them (order
    kept: still sorted)."""
    used = np.bincount(codes, minlength=len(names)) > 0 if codes.size else np.zeros(0, bool)
    if used.size == len(names) and used.all():
        return names, codes
    renumber = np.cumsum(used) - 1
    kept = tuple(name for name, u in zip(names, used.tolist(), strict=False) if u)
    return kept, renumber[codes].astype(np.int64) if codes.size else codes


def _no_cells(horizon_hours: int, width: int) -> DaySums:
    none, zero = np.zeros(0, dtype=np.int64), np.zeros(0)
    return DaySums(horizon_hours, width, (), (), none, none, none, zero, zero, none)


def _codes_of(values: pl.Series, names: tuple[str, ...]) -> Ints:
    """Each value's index into ``names`` (sorted, distinct, holding every value)."""
    if not names:
        return np.zeros(0, dtype=np.int64)
    return values.cast(pl.Enum(list(names))).to_physical().to_numpy().astype(np.int64)


def _strategy_names(values: pl.Series) -> list[str]:
    """Strategies as the cells name them: a missing or empty one is ``unclassified``."""
    return [str(s) if s else UNCLASSIFIED for s in values.to_list()]


def _epoch(column: pl.Series) -> Ints:
    """µs since the epoch; a missing instant sorts first (as polars sorts nulls)."""
    us = column.dt.epoch("us")
    if us.null_count():
        us = us.fill_null(_I64_MIN)
    return np.asarray(us.to_numpy(), dtype=np.int64)


def _total_order(value: float) -> tuple[bool, float, float]:
    """A sort key that orders every float, NaN last and −0.0 before 0.0 (``<`` alone leaves
    a NaN unordered, and a sort then leaves its neighbours in input order)."""
    if math.isnan(value):
        return True, 0.0, 0.0
    return False, value, math.copysign(1.0, value)


def _canonical_order(frame: pl.DataFrame, m: Ints, t: Ints, x: Floats) -> Ints | None:
    """Row indices of ``frame`` in the canonical order ``(matured_at, ts, strategy, pnl)``,
    or ``None`` when the input order already is (a ledger is appended in time: one pass);
    otherwise a sort, rows tied on ``(matured_at, ts)`` ordered by ``(strategy, pnl)``."""
    if m.size < 2:
        return None
    step = np.diff(m)
    same = np.flatnonzero(step == 0)  # positions i with m[i] == m[i + 1]
    rows: Ints | None = None
    if step.min() < 0 or bool((t[same + 1] < t[same]).any()):
        rows = np.lexsort((t, m)).astype(np.int64)
        ms, ts = m[rows], t[rows]
        same = np.flatnonzero(ms[1:] == ms[:-1])
        tied = same[ts[same + 1] == ts[same]]
    else:
        tied = same[t[same + 1] == t[same]]
    if not tied.size:
        return rows
    # runs of equal (matured_at, ts): reorder each run by (strategy, pnl), in place
    rows = np.arange(m.size, dtype=np.int64) if rows is None else rows
    in_run = np.union1d(tied, tied + 1)  # sorted positions of the runs' members
    run = np.cumsum(~np.isin(in_run - 1, tied))  # a run starts where a row is not tied back
    members = rows[in_run]
    names = _strategy_names(frame["strategy"].gather(members.tolist()))
    values = [_total_order(v) for v in x[members].tolist()]
    order = sorted(range(in_run.size), key=lambda i: (int(run[i]), names[i], values[i]))
    rows[in_run] = members[np.array(order, dtype=np.int64)]
    return rows


def _cells(frame: pl.DataFrame, horizon_hours: int, width: int) -> DaySums:
    """The cells of ``frame`` (already at the horizon and in range): see the module docstring."""
    if frame.height == 0:
        return _no_cells(horizon_hours, width)
    m = _epoch(frame["matured_at"])
    t = _epoch(frame["ts"])
    x = np.asarray(frame["realized_pnl_bps"].cast(pl.Float64).to_numpy(), dtype=np.float64)
    rows = _canonical_order(frame, m, t, x)
    agents = tuple(frame["agent"].unique().sort().to_list())
    a = _codes_of(frame["agent"], agents)
    if rows is not None:
        m, a, x = m[rows], a[rows], x[rows]
    b = (m - 1) // width
    first = int(b.min())
    span = int(b.max()) - first + 1
    # each row's cell: a slot of the (agent, bucket) grid, or a sort when the grid is too big
    if len(agents) * span <= _DENSE_SLOTS_PER_ROW * b.size + 1024:
        slot = a * span
        slot += b
        slot -= first
        slots = len(agents) * span
    else:
        _, slot = np.unique(np.stack([a, b]), axis=1, return_inverse=True)
        slot = slot.reshape(-1)
        slots = int(slot.max()) + 1
    # np.bincount adds each slot's rows in row order: the canonical order
    n = np.bincount(slot, minlength=slots)
    used = np.flatnonzero(n)
    total: Floats = np.bincount(slot, weights=x, minlength=slots).astype(np.float64)
    mean = np.divide(total, n, out=np.zeros(slots), where=n > 0)
    with np.errstate(invalid="ignore"):  # a stored ±inf PnL: inf − inf is NaN, as IEEE says
        deviation = x - mean[slot]
    np.square(deviation, out=deviation)
    m2: Floats = np.bincount(slot, weights=deviation, minlength=slots).astype(np.float64)
    # one NaN for every NaN sum (a stored NaN and inf − inf carry different bits; which one a
    # sum keeps depends on the order it met them)
    for column in (total, m2):
        column[np.isnan(column)] = np.nan
    last = np.zeros(slots, dtype=np.int64)
    np.maximum.at(last, slot, np.arange(slot.size, dtype=np.int64))
    last = last[used]
    picked = last if rows is None else rows[last]
    # a list, not an array: polars would import numpy.ma for it (~60 ms in a fresh process)
    strategy_names = _strategy_names(frame["strategy"].gather(picked.tolist()))
    strategies = tuple(sorted(set(strategy_names)))
    lookup = {name: k for k, name in enumerate(strategies)}
    return DaySums(
        horizon_hours,
        width,
        agents,
        strategies,
        a[last],
        b[last],
        n[used].astype(np.int64),
        total[used],
        m2[used],
        np.array([lookup[s] for s in strategy_names], dtype=np.int64),
    )


# ---- the lag windows both learned values read -------------------------------------------


@dataclass(frozen=True)
class LagWindow:
    """Lag ``j``'s numbers per agent code of the cells :func:`window_cells` kept (0 for an
    agent with no record in a window): over the **evidence window** :math:`(T_j - L, T_j]`
    the record count ``n``, the mean ``mean`` and the sample std ``sd`` (``ddof = 1``; 0 below
    two records) of realised PnL (bps); over the **next period** :math:`(T_j, T_j + H]` the
    count ``n_next`` and the mean ``next_mean`` (bps), with :math:`T_j = A - jH`."""

    lag: int
    n: Floats
    mean: Floats
    sd: Floats
    n_next: Floats
    next_mean: Floats


def window_cells(sums: DaySums, as_of: datetime, policy: Policy) -> DaySums:
    """The cells of :func:`sums_range` at ``as_of`` (cells of other buckets are ignored);
    ``ValueError`` for cells of another horizon or bucket width than the policy's."""
    if (sums.horizon_hours, sums.bucket_us) != (policy.horizon_hours, bucket_us(policy)):
        raise ValueError("day sums of another horizon or bucket width than the policy's")
    low, high = sums_range(as_of, policy)
    return sums.within(low // sums.bucket_us, high // sums.bucket_us - 1)


@np.errstate(invalid="ignore")  # a cell of a stored ±inf PnL: inf − inf is NaN, as IEEE says
def lag_windows(cells: DaySums, as_of: datetime, policy: Policy) -> list[LagWindow]:
    r"""Per lag ``j = 1..J`` (:func:`lag_grid`) the :class:`LagWindow` of ``cells``
    (:func:`window_cells`): THE combination of cells into windows, whichever value reads it.

    Over the cells :math:`c` of an agent in a window (count :math:`n_c`, sum :math:`S_c`,
    squared deviations :math:`M_c` from the cell mean): :math:`n = \sum n_c`,
    :math:`\bar x = \sum S_c / n`, :math:`\sum (x - \bar x)^2 = \sum_c [M_c + n_c
    (S_c/n_c - \bar x)^2]` (exact in real arithmetic: Chan et al.'s pairwise update), each
    agent's sum taken over its cells in bucket order (``np.bincount`` adds in input order),
    so the bits depend on the cells alone.
    """
    step, lags, look = lag_grid(policy)
    width = cells.bucket_us
    high = sums_range(as_of, policy)[1]
    # The cells in bucket order (agents in code order within a bucket): a window of buckets is
    # a slice, and each agent's cells in it still come in bucket order, so every bincount
    # below adds what a mask over the (agent, bucket) order would add, in the same order.
    by_bucket = np.argsort(cells.bucket, kind="stable")
    agent, bucket = cells.agent[by_bucket], cells.bucket[by_bucket]
    count = cells.n[by_bucket].astype(np.float64)
    total, m2 = cells.pnl_sum[by_bucket], cells.pnl_m2[by_bucket]
    cell_mean = total / np.maximum(count, 1)
    size = len(cells.agents)
    step_b, look_b = step // width, look // width
    out = []
    for j in range(1, lags + 1):
        t_j = high // width - j * step_b  # the first bucket after T_j = A - j·H
        lo, mid, hi = np.searchsorted(bucket, [t_j - look_b, t_j, t_j + step_b]).tolist()
        ev, nx = slice(lo, mid), slice(mid, hi)
        a_ev = agent[ev]
        n = np.bincount(a_ev, weights=count[ev], minlength=size).astype(np.float64, copy=False)
        mean = np.bincount(a_ev, weights=total[ev], minlength=size) / np.maximum(n, 1)
        spread = m2[ev] + count[ev] * (cell_mean[ev] - mean[a_ev]) ** 2
        sd = np.sqrt(np.bincount(a_ev, weights=spread, minlength=size) / np.maximum(n - 1, 1))
        a_nx = agent[nx]
        n_next = np.bincount(a_nx, weights=count[nx], minlength=size).astype(np.float64, copy=False)
        next_mean = np.bincount(a_nx, weights=total[nx], minlength=size) / np.maximum(n_next, 1)
        out.append(LagWindow(j, n, mean, sd, n_next, next_mean))
    return out
