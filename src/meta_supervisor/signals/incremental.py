r"""Incremental cycle state: running sums so that a cycle costs what changed, not history.

:class:`IncrementalStats` produces the same three frames as :func:`~meta_supervisor.signals.stats.
agent_stats`, :func:`~meta_supervisor.signals.confidence.confidence_multipliers` and
:func:`~meta_supervisor.signals.tails.strategy_tails` (equal up to float reassociation, ~1e-12
relative), from state carried between cycles.

**A rebuild gives the same bits as the incremental path** (issue #13): every number of the state
is a function of the records in its windows and of ``as_of`` alone, never of the sequence of
cycles that led there, so a state rebuilt from the ledger (at once, or in time chunks) and one
advanced cycle by cycle produce identical frames, and the cycles after a lost state record the
same bytes. How each part gets there:

* per agent, over the stats window ``(as_of − lookback, as_of]`` at the policy horizon: count,
  hits, Σ pnl, Σ pnl², Σ |gap| and the drawdown's *path summary* ``(total, max prefix ≥ 0,
  min prefix ≤ 0, max drawdown ≤ 0)``, each the result of one left-to-right pass over the
  agent's window records in record order. Records appended after an agent's last one
  *continue* that pass (the sums start from the current values, the path's cumulative sum from
  its total and its running maximum from its ``hi``: the same additions, bit for bit). An agent
  that lost records from the window, or received one before its last (a late arrival, a tie),
  is recomputed from its window's records, for those agents only: a float sum cannot be taken
  back exactly. With an hourly cycle and a window shorter than the history, that is every
  active agent each cycle: a pass over the window. Its records are kept in memory
  (:mod:`meta_supervisor.signals.window`: agent numbers, PnL, gap, in record order, dropped at
  the front and appended at the back), read from the ledger once (and again after a late
  record inside it; when it is longer than :data:`~meta_supervisor.signals.window.MAX_ROWS`,
  only those agents' rows are read, and the whole again a window length later);
* per agent, confidence evidence :math:`\sum w` and :math:`\sum w z` with
  :math:`w = 2^{(m - A)/h}` (``m`` the record's ``matured_at``, ``h`` the half-life) held at an
  *anchor* :math:`A` = ``as_of`` rounded up to a multiple of 24 half-lives, as **exact sums**
  (:mod:`meta_supervisor.signals.exact`: order-free, and a removal takes back exactly what the
  addition put in). The frame decays them to ``as_of`` by :math:`2^{-(as\_of - A)/h}`. When the
  anchor moves (once every 24 half-lives) the sums are recomputed from the window;
* per strategy, over the CVaR window: ``n``, exact Σ gap and Σ |gap|, and a *tail buffer*:
  every gap at or below a threshold, sorted (at least the ``m = ⌈0.05 n⌉`` smallest). Gaps
  above it are only counted. When removals or growth leave fewer than ``m`` in the buffer it
  is refilled from the ledger for that strategy alone. The CVaR reads only the ``m`` smallest,
  which every valid buffer holds, whatever its threshold.

* per agent, with ``loss_tails`` (the select profile, whose broken-agent cut reads each agent's
  latest records, :mod:`meta_supervisor.signals.broken`): its *loss tail*, the latest
  :func:`~meta_supervisor.signals.broken.records_read` records at the horizon (1,030 by default)
  in a ring of slots, appended as records enter in order and laid again from the ledger for an
  agent given a record before its last. The cut reads the last ``min(ring, n_C)`` of them
  (``n_C`` the agent's records in the cadence history, a count the state keeps): the records
  :meth:`~meta_supervisor.signals.cadence.CadenceIndex.loss_regime` reads from the ledger, in
  the same order, so the cut is the same bits without reading the cadence history. A full
  ring's earlier records are also kept *sorted* (in memory only, as much again as the ring):
  a cycle swaps the records that left them for those that entered
  (:mod:`meta_supervisor.signals.sortedrows`) and reads both medians of the cut from the
  sorted rows, instead of partitioning every ring again (:mod:`.sortedrows` says by how
  much).

The per-agent state is held as columns (numpy arrays indexed by an agent number), so a cycle
updates it with a few vectorised operations over the records that entered or left, whatever
the fleet's size.

Sliding windows: records whose ``matured_at`` leaves a window are read back from the ledger by
time range: subtracted from the exact sums, and they mark their agents for a recompute.

Reading time ranges: a lazy ledger (a scan of the store) is filtered on ``matured_at`` (the
filter is pushed down to the files). An in-memory frame is wrapped once in a
:class:`SortedLedger` (sorted by ``matured_at`` unless it already is, with the int64 µs array
beside it): every range is then two binary searches and a zero-copy ``slice``. The wrapper is
cached on the frame's identity, or built by the caller and passed instead of the frame.

Telemetry (error rate) is recomputed every cycle: it is a small frame.

State persists as one binary ``.npz`` (numpy arrays, no pickle; :meth:`to_bytes`, of
:meth:`state_arrays`); bytes of another version, another policy, or unreadable, raise
:class:`StateMismatch` naming the file and the reason. Between two whole saves the live cycle
journals what changed (:mod:`meta_supervisor.signals.journal`): the arrays' changed rows, and
the tail buffers' changes, which the state logs as it makes them once :meth:`track_tails` is
called (:meth:`take_tail_log`).
"""

from __future__ import annotations

import io
import json
import math
import struct
import tokenize
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl

from meta_supervisor.errors import ProblemFound
from meta_supervisor.policy.model import Policy
from meta_supervisor.signals import threads
from meta_supervisor.signals.broken import (
    fleet_loss_runs,
    judged_records,
    loss_regime,
    records_read,
)
from meta_supervisor.signals.cadence import cadence_hours, hours_us, loss_columns
from meta_supervisor.signals.confidence import CONFIDENCE_COLUMNS, prior_ratio
from meta_supervisor.signals.exact import ExactSums
from meta_supervisor.signals.journal import Rows
from meta_supervisor.signals.journal import remove_sorted as _remove_sorted
from meta_supervisor.signals.measures import tail_count
from meta_supervisor.signals.order import in_record_order
from meta_supervisor.signals.sortedrows import as_slice, sort_rows, swap_values
from meta_supervisor.signals.stats import ORDER, STATS_COLUMNS
from meta_supervisor.signals.tails import with_prior
from meta_supervisor.signals.window import MAX_ROWS as WINDOW_ROWS
from meta_supervisor.signals.window import RecordWindow
from meta_supervisor.units import US_PER_HOUR, UTC_US, column_us, epoch_us, from_epoch_us

__all__ = [
    "CHUNK_ROWS",
    "STATE_VERSION",
    "IncrementalStats",
    "RangeScans",
    "SortedLedger",
    "StateMismatch",
    "buffer_arrays",
    "frames_at",
    "read_npz",
    "read_state",
]

#: Batches of swaps the kept sorted copies of the loss tails may owe before they are dropped
#: (sorted afresh when next read): a cycle owes one.
MAX_PENDING_SWAPS = 64
#: Records advanced at once when a state is built from scratch (about 0.4 GiB of columns).
CHUNK_ROWS = 2_000_000

# 2: tails carry abs_gap_sum (mean |gap| per strategy); 3: binary .npz (was JSON);
# 4: rebuild-exact (exact confidence and tail sums, anchored confidence weights);
# 5: cadence counts (expected records kept, not re-read); 6: loss tails (select's broken cut)
STATE_VERSION = 6
_NONE = np.iinfo(np.int64).min  # "no record yet" in the µs key columns: below every instant
COLUMNS = [
    "record_id",
    "ts",
    "matured_at",
    "agent",
    "strategy",
    "horizon_hours",
    "realized_pnl_bps",
    "expected_sigma_bps",
    "gap_bps",
]
# per-agent state columns
_FLOATS = ("pnl", "pnl_sq", "abs_gap", "total", "hi", "lo", "dd")
_INTS = (
    "n",
    "hits",
    "conf_n",
    "cad_n",
    "cad_late",
    "last_m",
    "last_t",
    "any_m",
    "any_t",
    "rg_head",
    "rg_len",
    "rg_m",
    "rg_t",
)
_TEXTS = ("last_rid", "last_strategy", "any_rid", "any_strategy", "rg_rid")
# stats columns that are null when undefined (no record; one record for the std)
_UNDEFINED = ["pnl_mean_bps", "pnl_std_bps", "hit_rate", "avg_abs_error_bps"]
_STATS_FLOATS = ("pnl_sum_bps", *_UNDEFINED, "max_drawdown_bps")
_TAIL_ROW = {
    "strategy": pl.String,
    "n": pl.Int64,
    **dict.fromkeys(("gap_cvar95_bps", "worst_gap", "mean_gap", "mean_abs_gap"), pl.Float64),
}


class StateMismatch(ProblemFound, ValueError):
    """A saved incremental state cannot be used: another version or policy, or unreadable.

    ``path`` names the file and ``reason`` says why; the caller rebuilds from the ledger.
    """

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}; rebuild the incremental state from the ledger")
        self.path = str(path)
        self.reason = reason


class SortedLedger:
    """An in-memory ledger in ``matured_at`` order with its µs array, sliced by binary search.

    Built once (the sort is skipped when the frame is already in order, the common case: a
    ledger is appended in time) and reused across cycles: :meth:`range` costs two
    ``np.searchsorted`` and a zero-copy ``DataFrame.slice``. Rows with a null ``matured_at``
    are dropped (no time range holds them).
    """

    def __init__(self, frame: pl.DataFrame) -> None:
        self.source = frame  # the frame this was built from (the identity the cache checks)
        if frame["matured_at"].null_count():
            frame = frame.filter(pl.col("matured_at").is_not_null())
        us = column_us(frame["matured_at"])
        if us.size > 1 and not bool((us[1:] >= us[:-1]).all()):
            frame = frame.sort("matured_at", maintain_order=True)
            us = column_us(frame["matured_at"])
        self.frame = frame
        self.matured_us = us

    def range(self, low_us: int, high_us: int) -> pl.DataFrame:
        """Rows with ``low < matured_at ≤ high`` (µs since the epoch), as a zero-copy slice."""
        i = int(np.searchsorted(self.matured_us, low_us, side="right"))
        j = int(np.searchsorted(self.matured_us, high_us, side="right"))
        return self.frame.slice(i, max(j - i, 0))


class RangeScans(Protocol):
    """A ledger read by time range from files that each cover a known range of ``matured_at``
    (the store's segments): ``scan(low_us, high_us)`` is a lazy scan of the files that may hold
    a ``matured_at`` in ``(low, high]`` (µs; ``None``: unbounded), rows not yet filtered."""

    def scan(self, low_us: int | None, high_us: int | None) -> pl.LazyFrame:
        """The lazy rows of the files that may hold times in ``(low, high]``."""
        ...


class _Source:
    """Time-range reads of a ledger: slices of a :class:`SortedLedger`, filters of a scan, or
    filters of the files a :class:`RangeScans` names for the range."""

    def __init__(self, ledger: SortedLedger | pl.LazyFrame | RangeScans) -> None:
        self.ledger = ledger

    def range(self, low_us: int, high_us: int) -> pl.LazyFrame:
        if isinstance(self.ledger, SortedLedger):
            return self.ledger.range(low_us, high_us).lazy()
        if isinstance(self.ledger, pl.LazyFrame):
            lazy = self.ledger
        else:
            lazy = self.ledger.scan(None if low_us < -(2**61) else low_us, high_us).select(COLUMNS)
        low = pl.lit(low_us).cast(UTC_US)
        high = pl.lit(high_us).cast(UTC_US)
        return lazy.filter((pl.col("matured_at") > low) & (pl.col("matured_at") <= high))

    def frame(self, low_us: int, high_us: int, horizon: int | None = None) -> pl.DataFrame:
        """:meth:`range` as a frame of :data:`COLUMNS`, at ``horizon`` when given (an empty
        slice costs no query)."""
        if isinstance(self.ledger, SortedLedger):
            rows = self.ledger.range(low_us, high_us).select(COLUMNS)
            if horizon is None or not rows.height:
                return rows
            return rows.filter(pl.col("horizon_hours") == horizon)
        lazy = self.range(low_us, high_us)
        if horizon is not None:
            lazy = lazy.filter(pl.col("horizon_hours") == horizon)
        return lazy.select(COLUMNS).collect()


@dataclass
class _Tail:
    """A strategy's CVaR-window count and tail buffer (its sums are exact, kept apart)."""

    n: int = 0
    threshold: float = math.inf
    buffer: np.ndarray = field(default_factory=lambda: np.empty(0))


def _window_fits(rows: int) -> bool:
    """Whether a stats window of ``rows`` records is kept in memory (:data:`WINDOW_ROWS`; 0:
    never)."""
    return WINDOW_ROWS > 0 and rows <= WINDOW_ROWS


def _window_columns(frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A numbered frame's columns as :class:`~.window.RecordWindow` takes them: agent
    numbers, PnL, gap (bps) and ``matured_at`` (µs)."""
    return (
        frame["_i"].to_numpy(),
        frame["realized_pnl_bps"].to_numpy(),
        frame["gap_bps"].to_numpy(),
        column_us(frame["matured_at"]),
    )


def _in_order(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` sorted by ``ORDER`` (:func:`meta_supervisor.signals.order.in_record_order`:
    no sort when the rows arrive in time order, ``record_id`` read only for exact ties)."""
    return in_record_order(frame)


def _greater(
    m: np.ndarray, t: np.ndarray, r: np.ndarray, big_m: np.ndarray, big_t: np.ndarray, big_r
) -> np.ndarray:
    """``(m, t, r) > (M, T, R)`` element-wise, the record order (``_NONE`` = no record)."""
    gt = (m > big_m) | ((m == big_m) & (t > big_t))
    for i in np.flatnonzero((m == big_m) & (t == big_t)):
        gt[i] = big_r[i] is None or r[i] > big_r[i]
    return gt


#: Rows grouped by code: ``(order, codes of the groups, starts, lengths)`` (:func:`_groups`).
_Grouped = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclass
class _Runs:
    """An entering frame grouped by agent (see :meth:`IncrementalStats._runs_after`)."""

    groups: _Grouped  # order, agents, starts, lengths
    last: np.ndarray  # each agent's last row
    matured: np.ndarray  # µs, every row
    ts: np.ndarray
    rids: pl.Series
    after: np.ndarray  # each agent's first row comes after the key held for it


class _Codebook:
    """Names numbered in order of first sight; a polars column of them mapped to numbers."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.index: dict[str, int] = {}
        self._enum: pl.Enum | None = None

    def copy(self) -> _Codebook:
        """A codebook numbering the same names alike, growing apart from this one."""
        other = _Codebook()
        other.names, other.index, other._enum = list(self.names), dict(self.index), self._enum
        return other

    def add(self, names: list[str]) -> int:
        """Number the unknown ``names``; return how many were new."""
        new = [name for name in dict.fromkeys(names) if name not in self.index]
        for name in new:
            self.index[name] = len(self.names)
            self.names.append(name)
        if new:
            self._enum = None
        return len(new)

    def codes(self, values: pl.Series, on_new: Any = None) -> np.ndarray:
        """The number of each of ``values`` (no nulls); unknown names are added first (then
        ``on_new()`` is called)."""
        if self._enum is not None:
            cast = values.cast(self._enum, strict=False)
            if not cast.null_count():
                return cast.to_physical().to_numpy().astype(np.int64)
        # in order of first sight: a plain unique() is in hash order, which may differ from
        # run to run (and did, with two threads calling polars at once)
        if self.add(values.unique(maintain_order=True).to_list()) and on_new is not None:
            on_new()
        self._enum = pl.Enum(self.names)
        return values.cast(self._enum).to_physical().to_numpy().astype(np.int64)


def _groups(codes: np.ndarray) -> _Grouped:
    """Rows grouped by code, keeping their order within a group: ``(order, codes of the groups,
    starts, lengths)`` with ``order`` a stable argsort (group ``g`` is
    ``order[starts[g] : starts[g] + lengths[g]]``).

    Codes are small non-negative integers (agent or strategy numbers): as 16-bit integers
    NumPy's stable sort is a radix sort, linear in the rows, with the same (unique) result as
    a comparison sort.
    """
    top = int(codes.max()) if codes.size else 0
    order = np.argsort(codes.astype(np.uint16) if top < 2**16 else codes, kind="stable")
    # the groups in code order, from the counts (no gather of the sorted codes)
    counts = np.bincount(codes, minlength=top + 1)
    groups = np.flatnonzero(counts)
    lengths = counts[groups]
    return order, groups, np.cumsum(lengths) - lengths, lengths


def _path_summaries(
    codes: np.ndarray,
    pnl: np.ndarray,
    grouped: _Grouped | None = None,
    start: tuple[np.ndarray, ...] | None = None,
) -> tuple[np.ndarray, ...]:
    """Per code ``(codes, t, hi, lo, dd)`` of the realised path of ``pnl`` (rows in order),
    continuing each code's path from ``start`` (full-size ``(t, hi, lo, dd)`` arrays indexed by
    code; default: an empty path).

    Each group's path is one row of a grid whose first column is its starting total, so the
    cumulative sums run left to right along rows: ``t + x_1``, ``(t + x_1) + x_2``, ... the
    additions a single pass over the whole path makes, bit for bit. A continued path therefore
    equals the path computed from its first record (what a rebuild does). The running maximum
    starts at the start's ``hi`` (≥ 0). Groups of similar length share a grid (lengths within
    a factor of two), so a grid holds at most about twice the rows.
    """
    if not codes.size:
        empty = np.empty(0)
        return codes, empty, empty, empty, empty
    order, groups, starts, lengths = _groups(codes) if grouped is None else grouped
    out = [np.empty(groups.size) for _ in range(4)]
    band = np.log2(lengths).astype(np.int64)
    values = pnl[order]
    for b in np.unique(band):
        sel = np.flatnonzero(band == b)
        n_sel, width = sel.size, int(lengths[sel].max())
        if start is None:
            t0 = hi0 = lo0 = dd0 = np.zeros(n_sel)
        else:
            t0, hi0, lo0, dd0 = (column[groups[sel]] for column in start)
        grid = np.zeros((n_sel, width + 1))
        grid[:, 0] = t0
        size = lengths[sel]
        row = np.repeat(np.arange(n_sel), size)
        within = np.arange(row.size) - np.repeat(np.cumsum(size) - size, size)
        grid[row, 1 + within] = values[np.repeat(starts[sel], size) + within]
        path = np.cumsum(grid, axis=1)
        valid = np.arange(width + 1) <= lengths[sel][:, None]
        out[0][sel] = path[np.arange(n_sel), lengths[sel]]
        out[1][sel] = np.maximum(np.where(valid, path, -np.inf).max(axis=1), hi0)
        out[2][sel] = np.minimum(np.where(valid, path, np.inf).min(axis=1), lo0)
        # the padding sits after each group's end, so it never reaches a valid running maximum
        down = path - np.maximum(np.maximum.accumulate(path, axis=1), hi0[:, None])
        out[3][sel] = np.minimum(np.where(valid, down, np.inf).min(axis=1), dd0)
    return (groups, *out)


class _TelemetryIndex:
    """Telemetry in ``ts`` order with µs times, agent numbers and error flags as arrays: a
    window's runs and errors per agent are then two binary searches and two ``bincount``.
    ``agents`` (the engine's codebook, copied) numbers its agents as the engine does, and
    others after them: one cast when every agent is known (a cycle's telemetry is a new frame
    each time, 100k runs at the 10M benchmark: ~3 ms less than numbering them anew)."""

    def __init__(self, frame: pl.DataFrame, agents: _Codebook | None = None) -> None:
        self.source = frame
        self.height = frame.height
        frame = frame.filter(pl.col("ts").is_not_null() & pl.col("agent").is_not_null())
        ts = column_us(frame["ts"])
        if ts.size > 1 and not bool((ts[1:] >= ts[:-1]).all()):
            frame = frame.sort("ts", maintain_order=True)
            ts = column_us(frame["ts"])
        self.ts = ts
        self.agents = _Codebook() if agents is None else agents.copy()
        self.codes = self.agents.codes(frame["agent"])
        flag = frame["is_error"]
        self.known = flag.is_not_null().to_numpy().astype(np.float64)
        self.error = flag.fill_null(False).cast(pl.Float64).to_numpy()

    def runs(self, low_us: int, high_us: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per telemetry agent (``self.agents.names``) over runs with ``low < ts ≤ high``:
        ``(runs, runs with a known is_error, errors)``."""
        i = int(np.searchsorted(self.ts, low_us, side="right"))
        j = int(np.searchsorted(self.ts, high_us, side="right"))
        size = len(self.agents.names)
        codes = self.codes[i:j]
        n = np.bincount(codes, minlength=size)
        known = np.bincount(codes, weights=self.known[i:j], minlength=size)
        errors = np.bincount(codes, weights=self.error[i:j], minlength=size)
        return n, known, errors


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """Named arrays as one uncompressed ``.npz`` (numpy arrays only, no pickle): the engine
    state's file format."""
    out = io.BytesIO()
    np.savez(out, allow_pickle=False, **arrays)
    return out.getvalue()


class IncrementalStats:
    """Cycle inputs maintained across cycles for one policy (see the module docstring).

    Usage: ``inc.advance(ledger, as_of, late=new_records_matured_before_last_cycle)`` then
    ``inc.frames(telemetry)``. ``ledger`` is every record the store holds (a frame, a
    :class:`SortedLedger` or a lazy scan; only time ranges and the dirty agents' rows are read
    from it); ``late`` holds the records appended since the previous cycle whose
    ``matured_at`` is at or before it (they cannot be found by time range). ``as_of`` must not
    go backwards.
    """

    def __init__(self, policy: Policy, *, loss_tails: bool = False) -> None:
        self.policy = policy
        # records kept per agent for the broken cut (0: none kept), see _push_tails
        self.loss_k = records_read(policy) if loss_tails and cadence_hours(policy) > 0 else 0
        self._ring = np.zeros(0)
        # each agent's (z_i, v_i) as last computed, and the record count it read (-1: its
        # tail changed since): an agent with no new record is not computed again (in memory)
        self._loss_n = np.zeros(0, dtype=np.int64)
        self._loss_z, self._loss_v = np.zeros(0), np.zeros(0)
        # a full ring's values sorted, its judged slots as +inf (so its first P columns are
        # its earlier records, sorted), where ``_past_ok`` (in memory): swapped as records
        # enter (_push_tails), sorted afresh when read without one (loss_sorted)
        self._past = np.zeros((0, self.loss_k))
        self._past_ok = np.zeros(0, dtype=bool)
        # swaps not yet made in them, in order: (agents, leaving values, entering values),
        # made when read (beside the frames, judge_losses)
        self._swaps: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.as_of_us: int | None = None
        self._agents = _Codebook()
        self.names = self._agents.names  # agent number -> name
        self._cols: dict[str, np.ndarray] = {}
        self._allocate_columns(0)
        self.tails: dict[str, _Tail] = {}
        self.recomputed_agents = 0
        self.recomputed_tails = 0
        self.refilled_strategies = 0
        self._sorted: SortedLedger | None = None
        self._telemetry: _TelemetryIndex | None = None
        self._strategies = _Codebook()
        self._cache: dict[str, tuple[tuple[Any, ...], np.ndarray]] = {}
        # exact sums (signals/exact.py): per agent Σ w and Σ w·z at the confidence anchor,
        # per strategy Σ gap and Σ |gap| over the CVaR window
        self.conf_anchor_us: int | None = None
        self._conf_w, self._conf_wz = ExactSums(), ExactSums()
        self._tail_gap, self._tail_abs = ExactSums(), ExactSums()
        # the tail buffers' changes since :meth:`track_tails` (a journal entry's part for
        # them, :mod:`meta_supervisor.signals.journal`); None: not tracked
        self._tail_log: list[tuple[str, str, Any]] | None = None
        # the loss ring's slots written since then (the journal entry's rows of r_ring: no
        # copy and compare of the whole ring per save), and the ring's live size then
        self._ring_writes: list[np.ndarray] | None = None
        self._ring_live = 0
        # during :meth:`advance`: :func:`_groups` of the agent numbers grouped so far
        self._memo: dict[tuple[Any, ...], tuple[np.ndarray, _Grouped]] | None = None
        # the stats window's records at the horizon (in memory, :mod:`.window`): agents that
        # lost records are computed again from it; None: read from the ledger when needed
        self._window: RecordWindow | None = None
        # set by :meth:`_update_stats`: an agent gained a record before its last one
        self._stats_out_of_order = False
        # the stats window was read whole and was too long to keep: not read whole again
        # before this instant (µs; one window length later, when it holds other records)
        self._window_refused_until: int | None = None
        # during :meth:`advance`: whether the stats window may be kept (not in a rebuild)
        self._keeps_window = True

    # ------------------------------------------------------------------ agent columns

    def _allocate_columns(self, capacity: int) -> None:
        old = self._cols
        cols: dict[str, np.ndarray] = {}
        for name in _FLOATS:
            cols[name] = np.zeros(capacity)
        for name in _INTS:
            fill = _NONE if name.endswith(("_m", "_t")) else 0
            cols[name] = np.full(capacity, fill, dtype=np.int64)
        for name in _TEXTS:
            cols[name] = np.full(capacity, None, dtype=object)
        for name, values in old.items():
            cols[name][: values.size] = values
        self._cols = cols
        ring = np.zeros(capacity * self.loss_k)
        ring[: self._ring.size] = self._ring
        self._ring = ring

    def _col(self, name: str) -> np.ndarray:
        """The live part (one entry per known agent) of a state column (a view)."""
        return self._cols[name][: len(self.names)]

    def _grow(self) -> None:
        """Make room in the state columns for every numbered agent."""
        capacity = next(iter(self._cols.values())).size
        if len(self.names) > capacity:
            self._allocate_columns(max(2 * capacity, len(self.names), 64))
        self._conf_w.resize(len(self.names))
        self._conf_wz.resize(len(self.names))

    def _strategy_codes(self, strategies: pl.Series) -> np.ndarray:
        """The strategy number of each value (unknown strategies are added, with a tail)."""
        codes = self._strategies.codes(strategies)
        size = len(self._strategies.names)
        for name in self._strategies.names[len(self.tails) :]:
            self.tails.setdefault(name, _Tail())
        self._tail_gap.resize(size)
        self._tail_abs.resize(size)
        return codes

    def _add_agents(self, names: list[str]) -> None:
        self._agents.add(names)
        self._grow()

    def _codes(self, agents: pl.Series) -> np.ndarray:
        """The agent number of each value of ``agents`` (unknown agents are added)."""
        return self._agents.codes(agents, self._grow)

    def _with_codes(self, frame: pl.DataFrame) -> pl.DataFrame:
        return frame.with_columns(pl.Series("_i", self._codes(frame["agent"]), dtype=pl.Int64))

    # ------------------------------------------------------------------ windows

    def _lookbacks(self) -> tuple[int, int, int]:
        p = self.policy
        return tuple(
            timedelta(hours=h) // timedelta(microseconds=1)
            for h in (p.lookback_hours, p.confidence_lookback_hours, p.cvar_lookback_hours)
        )  # type: ignore[return-value]

    def _cadence(self) -> tuple[int, int]:
        """The cadence windows (µs): the history :math:`C` (``cadence_hours``) and its part
        after the first lookback, :math:`C - L`; ``(0, 0)`` when cadence is off. An agent's
        expected records count its records in :math:`C`, and are unknown when none fell in
        the first :math:`L` hours of it (``cad_n − cad_late`` of them)."""
        history = cadence_hours(self.policy)
        if history <= 0:
            return 0, 0
        c = hours_us(history)  # as the store's window reads round it (to the µs)
        return c, c - hours_us(self.policy.lookback_hours)

    def _horizon(self, lazy: pl.LazyFrame) -> pl.LazyFrame:
        return lazy.filter(pl.col("horizon_hours") == self.policy.horizon_hours)

    def _source(self, ledger: pl.DataFrame | pl.LazyFrame | SortedLedger | RangeScans) -> _Source:
        if isinstance(ledger, SortedLedger):
            return _Source(ledger)
        if isinstance(ledger, pl.DataFrame):
            cached = self._sorted
            # identity and height: a frame extended in place is re-sorted
            if (
                cached is None
                or cached.source is not ledger
                or cached.source.height
                != (cached.frame.height + cached.source["matured_at"].null_count())
            ):
                self._sorted = cached = SortedLedger(ledger)
            return _Source(cached)
        if isinstance(ledger, pl.LazyFrame):
            return _Source(ledger.select(COLUMNS))
        return _Source(ledger)

    # ------------------------------------------------------------------ the cycle

    def advance(
        self,
        ledger: pl.DataFrame | pl.LazyFrame | SortedLedger | RangeScans,
        as_of: datetime,
        late: pl.DataFrame | None = None,
        *,
        keep_window: bool = True,
    ) -> None:
        """Bring the state from the previous ``as_of`` to ``as_of``. ``keep_window=False``
        (a rebuild's chunks): the stats window is not kept in memory (:meth:`_keep_window`)."""
        self._memo = {}
        self._keeps_window = keep_window
        try:
            self._advance(ledger, as_of, late)
        finally:
            self._memo = None

    def _grouped(self, codes: np.ndarray) -> _Grouped:
        """:func:`_groups` of ``codes``, computed once per :meth:`advance` for the same rows:
        the entering records' agent numbers (a column's buffer, read by each step as
        ``frame["_i"].to_numpy()``, without a copy) are grouped by the stats, the loss tails
        and the latest records alike. Keyed by the array's memory; the array is held, so that
        memory is not reused for other numbers meanwhile (polars' buffers are immutable)."""
        if self._memo is None:
            return _groups(codes)
        key = (codes.__array_interface__["data"][0], codes.shape, codes.strides, codes.dtype.str)
        hit = self._memo.get(key)
        if hit is None:
            hit = self._memo[key] = (codes, _groups(codes))
        return hit[1]

    def _advance(
        self,
        ledger: pl.DataFrame | pl.LazyFrame | SortedLedger | RangeScans,
        as_of: datetime,
        late: pl.DataFrame | None,
    ) -> None:
        now = epoch_us(as_of)
        prev = self.as_of_us
        if prev is not None and now < prev:
            raise ValueError(f"as_of went backwards: {as_of} is before the state's last cycle")
        src = self._source(ledger)
        stats_l, conf_l, cvar_l = self._lookbacks()
        cad_l, cad_late_l = self._cadence()
        windows = (stats_l, conf_l, cvar_l, cad_l, cad_late_l)
        late_ids: pl.Series | None = None
        if prev is None:
            entering = src.frame(now - max(windows), now)
        else:
            entering = src.frame(prev, now)
            if late is not None and late.height:
                late = late.filter(pl.col("matured_at") <= pl.lit(prev).cast(UTC_US))
                entering = pl.concat([entering, late.select(COLUMNS)])
                late_ids = late["record_id"]
        leaving: list[pl.DataFrame] = []
        read: dict[int, pl.DataFrame] = {}  # windows of the same length leave the same rows
        for lookback in windows:
            if prev is None or now - lookback <= prev - lookback or lookback <= 0:
                leaving.append(entering.clear())
                continue
            if lookback in read:
                leaving.append(read[lookback])
                continue
            # counted before: matured in (prev − L, prev]; out now: ≤ now − L
            out = src.frame(prev - lookback, min(prev, now - lookback), self.policy.horizon_hours)
            if late_ids is not None and out.height:
                out = out.filter(~pl.col("record_id").is_in(late_ids.implode()))
            read[lookback] = out
            leaving.append(out)
        # in record order once: every subset below keeps it
        entering = self._with_codes(_in_order(entering))
        # the universe is every agent with a visible record, however old
        if prev is None:
            # the records before every window, then the entering ones (later: still in order)
            before = src.range(-(2**62), now - max(windows)).select(*ORDER, "agent", "strategy")
            older = self._with_codes(_in_order(before.collect()))
            visible = pl.concat([older, entering.select(older.columns)])
        else:
            visible = entering
        self._latest_any(visible)
        at_h = entering
        if not bool((entering["horizon_hours"].to_numpy() == self.policy.horizon_hours).all()):
            at_h = entering.filter(pl.col("horizon_hours") == self.policy.horizon_hours)
        # at_h is in matured_at order: each window is a tail slice of it
        matured = column_us(at_h["matured_at"])
        in_stats, in_conf, in_cvar, in_cad, in_cad_late = (
            at_h.slice(int(np.searchsorted(matured, now - lookback, side="right")))
            if lookback > 0
            else at_h.clear()
            for lookback in windows
        )
        # a late record inside the stats window cannot be appended at its back
        late_inside = (
            late is not None
            and late_ids is not None
            and bool(
                (
                    column_us(
                        late.filter(pl.col("horizon_hours") == self.policy.horizon_hours)[
                            "matured_at"
                        ]
                    )
                    > now - stats_l
                ).any()
            )
        )
        self._keep_window(in_stats, now - stats_l, late=late_inside)
        self._move_anchor(now)
        others, rows = self._confidence_and_tails(
            in_conf, leaving[1], in_cvar, leaving[2], leaving[0]
        )
        dirty_of: list[np.ndarray] = []
        threads.run_all(
            [lambda: dirty_of.append(self._update_stats(in_stats, leaving[0])), *others], rows
        )
        dirty = dirty_of[0]
        for name, entered, left in (
            ("cad_n", in_cad, leaving[3]),
            ("cad_late", in_cad_late, leaving[4]),
        ):
            self._count(name, entered, 1)
            self._count(name, left, -1)
        out_of_order = self._push_tails(at_h)
        self.as_of_us = now
        if dirty.size:
            self._recompute_agents(src, dirty, now - stats_l, now)
        if out_of_order.size:
            self._recompute_tails(src, out_of_order, now - cad_l, now)
        self._refill_tails(src, now - cvar_l, now)

    def _confidence_and_tails(
        self,
        in_conf: pl.DataFrame,
        out_conf: pl.DataFrame,
        in_cvar: pl.DataFrame,
        out_cvar: pl.DataFrame,
        out_stats: pl.DataFrame,
    ) -> tuple[list[Callable[[], None]], int]:
        """The two works that update the confidence sums and the tails, and over how many
        rows: run by :meth:`advance` beside the agent sums (:meth:`_update_stats`), each in a
        thread of its own when the frames are large and the machine has another core
        (:func:`~meta_supervisor.signals.threads.run_all`).

        The three share no state: the confidence sums and counts are the first's alone, the
        tails and the strategy numbers the second's, and every agent number they read is given
        here first, in the order one thread gives them (a new agent would grow the columns
        under another thread), so the bits are those of one thread. The full cycle at 10M:
        ``frames_at`` 3.8 -> 2.7 s on 2 cores with two works; three: a store rebuild 4.46 ->
        3.94 s (medians of 8 alternated runs)."""
        # in the order one thread numbers them (a leaving window may hold an agent this state
        # has not numbered yet: a late record)
        if out_stats.height:
            self._codes(out_stats["agent"])
        if "_i" not in out_conf.columns and out_conf.height:
            out_conf = self._with_codes(out_conf)

        return [
            lambda: self._update_confidence(in_conf, out_conf),
            lambda: self._update_tails(in_cvar, out_cvar),
        ], in_conf.height + out_conf.height + in_cvar.height + out_cvar.height

    def _count(self, name: str, frame: pl.DataFrame, sign: int) -> None:
        """Add ``sign`` per record of ``frame`` to its agent's count ``name``."""
        if not frame.height:
            return
        codes = frame["_i"].to_numpy() if "_i" in frame.columns else self._codes(frame["agent"])
        self._col(name)[:] += sign * np.bincount(codes, minlength=len(self.names))

    def _latest_any(self, visible: pl.DataFrame) -> None:
        """Each agent's latest visible record (any horizon), from ``visible`` in order."""
        if not visible.height:
            return
        column = visible["_i"]
        # a column in pieces (the first advance's older + entering) is copied by each read:
        # nothing to share, so not kept
        group = self._grouped if column.n_chunks() == 1 else _groups
        order, idx, starts, lengths = group(column.to_numpy())
        # the last row of each agent (rows are in record order)
        latest = visible.select(*ORDER, "strategy")[order[starts + lengths - 1]]
        m, t = column_us(latest["matured_at"]), column_us(latest["ts"])
        rid = np.array(latest["record_id"].to_list(), dtype=object)
        newer = _greater(
            m, t, rid, self._col("any_m")[idx], self._col("any_t")[idx], self._col("any_rid")[idx]
        )
        idx = idx[newer]
        self._col("any_m")[idx] = m[newer]
        self._col("any_t")[idx] = t[newer]
        self._col("any_rid")[idx] = rid[newer]
        self._col("any_strategy")[idx] = np.array(latest["strategy"].to_list(), dtype=object)[newer]

    def _extend_sums(self, codes: np.ndarray, frame: pl.DataFrame) -> None:
        """Continue the agents' sums over ``frame``'s rows (``codes`` their agents, rows in
        record order): ``S + x_1``, ``(S + x_1) + x_2``, ... as a single pass from the window's
        first record makes them, so an extended sum equals the recomputed one bit for bit.

        ``np.bincount`` adds each row to its bin in row order; the current sums go first.
        """
        self._extend_arrays(
            codes, frame["realized_pnl_bps"].to_numpy(), frame["gap_bps"].to_numpy()
        )

    def _extend_arrays(self, codes: np.ndarray, pnl: np.ndarray, gap: np.ndarray) -> None:
        """:meth:`_extend_sums` on columns: ``pnl`` and ``gap`` (bps) of the rows, in record
        order (the array walk of :mod:`meta_supervisor.signals.arrays` calls it too)."""
        size = len(self.names)
        count = np.bincount(codes, minlength=size)
        agents = np.flatnonzero(count)  # the agents of the rows, ascending (as np.unique)
        self._col("n")[:] += count
        self._col("hits")[:] += np.bincount(codes, weights=pnl > 0, minlength=size).astype(np.int64)
        keys = np.concatenate([agents, codes])
        with np.errstate(over="ignore"):  # a square beyond float64 is inf, as in IEEE
            squares = pnl * pnl
        for name, values in (
            ("pnl", pnl),
            ("pnl_sq", squares),
            ("abs_gap", np.abs(gap)),
        ):
            column = self._col(name)
            sums = np.bincount(
                keys, weights=np.concatenate([column[agents], values]), minlength=size
            )
            column[agents] = sums[agents]

    def _update_stats(self, entering: pl.DataFrame, leaving: pl.DataFrame) -> np.ndarray:
        """Extend the agents whose window only gained records after their last one; return the
        agents to recompute from the ledger (they lost records, or gained one before their
        last: a late arrival or a tie)."""
        self._stats_out_of_order = False
        gone = self._codes(leaving["agent"]) if leaving.height else None
        dirty = np.zeros(len(self.names), dtype=bool)
        if gone is not None:
            dirty[gone] = True
        if not entering.height:
            return np.flatnonzero(dirty)
        codes = entering["_i"].to_numpy()
        runs = self._runs_after(entering, codes, "last")
        idx = runs.groups[1]
        last, matured, ts, rids = runs.last, runs.matured, runs.ts, runs.rids
        last_m, last_t, last_r = self._col("last_m"), self._col("last_t"), self._col("last_rid")
        in_order = runs.after & ~dirty[idx]
        self._stats_out_of_order = not bool(runs.after.all())
        dirty[idx[~in_order]] = True
        extend = np.zeros(len(self.names), dtype=bool)
        extend[idx[in_order]] = True
        rows = extend[codes]
        if rows.any():
            whole = bool(rows.all())
            part = entering if whole else entering.filter(pl.Series(rows))
            part_codes = codes if whole else codes[rows]
            self._extend_sums(part_codes, part)
            state = tuple(self._col(c) for c in ("total", "hi", "lo", "dd"))
            ext, *paths = _path_summaries(
                part_codes,
                part["realized_pnl_bps"].to_numpy(),
                runs.groups if whole else None,
                start=state,
            )
            for name, values in zip(("total", "hi", "lo", "dd"), paths, strict=True):
                self._col(name)[ext] = values
        m1, t1 = matured[last], ts[last]
        r1 = np.array(rids.gather(last).to_list(), dtype=object)
        newer = _greater(m1, t1, r1, last_m[idx], last_t[idx], last_r[idx])
        upd = idx[newer]
        last_m[upd], last_t[upd], last_r[upd] = m1[newer], t1[newer], r1[newer]
        strategies = np.array(entering["strategy"].gather(last).to_list(), dtype=object)
        self._col("last_strategy")[upd] = strategies[newer]
        return np.flatnonzero(dirty)

    def _runs_after(self, frame: pl.DataFrame, codes: np.ndarray, key: str) -> _Runs:
        """``frame``'s rows (in record order, agents ``codes``) grouped by agent, and whether
        each agent's first row comes after the record key the state holds for it in the
        columns ``<key>_m``, ``<key>_t``, ``<key>_rid`` (the last record summed, or the last in
        its loss tail)."""
        grouped = self._grouped(codes)
        order, idx, starts, lengths = grouped
        first = order[starts]
        matured, ts = column_us(frame["matured_at"]), column_us(frame["ts"])
        rids = frame["record_id"]
        r0 = np.array(rids.gather(first).to_list(), dtype=object)
        held = (self._col(f"{key}_{c}")[idx] for c in ("m", "t", "rid"))
        after = _greater(matured[first], ts[first], r0, *held)
        return _Runs(grouped, order[starts + lengths - 1], matured, ts, rids, after)

    def _keep_window(self, entering: pl.DataFrame, low: int, *, late: bool) -> None:
        """Advance the kept stats window (:mod:`.window`), when there is one, to ``(low,
        now]``: ``entering`` (its new records at the horizon, in record order, numbered)
        appended, those at or before ``low`` dropped. Late records (matured before the previous
        cycle) inside the stats window, or a window beyond :data:`~.window.MAX_ROWS` drop it.
        One is started only when agents are computed again (:meth:`_recompute_agents`), and
        never by a rebuild's chunks (``advance(keep_window=False)``)."""
        window = self._window
        if window is None or late or not self._keeps_window:
            self._window = None
            return
        window.drop_through(low)
        try:
            window.append(*_window_columns(entering))
        except ValueError:
            window = None
        if window is not None and not _window_fits(len(window)):
            window = None
        self._window = window

    def _recompute_agents(self, src: _Source, agents: np.ndarray, low: int, high: int) -> None:
        """The stats-window sums, path and last record of ``agents`` from their records in
        ``(low, high]``, from the first record on: what a rebuild computes. From the kept
        window when there is one (and no agent gained a record before its last); else the
        whole window is read from the ledger, and kept when it is short enough (a state
        loaded from its files has none: its first such cycle reads it); one too long is not
        read whole again until a window length later (only the agents' rows are meanwhile).
        A rebuild's chunks (``keep_window=False``) read only the agents' rows."""
        refused = self._window_refused_until is not None and high < self._window_refused_until
        if self._stats_out_of_order:
            self._window = None
        elif self._window is None and self._keeps_window and not refused:
            window = self._stats_window_scan(src, low, high).collect()
            if not _window_fits(window.height):  # read whole for nothing: not again before
                self._window_refused_until = high + (high - low)  # it holds other records
                self._recompute_from(agents, window)
                return
            kept = RecordWindow()
            kept.append(*_window_columns(self._with_codes(_in_order(window))))
            self._window = kept
        if self._window is not None:
            self._recompute_kept(agents, *self._window.columns())
            return
        names = pl.Series("agent", [self.names[i] for i in agents], dtype=pl.String)
        mine = self._stats_window_scan(src, low, high).filter(
            pl.col("agent").is_in(names.implode())
        )
        self._recompute_from(agents, mine.collect())

    def _stats_window_scan(self, src: _Source, low: int, high: int) -> pl.LazyFrame:
        """The ledger's records at the horizon matured in ``(low, high]``, in the columns a
        recompute reads."""
        columns = ("agent", "strategy", "realized_pnl_bps", "gap_bps", *ORDER)
        return self._horizon(src.range(low, high)).select(*columns)

    def _recompute_kept(
        self, agents: np.ndarray, codes: np.ndarray, pnl: np.ndarray, gap: np.ndarray
    ) -> None:
        """:meth:`_recompute_agents` from the kept window's columns. Its last record is the
        one the state holds for an agent still in the window (records leave from the front;
        what entered is in it already); none for an agent with no record left."""
        self.recomputed_agents += agents.size
        for name in (*_FLOATS, "n", "hits"):
            self._col(name)[agents] = 0
        wanted = np.zeros(len(self.names), dtype=bool)
        wanted[agents] = True
        mine = wanted[codes]
        if not bool(mine.all()):  # other agents' rows left out (none, commonly: all lost some)
            rows = np.flatnonzero(mine)
            codes, pnl, gap = codes[rows], pnl[rows], gap[rows]
        held = np.zeros(len(self.names), dtype=bool)
        if codes.size:
            self._extend_arrays(codes, pnl, gap)
            grouped = _groups(codes)
            ext, *paths = _path_summaries(codes, pnl, grouped)
            for name, values in zip(("total", "hi", "lo", "dd"), paths, strict=True):
                self._col(name)[ext] = values
            held[grouped[1]] = True
        gone = agents[~held[agents]]
        for name in ("last_m", "last_t"):
            self._col(name)[gone] = _NONE
        for name in ("last_rid", "last_strategy"):
            self._col(name)[gone] = None

    def _recompute_from(self, agents: np.ndarray, window: pl.DataFrame) -> None:
        """:meth:`_recompute_agents` from ``window``: the ledger's rows of the stats window
        at the horizon, ``agents``' and maybe others' (not read)."""
        names = pl.Series("agent", [self.names[i] for i in agents], dtype=pl.String)
        window = window.filter(pl.col("agent").is_in(names.implode()))
        self.recomputed_agents += agents.size
        for name in (*_FLOATS, "n", "hits"):
            self._col(name)[agents] = 0
        for name in ("last_m", "last_t"):
            self._col(name)[agents] = _NONE
        for name in ("last_rid", "last_strategy"):
            self._col(name)[agents] = None
        if not window.height:
            return
        window = _in_order(window)
        codes = self._codes(window["agent"])
        self._extend_sums(codes, window)
        grouped = _groups(codes)
        ext, *paths = _path_summaries(codes, window["realized_pnl_bps"].to_numpy(), grouped)
        for name, values in zip(("total", "hi", "lo", "dd"), paths, strict=True):
            self._col(name)[ext] = values
        order, idx, starts, lengths = grouped
        last = window[order[starts + lengths - 1]]
        self._col("last_m")[idx] = column_us(last["matured_at"])
        self._col("last_t")[idx] = column_us(last["ts"])
        self._col("last_rid")[idx] = np.array(last["record_id"].to_list(), dtype=object)
        self._col("last_strategy")[idx] = np.array(last["strategy"].to_list(), dtype=object)

    # ------------------------------------------------------------------ loss tails (select)

    def _push_tails(self, frame: pl.DataFrame) -> np.ndarray:
        """Append ``frame``'s records (at the horizon, in record order, with agent numbers
        ``_i``) to their agents' *loss tails*; return the agents to recompute.

        An agent's loss tail holds its latest ``loss_k`` records at the horizon
        (:func:`~meta_supervisor.signals.broken.records_read`: the most the broken cut reads)
        in a ring of ``loss_k`` slots: record number ``j`` since the ring was last laid is at
        slot ``(j mod loss_k)``; ``rg_head`` is the next slot, ``rg_len`` how many are held
        and ``(rg_m, rg_t, rg_rid)`` the last one's record key. Records after an agent's last
        one are appended (only the latest ``loss_k`` of them are written); an agent given one
        at or before its last (a late arrival, a tie) is returned: its ring is laid again from
        the ledger (:meth:`_recompute_tails`)."""
        k = self.loss_k
        if not k or not frame.height:
            return np.empty(0, dtype=np.int64)
        codes = frame["_i"].to_numpy()
        runs = self._runs_after(frame, codes, "rg")
        order, idx, starts, lengths = runs.groups
        last, matured, ts, rids = runs.last, runs.matured, runs.ts, runs.rids
        last_m, last_t, last_r = self._col("rg_m"), self._col("rg_t"), self._col("rg_rid")
        ok = runs.after
        # each row's number within its agent's rows; only an agent's latest k are written
        rank = np.arange(codes.size) - np.repeat(starts, lengths)
        write = np.repeat(ok, lengths) & (rank >= np.repeat(lengths - k, lengths))
        rows, rank = order[write], rank[write]
        agent = codes[rows]
        head, held = self._col("rg_head"), self._col("rg_len")
        slots = agent * k + (head[agent] + rank) % k
        agents, count, ends = idx[ok], lengths[ok], last[ok]
        leaving, entering, owner = self._past_swaps(agents, count)
        gone = self._ring[leaving]
        self._ring[slots] = frame["realized_pnl_bps"].to_numpy()[rows]
        self._wrote_ring(slots)
        if owner.size:  # the kept sorted copies swap what left for what entered (when read)
            self._swaps.append((owner, gone, self._ring[entering]))
            if len(self._swaps) > MAX_PENDING_SWAPS:  # advanced for long, never judged
                self._past_ok[:] = False
                self._swaps = []
        self._forget_loss(agents)
        head[agents] = (head[agents] + count) % k
        held[agents] = np.minimum(held[agents] + count, k)
        last_m[agents], last_t[agents] = matured[ends], ts[ends]
        last_r[agents] = np.array(rids.gather(ends).to_list(), dtype=object)
        return idx[~ok]

    def _past_swaps(
        self, agents: np.ndarray, count: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For ``agents`` about to take ``count`` records each (their rings not yet written):
        ``(leaving, entering, owner)`` ring slots and agent, one entry per record that
        leaves or enters the earlier records of an agent whose sorted copy is kept. The others'
        copies are dropped (sorted again from the ring when read); the kept ones swap the
        values when read (:meth:`loss_sorted`, by :func:`~.sortedrows.swap_values`).
        A full ring in record order is ``P`` earlier records then
        ``J`` judged ones; ``c < P`` new records shift it by ``c``: the ``c`` oldest leave
        (the slots the new records overwrite, ``head + q``) and the ``c`` records after the
        earlier ones join them (old judged, then new: slots ``head − J + q``, read once
        written), ``q < c``."""
        k = self.loss_k
        width = k - judged_records(self.policy)
        kept = np.zeros(agents.size, dtype=bool)
        inside = agents < self._past_ok.size
        kept[inside] = self._past_ok[agents[inside]]
        full = self._col("rg_len")[agents] == k
        kept &= full & (count < width)
        self._past_ok[agents[~kept & inside]] = False
        who, many = agents[kept], count[kept]
        owner = np.repeat(who, many)
        q = np.arange(owner.size) - np.repeat(np.cumsum(many) - many, many)
        head = self._col("rg_head")[owner]
        judged = k - width
        return owner * k + (head + q) % k, owner * k + (head - judged + q) % k, owner

    def _recompute_tails(self, src: _Source, agents: np.ndarray, low: int, high: int) -> None:
        """Lay ``agents``' loss tails again from their records at the horizon in
        ``(low, high]`` (the cadence history): what a rebuild holds."""
        k = self.loss_k
        names = pl.Series("agent", [self.names[i] for i in agents], dtype=pl.String)
        window = (
            self._horizon(src.range(low, high))
            .filter(pl.col("agent").is_in(names.implode()))
            .select("agent", "realized_pnl_bps", *ORDER)
            .collect()
        )
        self.recomputed_tails += agents.size
        self._forget_loss(agents)
        self._past_ok[agents[agents < self._past_ok.size]] = False
        for name in ("rg_head", "rg_len"):
            self._col(name)[agents] = 0
        for name in ("rg_m", "rg_t"):
            self._col(name)[agents] = _NONE
        self._col("rg_rid")[agents] = None
        self._ring.reshape(-1, k)[agents] = 0.0
        self._wrote_ring((agents[:, None] * k + np.arange(k)).ravel())
        if window.height:
            self._push_tails(self._with_codes(_in_order(window)))

    def loss_rows(self, agents: np.ndarray, n: int) -> np.ndarray:
        """The ``(len(agents), n)`` matrix of ``agents``' (numbers) last ``n`` records in their
        loss tails, oldest first (``n ≤ loss_k``)."""
        k = self.loss_k
        head = self._col("rg_head")[agents]
        # slot head − n + j wraps once at most (0 ≤ head < k, n ≤ k): a compare, not a modulo
        slots = (head[:, None] - n) + np.arange(n)
        slots += k * (slots < 0)
        slots += (agents * k)[:, None]
        return self._ring[slots]

    def loss_sorted(self, agents: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``agents``' (numbers; each ring full) earlier records sorted, their judged records
        (the latest :math:`R + r - 1`) in order, and whether all of them are finite
        (:func:`~meta_supervisor.signals.broken.fleet_loss_runs`' ``sorted_of``). The sorted
        copies are kept (in memory): here they first swap the values that left their earlier
        records for those that entered since (:meth:`_push_tails` notes them), about linear
        in a row; the agents without one get theirs here, sorted from the ring as it lies (its
        judged slots set to ``+inf``: they sort last)."""
        k, judged = self.loss_k, judged_records(self.policy)
        head = self._col("rg_head")[agents]
        columns = (head[:, None] - judged + np.arange(judged)) % k
        ring = self._ring.reshape(-1, k)
        recent = ring[agents[:, None], columns]
        self._room_for_past()
        for owner, gone, entered in self._swaps:  # in order; a copy dropped since is skipped
            mine = self._past_ok[owner]
            self._past_ok &= swap_values(self._past, owner[mine], gone[mine], entered[mine])
        self._swaps = []
        fresh = ~self._past_ok[agents]
        new = agents[fresh]
        if new.size:
            run = as_slice(new)
            if run is not None:  # consecutive (the whole fleet, after a load): in place
                rows = self._past[run]
                rows[...] = ring[run]
            else:
                rows = ring[new]
            finite = np.isfinite(rows).all(axis=1)
            np.put_along_axis(rows, columns[fresh], np.inf, axis=1)
            sort_rows(rows)
            if run is None:
                self._past[new] = rows
            self._past_ok[new] = finite
        clean = self._past_ok[agents] & np.isfinite(recent).all(axis=1)
        width = k - judged
        run = as_slice(agents)
        past = self._past[run, :width] if run is not None else self._past[agents, :width]
        return past, recent, clean

    def _room_for_past(self) -> None:
        """Room in the kept sorted copies for every agent (the capacity of the columns)."""
        if self._past_ok.size >= len(self.names):
            return
        capacity = max(len(self.names), next(iter(self._cols.values())).size)
        grown = np.zeros((capacity, self.loss_k))
        grown[: self._past.shape[0]] = self._past
        ok = np.zeros(capacity, dtype=bool)
        ok[: self._past_ok.size] = self._past_ok
        self._past, self._past_ok = grown, ok

    def _forget_loss(self, agents: np.ndarray) -> None:
        """``agents``' tails changed: their ``(z_i, v_i)`` are computed again when read."""
        self._loss_n[agents[agents < self._loss_n.size]] = -1

    def _with_loss_z(self, stats: pl.DataFrame) -> pl.DataFrame:
        """``stats`` with ``recent_loss_z`` and ``fleet_vol_ratio`` from the loss tails, as
        :meth:`meta_supervisor.signals.cadence.CadenceIndex.loss_regime` computes them from
        the ledger (bit for bit: the same records in the same order), from each agent's
        ``(z_i, v_i)`` (:meth:`judge_losses`)."""
        self.judge_losses()
        names = stats["agent"].to_list()
        index = self._agents.index
        known = np.array([name in index for name in names], dtype=bool)
        agents = np.array([index[n] for n in names if n in index], dtype=np.int64)
        z = np.full(len(names), np.nan)
        ratio = np.full(len(names), np.nan)
        z[known], ratio[known] = self._loss_z[agents], self._loss_v[agents]
        return stats.with_columns(loss_columns(*loss_regime(z, ratio, self.policy), len(names)))

    def judge_losses(self) -> None:
        """Each agent's ``(z_i, v_i)`` of the broken cut from its loss tail
        (:func:`~meta_supervisor.signals.broken.fleet_loss_runs`), computed again only when its
        tail or its count in the cadence history changed since it was last computed (a daily
        agent in an hourly cycle: once a day). It reads the tails and counts and writes only
        its own caches (the values, the sorted copies of :meth:`loss_sorted`), so it may run
        beside :meth:`frames` (NumPy's sorts let go of the GIL)."""
        if not self.loss_k:
            return
        size = len(self.names)
        if self._loss_n.size < size:
            grow = size - self._loss_n.size
            self._loss_n = np.concatenate([self._loss_n, np.full(grow, -1, dtype=np.int64)])
            self._loss_z = np.concatenate([self._loss_z, np.full(grow, np.nan)])
            self._loss_v = np.concatenate([self._loss_v, np.full(grow, np.nan)])
        # the cut reads the last min(loss_k, n_C) records: those of the cadence history
        lengths = np.minimum(self._col("cad_n"), self.loss_k)
        stale = np.flatnonzero(self._loss_n[:size] != lengths)
        if stale.size:
            self._loss_z[stale], self._loss_v[stale] = fleet_loss_runs(
                lengths[stale],
                lambda rows, n: self.loss_rows(stale[rows], n),
                self.policy,
                lambda rows: self.loss_sorted(stale[rows]),
            )
            self._loss_n[stale] = lengths[stale]

    def _half_life_us(self) -> int:
        """The confidence half-life :math:`h` in whole µs (at least 1)."""
        return max(1, round(self.policy.confidence_half_life_hours * US_PER_HOUR))

    def _move_anchor(self, now: int) -> None:
        """The confidence anchor for ``now``, shifting the exact sums when it moves: every
        weight is 2^-24 times its value at the previous anchor per period moved, so the exact
        sums move down one 24-bit level per period, exactly."""
        anchor = self._conf_anchor(now)
        if self.conf_anchor_us is None:
            self.conf_anchor_us = anchor
        elif anchor != self.conf_anchor_us:
            periods = (anchor - self.conf_anchor_us) // self._conf_period()
            self._conf_w.shift(-periods)
            self._conf_wz.shift(-periods)
            self.conf_anchor_us = anchor

    def _conf_period(self) -> int:
        """:math:`P = 24h` (µs): the confidence anchor moves once every 24 half-lives."""
        return 24 * self._half_life_us()

    def _conf_anchor(self, now: int) -> int:
        """The confidence anchor for ``now``: ``now`` rounded *up* to a multiple of :math:`P`,
        so every weight relative to it is at most 1 (a weight times a finite ``z`` never
        overflows at one anchor and not at the next) and at least :math:`2^{-(900 + 24)}`."""
        return -(-now // self._conf_period()) * self._conf_period()

    def _decay(self, delta_us: np.ndarray | int) -> np.ndarray:
        r""":math:`2^{-Δ/h}` for Δ µs, as :math:`2^{-r/h}\cdot 2^{-q}` with
        :math:`Δ = qh + r`, :math:`0 ≤ r < h`: the factor is exactly :math:`2^{-24}` times
        itself when Δ grows by :math:`P` (a power of two scales exactly), which makes a move of
        the anchor an exact shift of the sums (:meth:`ExactSums.shift`)."""
        h = self._half_life_us()
        q, r = np.divmod(np.asarray(delta_us, dtype=np.int64), h)
        return np.ldexp(np.exp2(-r / h), -q.astype(np.int32))

    def _update_confidence(self, entering: pl.DataFrame, leaving: pl.DataFrame) -> None:
        """Add ``entering`` and remove ``leaving`` from the exact sums of
        :math:`w = 2^{(m - A)/h}` and :math:`w·z` (``m`` ``matured_at``, ``A`` the anchor,
        ``z = |gap| / scale``); the decay to ``as_of`` is applied when the frame is built."""
        for sign, frame in ((-1, leaving), (1, entering)):
            if not frame.height:
                continue
            codes = frame["_i"].to_numpy() if "_i" in frame.columns else self._codes(frame["agent"])
            self._confidence_arrays(
                sign,
                codes,
                column_us(frame["matured_at"]),
                frame["expected_sigma_bps"].to_numpy(),
                frame["gap_bps"].to_numpy(),
            )

    def _confidence_arrays(
        self,
        sign: int,
        codes: np.ndarray,
        matured_us: np.ndarray,
        sigma: np.ndarray,
        gap: np.ndarray,
    ) -> None:
        """Add (``sign`` 1) or remove (-1) rows given as columns (agent numbers, ``matured_at``
        in µs, ``expected_sigma_bps`` with NaN for null, ``gap_bps``) from the confidence sums."""
        p = self.policy
        anchor = self.conf_anchor_us if self.conf_anchor_us is not None else 0
        w = self._decay(anchor - matured_us)
        with np.errstate(invalid="ignore"):
            scale = np.where(sigma > 0, sigma, p.sim_error_scale_bps)
        # w · (|gap| / scale): z does not depend on the anchor, so w·z moves with it
        # exactly (a product that leaves the normal range has no digit kept)
        with np.errstate(over="ignore"):  # an overflow is inf, counted as such
            wz = w * (np.abs(gap) / scale)
        self._col("conf_n")[:] += sign * np.bincount(codes, minlength=len(self.names))
        self._conf_w.add(codes, w, sign)
        self._conf_wz.add(codes, wz, sign)

    def _update_tails(self, entering: pl.DataFrame, leaving: pl.DataFrame) -> None:
        for sign, frame in ((-1, leaving), (1, entering)):
            if not frame.height:
                continue
            codes = self._strategy_codes(frame["strategy"])
            self._tails_arrays(sign, codes, frame["gap_bps"].to_numpy())

    def _tails_arrays(self, sign: int, codes: np.ndarray, gap: np.ndarray) -> None:
        """Add (``sign`` 1) or remove (-1) rows given as strategy numbers and ``gap_bps`` from
        the tails (counts, exact sums, buffers)."""
        names = self._strategies.names
        # + 0.0: a -0.0 gap is 0.0 (equal zeros of either sign would sit in the sorted
        # buffer in arrival order, and the worst gap's sign would depend on the path)
        gaps = gap + 0.0
        count = np.bincount(codes, minlength=len(names))
        self._tail_gap.add(codes, gaps, sign)
        self._tail_abs.add(codes, np.abs(gaps), sign)
        for code in np.flatnonzero(count):
            self.tails[names[code]].n += sign * int(count[code])
        # only gaps at or below their strategy's threshold touch the buffers
        thresholds = np.array([self.tails[name].threshold for name in names])
        below = gaps <= thresholds[codes]
        codes, gaps = codes[below], gaps[below]
        if not codes.size:
            return
        order, groups, starts, lengths = _groups(codes)
        for code, a, b in zip(groups, starts, starts + lengths, strict=True):
            tail = self.tails[names[code]]
            values = np.sort(gaps[order[a:b]], kind="stable")  # once, for the buffer and log
            if sign > 0:
                _insert_sorted(tail, values)
                self._log_tail(names[code], "insert", values)
                self._log_tail(names[code], "cut", tail.threshold)
            else:
                tail.buffer = _remove_sorted(tail.buffer, values)
                self._log_tail(names[code], "remove", values)

    def _refill_tails(self, src: _Source, low: int, high: int) -> None:
        short = self._short_tails()
        if not short:
            return
        frame = (
            self._horizon(src.range(low, high))
            .filter(pl.col("strategy").is_in(pl.Series(short).implode()))
            .group_by("strategy")
            .agg(pl.col("gap_bps").sort())
            .collect()
        )
        for strategy, gaps in frame.iter_rows():
            self._refill_tail(strategy, np.asarray(gaps, dtype=np.float64))

    def _short_tails(self) -> list[str]:
        """Empty the tails of strategies with no record, trim long buffers, and return the
        strategies whose buffer holds fewer than the ``m`` smallest gaps (to refill)."""
        short = []
        for strategy, tail in self.tails.items():
            if tail.n <= 0:
                if tail.buffer.size:
                    self._log_tail(strategy, "set", np.empty(0))
                tail.n, tail.threshold, tail.buffer = 0, math.inf, np.empty(0)
                continue
            _, m = tail_count(tail.n)
            if tail.buffer.size < max(m, 1):
                short.append(strategy)
            elif tail.buffer.size > 4 * m + 4096:
                keep = 2 * m + 1024
                tail.threshold = float(tail.buffer[keep - 1])
                tail.buffer = tail.buffer[tail.buffer <= tail.threshold]
                self._log_tail(strategy, "cut", tail.threshold)
        return short

    def _refill_tail(self, strategy: str, gaps: np.ndarray) -> None:
        """Refill ``strategy``'s tail from every gap of its window, sorted ascending."""
        tail = self.tails[strategy]
        values = gaps + 0.0  # -0.0 as 0.0 (see _tails_arrays)
        _, m = tail_count(values.size)
        keep = min(values.size, 2 * m + 1024)
        tail.threshold = float(values[keep - 1]) if keep < values.size else math.inf
        tail.buffer = values[values <= tail.threshold]
        self._log_tail(strategy, "set", tail.buffer)
        self.refilled_strategies += 1

    # ------------------------------------------------------------------ outputs

    def frames(
        self, telemetry: pl.DataFrame | pl.LazyFrame | None = None
    ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        """``(agent_stats, confidence, tails)`` frames as of the last :meth:`advance`."""
        if self.as_of_us is None:
            raise ValueError("advance() the state to an as_of first")
        return self._stats_frame(telemetry), self._confidence_frame(), self._tails_frame()

    def with_expected_records(self, stats: pl.DataFrame) -> pl.DataFrame:
        """``stats`` (from :meth:`frames`) with each agent's ``expected_records`` when cadence
        is on (unchanged when off): what the cycle's min_records gate reads; with loss tails
        kept (``loss_tails``), its ``recent_loss_z`` and the fleet's ``fleet_vol_ratio`` too
        (the broken cut's inputs, :func:`meta_supervisor.signals.cadence.with_expected_records`)."""
        if self._cadence()[0] <= 0:
            return stats
        stats = stats.join(self._expected_records(), on="agent", how="left")
        return self._with_loss_z(stats) if self.loss_k else stats

    def _expected_records(self) -> pl.DataFrame:
        """Each known agent's ``expected_records`` (null: unknown), as
        :meth:`meta_supervisor.signals.cadence.CadenceIndex.expected_records` computes it:
        ``n_C · L / C`` (hours) when one of its records fell in the first ``L`` hours of the
        cadence history, from the counts this state keeps."""
        return pl.DataFrame(
            {
                "agent": pl.Series(self.names, dtype=pl.String),
                "expected_records": pl.Series(self._expected_values(), dtype=pl.Float64).fill_nan(
                    None
                ),
            }
        )

    def _expected_values(self) -> np.ndarray:
        """:meth:`_expected_records` per known agent as an array (NaN: unknown)."""
        n, late = self._col("cad_n"), self._col("cad_late")
        history = cadence_hours(self.policy)
        with np.errstate(invalid="ignore"):
            return np.where(
                (n > 0) & (n - late > 0), n * self.policy.lookback_hours / history, np.nan
            )

    def _advanced_to(self) -> int:
        """``as_of_us``, which exists once the state was advanced."""
        if self.as_of_us is None:
            raise ValueError("advance() the state to an as_of first")
        return self.as_of_us

    def _stats_frame(self, telemetry: pl.DataFrame | pl.LazyFrame | None) -> pl.DataFrame:
        now = pl.lit(self._advanced_to()).cast(UTC_US)
        start = pl.lit(self._advanced_to() - self._lookbacks()[0]).cast(UTC_US)
        if telemetry is None:
            runs = pl.DataFrame(
                schema={"agent": pl.String, "n_runs": pl.Int64, "error_rate": pl.Float64}
            )
        elif isinstance(telemetry, pl.DataFrame):
            index = self._telemetry
            if index is None or index.source is not telemetry or index.height != telemetry.height:
                self._telemetry = index = _TelemetryIndex(telemetry, self._agents)
            return self._stats_frame_indexed(index)
        else:
            runs = (
                telemetry.lazy()
                .filter((pl.col("ts") <= now) & (pl.col("ts") > start))
                .group_by("agent")
                .agg(
                    pl.len().cast(pl.Int64).alias("n_runs"),
                    pl.col("is_error").cast(pl.Float64).mean().alias("error_rate"),
                )
                .collect()
            )
        columns = self._stats_columns()
        frame = pl.DataFrame(columns).with_columns(pl.col(_UNDEFINED).fill_nan(None))
        if not runs.height:
            return frame.with_columns(
                pl.lit(0, dtype=pl.Int64).alias("n_runs"),
                pl.lit(None, dtype=pl.Float64).alias("error_rate"),
            ).sort("agent")
        return (
            frame.join(runs, on="agent", how="full", coalesce=True)
            .with_columns(
                pl.col("n_records").fill_null(0),
                pl.col("pnl_sum_bps").fill_null(0.0),
                pl.col("max_drawdown_bps").fill_null(0.0),
                pl.col("strategy").fill_null("unclassified"),
                pl.col("n_runs").fill_null(0),
            )
            .select(STATS_COLUMNS)
            .sort("agent")
        )

    def _stats_frame_indexed(self, index: _TelemetryIndex) -> pl.DataFrame:
        """The stats frame with the runs of a :class:`_TelemetryIndex`, built as arrays in
        one permutation to agent order (no join): telemetry-only agents are extra rows."""
        as_of_us = self._advanced_to()
        runs, known, errors = index.runs(as_of_us - self._lookbacks()[0], as_of_us)
        size = len(self.names)
        names = index.agents.names
        to_engine = self._telemetry_to_engine(index)
        extra = np.flatnonzero((to_engine < 0) & (runs > 0))
        n_runs = np.zeros(size + extra.size, dtype=np.int64)
        n_known = np.zeros(size + extra.size)
        n_errors = np.zeros(size + extra.size)
        mapped = to_engine >= 0
        target = np.concatenate([to_engine[mapped], size + np.arange(extra.size)])
        source = np.concatenate([np.flatnonzero(mapped), extra])
        n_runs[target], n_known[target], n_errors[target] = (
            runs[source],
            known[source],
            errors[source],
        )
        columns = self._stats_columns()
        if extra.size:
            pad = extra.size
            columns["agent"] = columns["agent"].extend(
                pl.Series([names[i] for i in extra], dtype=pl.String)
            )
            columns["strategy"] = columns["strategy"].extend(
                pl.Series(["unclassified"] * pad, dtype=pl.String)
            )
            columns["n_records"] = columns["n_records"].extend(pl.zeros(pad, pl.Int64, eager=True))
            for key in (*_UNDEFINED, "pnl_sum_bps", "max_drawdown_bps"):
                fill = np.nan if key in _UNDEFINED else 0.0
                columns[key] = np.concatenate([columns[key], np.full(pad, fill)])
            columns["last_matured_at"] = columns["last_matured_at"].extend(
                pl.Series([None] * pad, dtype=UTC_US)
            )
        with np.errstate(divide="ignore", invalid="ignore"):
            columns["n_runs"] = pl.Series(n_runs, dtype=pl.Int64)
            columns["error_rate"] = np.where(n_known > 0, n_errors / n_known, np.nan)
        order = self._name_order(index, columns["agent"], extra)
        frame = pl.DataFrame(columns).with_columns(pl.col(*_UNDEFINED, "error_rate").fill_nan(None))
        return frame[order].select(STATS_COLUMNS)

    def _cached(self, name: str, key: tuple[Any, ...], build: Any) -> np.ndarray:
        """``build()``, kept under ``name`` while ``key`` is the same (objects compared by
        identity, the rest by value)."""
        cached = self._cache.get(name)
        same = (
            cached is not None
            and len(cached[0]) == len(key)
            and all(
                a is b if not isinstance(b, int | bytes) else a == b
                for a, b in zip(cached[0], key, strict=True)
            )
        )
        if not same:
            cached = (key, build())
            self._cache[name] = cached
        return cached[1]  # type: ignore[index]

    def _telemetry_to_engine(self, index: _TelemetryIndex) -> np.ndarray:
        """Each telemetry agent's engine number (-1: none), kept while neither codebook grew
        (both only ever append names)."""
        return self._cached(
            "to_engine",
            (index, len(index.agents.names), len(self.names)),
            lambda: np.array(
                [self._agents.index.get(n, -1) for n in index.agents.names], dtype=np.int64
            ),
        )

    def _name_order(
        self, index: _TelemetryIndex, agents: pl.Series, extra: np.ndarray
    ) -> np.ndarray:
        """The permutation putting ``agents`` (the engine's names, then the telemetry-only
        agents ``extra`` of ``index``) in name order; kept while they are the same."""
        return self._cached(
            "name_order",
            (index, len(index.agents.names), len(self.names), extra.tobytes()),
            lambda: np.argsort(np.array(agents.to_list(), dtype=object), kind="stable"),
        )

    def _stats_columns(self) -> dict[str, Any]:
        """The record statistics per known agent, as columns (NaN where undefined)."""
        values = self._stats_values()
        return {
            "agent": pl.Series(self.names, dtype=pl.String),
            "strategy": pl.Series(values.pop("strategy").tolist(), dtype=pl.String),
            "n_records": pl.Series(values.pop("n_records"), dtype=pl.Int64),
            **{key: values[key] for key in _STATS_FLOATS},
            # int64 min is numpy's NaT, i.e. null
            "last_matured_at": pl.Series(
                values["last_matured_at"].view("datetime64[us]")
            ).dt.replace_time_zone("UTC"),
        }

    def _stats_values(self) -> dict[str, np.ndarray]:
        """:meth:`_stats_columns` as NumPy arrays: the strategy as objects, ``last_matured_at``
        in µs (``_NONE``: none), NaN where undefined."""
        n = self._col("n")
        has = n > 0
        pnl, hits = self._col("pnl"), self._col("hits")
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            var = np.maximum(self._col("pnl_sq") - pnl * pnl / n, 0.0) / (n - 1)
            return {
                "strategy": self._strategy_column(has),
                "n_records": n,
                "pnl_sum_bps": np.where(has, pnl, 0.0),
                # NaN marks "undefined" (no record, or one for the std) and becomes null
                "pnl_mean_bps": np.where(has, pnl / n, np.nan),
                "pnl_std_bps": np.where(n > 1, np.sqrt(var), np.nan),
                "hit_rate": np.where(has, hits / n, np.nan),
                "avg_abs_error_bps": np.where(has, self._col("abs_gap") / n, np.nan),
                "max_drawdown_bps": np.where(has, np.minimum(self._col("dd"), 0.0), 0.0),
                "last_matured_at": np.where(has, self._col("last_m"), _NONE),
            }

    def _strategy_column(self, has: np.ndarray) -> np.ndarray:
        """Each agent's strategy: its latest in the window, else its latest visible record's,
        else ``unclassified``."""
        last, latest = self._col("last_strategy"), self._col("any_strategy")
        out = np.where(has & (last != None), last, latest)  # noqa: E711 (element-wise)
        out[out == None] = "unclassified"  # noqa: E711
        return out

    def _confidence_frame(self) -> pl.DataFrame:
        keep, conf, w, ratio = self._confidence_values()
        columns = [
            pl.Series(self.names, dtype=pl.String).filter(pl.Series(keep)),
            pl.Series(conf, dtype=pl.Float64),
            pl.Series(self._col("conf_n")[keep], dtype=pl.Int64),
            pl.Series(w, dtype=pl.Float64),
            pl.Series(ratio, dtype=pl.Float64),
        ]
        frame = pl.DataFrame(
            {name: s.alias(name) for name, s in zip(CONFIDENCE_COLUMNS, columns, strict=True)}
        )
        return frame.sort(CONFIDENCE_COLUMNS[0])

    def _confidence_values(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(keep, confidence, evidence weight, error ratio)``: the agents with evidence (a
        mask over the known agents) and, for them, the confidence frame's numbers."""
        p = self.policy
        floor, ceiling, tol = p.confidence_floor, p.confidence_ceiling, p.confidence_tolerance
        w0, z0 = p.confidence_prior_weight, prior_ratio(p)
        keep = self._col("conf_n") > 0
        # the sums are held at the anchor A: every weight decays to as_of by 2^(-(as_of - A)/h)
        anchor = self.conf_anchor_us if self.conf_anchor_us is not None else self._advanced_to()
        decay = float(self._decay(self._advanced_to() - anchor))
        w = self._conf_w.value()[keep] * decay
        wz = self._conf_wz.value()[keep] * decay
        total = w0 + w
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(total > 0, (w0 * z0 + wz) / total, z0)
            conf = np.where(ratio <= tol, ceiling, floor + (ceiling - floor) * tol / ratio)
        return keep, np.clip(conf, floor, ceiling), w, ratio

    def _tails_frame(self, alpha: float = 0.05) -> pl.DataFrame:
        return with_prior(
            pl.DataFrame(self._tail_rows(alpha), schema=_TAIL_ROW, orient="row"), self.policy
        )

    def _tail_rows(self, alpha: float = 0.05) -> list[tuple[str, int, float, float, float, float]]:
        """One row per strategy with records, in name order: ``strategy, n``, the raw CVaR,
        the worst, mean and mean absolute gap (the tails frame before :func:`with_prior`)."""
        rows = []
        codes = self._strategies.index
        gap_sums, abs_sums = self._tail_gap.value(), self._tail_abs.value()
        for strategy in sorted(self.tails):
            t = self.tails[strategy]
            if t.n <= 0:
                continue
            k, m = tail_count(t.n, alpha)
            g = t.buffer
            raw = (
                float(g[0])
                if k < 1
                else (float(g[: m - 1].sum()) + (k - m + 1) * float(g[m - 1])) / k
            )
            rows.append(
                (
                    strategy,
                    t.n,
                    raw,
                    float(g[0]),
                    float(gap_sums[codes[strategy]]) / t.n,
                    float(abs_sums[codes[strategy]]) / t.n,
                )
            )
        return rows

    # ------------------------------------------------------------------ persistence

    def _log_tail(self, strategy: str, op: str, value: Any) -> None:
        """Record a change of ``strategy``'s tail buffer when tracked (:meth:`track_tails`)."""
        if self._tail_log is not None:
            self._tail_log.append((strategy, op, value))

    def _wrote_ring(self, slots: np.ndarray) -> None:
        """Record that the loss ring's ``slots`` were written, when tracked."""
        if self._ring_writes is not None and slots.size:
            self._ring_writes.append(slots)

    def track_tails(self) -> None:
        """From now on, record every change of a tail buffer (see :meth:`take_tail_log`) and
        every slot of the loss ring written (:meth:`take_ring_writes`): a journal entry stores
        them instead of the buffers and the ring (:mod:`.journal`)."""
        self._tail_log = []
        self._ring_writes = []
        self._ring_live = len(self.names) * self.loss_k

    def take_ring_writes(self) -> np.ndarray | None:
        """The loss ring's slots (of ``r_ring``, sorted, unique) that may differ from what
        they held at :meth:`track_tails` or the last call: those written since, and those the
        ring gained with new agents; ``None`` when not tracked (or no ring). Tracking goes on
        from none."""
        if self._ring_writes is None or not self.loss_k:
            return None
        live = len(self.names) * self.loss_k
        grown = np.arange(self._ring_live, live, dtype=np.int64)
        slots = np.sort(np.concatenate([*self._ring_writes, grown]).astype(np.int64))
        slots = slots[np.r_[True, slots[1:] != slots[:-1]]] if slots.size else slots
        self._ring_writes, self._ring_live = [], live
        return slots

    def take_tail_log(self) -> list[tuple[str, str, Any]] | None:
        """The tail buffers' changes since :meth:`track_tails` or the last call, in order, as
        ``(strategy, op, value)``: ``insert`` (sorted gaps), ``remove`` (sorted gaps), ``cut``
        (keep the gaps at or below a threshold), ``set`` (the whole buffer); ``None`` when not
        tracked. Tracking goes on from an empty log."""
        log = self._tail_log
        if log is not None:
            self._tail_log = []
        return log

    def ring_rows(self, slots: np.ndarray) -> Rows:
        """``r_ring``'s ``slots`` (from :meth:`take_ring_writes`) as a journal entry's rows:
        ``{"r_ring": (slots, their values, the ring's live size)}`` (empty without a ring)."""
        if not self.loss_k:
            return {}
        return {"r_ring": (slots, self._ring[slots], len(self.names) * self.loss_k)}

    def to_bytes(self) -> bytes:
        """The whole state as an uncompressed ``.npz`` (:func:`npz_bytes` of
        :meth:`state_arrays`)."""
        return npz_bytes(self.state_arrays())

    def state_arrays(self, buffers: bool = True, ring: bool = True) -> dict[str, np.ndarray]:
        """The whole state as named arrays (fresh copies; what :meth:`to_bytes` stores).

        Text columns are stored as fixed-width unicode with a null mask; tail buffers are
        concatenated with their offsets (``t_offsets``, ``t_buffer``; left out when ``buffers``
        is false: a journal entry records their changes instead); the loss ring is ``r_ring``
        (left out when ``ring`` is false: a journal entry takes its written slots,
        :meth:`ring_rows`); the header (version, policy fingerprint, ``as_of``) is one JSON
        string.
        """
        header = {
            "version": STATE_VERSION,
            "policy_fingerprint": self.policy.fingerprint(),
            "as_of_us": self.as_of_us,
            "conf_anchor_us": self.conf_anchor_us,
            "loss_k": self.loss_k,
        }
        arrays: dict[str, np.ndarray] = {
            "header": np.array(json.dumps(header)),
            "names": np.array(self.names, dtype=str),
        }
        for name in (*_FLOATS, *_INTS):
            arrays[f"a_{name}"] = self._col(name).copy()
        if self.loss_k and ring:
            arrays["r_ring"] = self._ring[: len(self.names) * self.loss_k].copy()
        for name in _TEXTS:
            values = self._col(name)
            missing = np.array([v is None for v in values], dtype=bool)
            arrays[f"a_{name}"] = np.array(["" if v is None else v for v in values], dtype=str)
            arrays[f"a_{name}_null"] = missing
        # fresh copies (a kept image of the state must not change with it), in the file's order
        for sums, prefix in ((self._conf_w, "c_w"), (self._conf_wz, "c_wz")):
            arrays.update({k: v.copy() for k, v in sums.to_arrays(prefix).items()})
        strategies = self._strategies.names  # in number order: the exact sums' groups
        tails = [self.tails[s] for s in strategies]
        arrays["t_names"] = np.array(strategies, dtype=str)
        arrays["t_n"] = np.array([t.n for t in tails], dtype=np.int64)
        for sums, prefix in ((self._tail_gap, "t_gap"), (self._tail_abs, "t_abs")):
            arrays.update({k: v.copy() for k, v in sums.to_arrays(prefix).items()})
        arrays["t_threshold"] = np.array([t.threshold for t in tails], dtype=np.float64)
        if buffers:
            arrays.update(buffer_arrays([t.buffer for t in tails]))
        return arrays

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        policy: Policy,
        source: Path | str = "<bytes>",
        *,
        verified: bool = False,
        loss_tails: bool = False,
    ) -> IncrementalStats:
        """Restore a state written by :meth:`to_bytes` for the same policy.

        ``verified``: the caller holds the bytes against a hash of its own (the engine's
        ``engine.json``), so the arrays are read as views of ``data`` without the zip
        members' CRC check (:func:`read_npz`; about 15 ms less for a 10 MB state).

        Raises :class:`StateMismatch` (naming ``source``) for another version, another policy,
        other ``loss_tails``, or bytes that are not a complete state.
        """
        arrays = read_state(data, source, verified=verified)
        return cls.from_arrays(arrays, policy, source, loss_tails=loss_tails)

    @classmethod
    def from_arrays(
        cls,
        arrays: dict[str, np.ndarray],
        policy: Policy,
        source: Path | str = "<arrays>",
        *,
        loss_tails: bool = False,
    ) -> IncrementalStats:
        """Restore a state from :meth:`state_arrays` (with the tail buffers), as
        :meth:`from_bytes`."""
        try:
            header = json.loads(str(arrays["header"]))
        except (ValueError, KeyError) as err:
            raise StateMismatch(source, f"not a readable state ({type(err).__name__})") from err
        if not isinstance(header, dict) or header.get("version") != STATE_VERSION:
            version = header.get("version") if isinstance(header, dict) else None
            raise StateMismatch(source, f"state version {version}, expected {STATE_VERSION}")
        if header.get("policy_fingerprint") != policy.fingerprint():
            raise StateMismatch(source, "the state was built for another policy")
        inc = cls(policy, loss_tails=loss_tails)
        if header.get("loss_k") != inc.loss_k:
            kept = header.get("loss_k")
            why = f"the state keeps {kept} loss-tail records, not {inc.loss_k}"
            raise StateMismatch(source, why)
        try:
            return cls._restore(inc, arrays, header)
        except (KeyError, ValueError, TypeError, IndexError) as err:
            raise StateMismatch(
                source, f"inconsistent state ({type(err).__name__}: {err})"
            ) from err

    @staticmethod
    def _restore(
        inc: IncrementalStats, arrays: dict[str, np.ndarray], header: dict[str, Any]
    ) -> IncrementalStats:
        as_of, anchor = header["as_of_us"], header["conf_anchor_us"]
        inc.as_of_us = None if as_of is None else int(as_of)
        inc.conf_anchor_us = None if anchor is None else int(anchor)
        names = [str(v) for v in arrays["names"]]
        if len(set(names)) != len(names):
            raise ValueError("repeated agent names")
        inc._add_agents(names)
        size = len(names)
        for name in (*_FLOATS, *_INTS):
            values = arrays[f"a_{name}"]
            if values.shape != (size,):
                raise ValueError(f"column {name} has {values.shape}, expected ({size},)")
            inc._col(name)[:] = values
        for name in _TEXTS:
            values = arrays[f"a_{name}"].astype(object)
            missing = arrays[f"a_{name}_null"].astype(bool)
            if values.shape != (size,) or missing.shape != (size,):
                raise ValueError(f"column {name} does not have {size} entries")
            values[missing] = None
            inc._col(name)[:] = values
        if inc.loss_k:
            _restore_ring(inc, arrays["r_ring"])
        inc._conf_w = ExactSums.from_arrays(arrays, "c_w", size)
        inc._conf_wz = ExactSums.from_arrays(arrays, "c_wz", size)
        offsets = arrays["t_offsets"]
        buffer = np.asarray(arrays["t_buffer"], dtype=np.float64)
        if not _of_bytes(buffer):
            buffer = buffer.copy()  # memory the caller may change, read-only or not: copied once
        # each strategy's buffer is a view of it (a state's immutable bytes are not copied:
        # ~10 MB at 10M under select); every tail operation makes a new buffer, none writes
        # in place. The views keep those bytes alive until each tail is next changed.
        buffer.flags.writeable = False
        strategies = [str(v) for v in arrays["t_names"]]
        if offsets.shape != (len(strategies) + 1,) or int(offsets[-1]) != buffer.size:
            raise ValueError("tail buffer offsets do not match the buffer")
        if len(set(strategies)) != len(strategies):
            raise ValueError("repeated strategy names")
        inc._strategies.add(strategies)
        for i, strategy in enumerate(strategies):
            inc.tails[strategy] = _Tail(
                int(arrays["t_n"][i]),
                float(arrays["t_threshold"][i]),
                buffer[int(offsets[i]) : int(offsets[i + 1])],
            )
        inc._tail_gap = ExactSums.from_arrays(arrays, "t_gap", len(strategies))
        inc._tail_abs = ExactSums.from_arrays(arrays, "t_abs", len(strategies))
        return inc


def _of_bytes(array: np.ndarray) -> bool:
    """Whether ``array``'s memory is a ``bytes`` object's (immutable: nobody can change it)."""
    base: object = array
    while isinstance(base, np.ndarray):
        base = base.base
    return isinstance(base, bytes)


def read_state(
    data: bytes, source: Path | str = "<bytes>", *, verified: bool = False
) -> dict[str, np.ndarray]:
    """The arrays of a state's bytes (views of ``data``; ``verified``: see
    :meth:`IncrementalStats.from_bytes`); :class:`StateMismatch` naming ``source`` for bytes
    that are not a readable ``.npz``."""
    try:
        return read_npz(data, check=not verified)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise StateMismatch(source, f"not a readable state ({type(err).__name__})") from err


def _restore_ring(inc: IncrementalStats, ring: np.ndarray) -> None:
    """Put a saved ring of loss tails into ``inc`` (its counts restored), refusing one that
    does not fit them (``ValueError``: the state is rebuilt)."""
    k, size = inc.loss_k, len(inc.names)
    if ring.shape != (size * k,) or ring.dtype != np.float64:
        raise ValueError(f"loss tails of shape {ring.shape}, expected ({size * k},)")
    head, held = inc._col("rg_head"), inc._col("rg_len")
    if ((head < 0) | (head >= k) | (held < 0) | (held > k)).any():
        raise ValueError("a loss tail's head or length is outside its ring")
    if (held < np.minimum(inc._col("cad_n"), k)).any():
        raise ValueError("a loss tail holds fewer records than the cadence history counts")
    inc._ring[: ring.size] = ring


#: What parsing hostile ``.npz`` bytes raises besides ``ValueError``/``OSError``/``EOFError``/
#: ``BadZipFile`` (numpy's header parser tokenizes and evaluates a literal; zipfile refuses
#: unknown methods; a member's size may overflow): :func:`read_npz` raises them as ValueError.
_MALFORMED = (
    KeyError,
    IndexError,
    OverflowError,
    NotImplementedError,
    SyntaxError,
    struct.error,
    tokenize.TokenError,
)


def read_npz(data: bytes, *, check: bool = True) -> dict[str, np.ndarray]:
    """The arrays of an uncompressed ``.npz`` (no pickle).

    With ``check`` (the default) this is ``np.load``, which checks each member's CRC. Without,
    for bytes the caller has checked against a hash of its own, each member's ``.npy`` header
    is parsed and its data taken as a read-only view of ``data`` (no CRC, no copy); any member
    that is not a stored ``.npy`` of format 1.0 or 2.0 falls back to ``np.load``.

    Bytes that are not such an ``.npz`` raise ``ValueError`` (or ``OSError``, ``EOFError``,
    ``zipfile.BadZipFile``), whatever their headers claim: no object array, no negative or
    zero-size dimension trick, no member read past its own bytes.
    """
    try:
        return _read_npz(data, check)
    except _MALFORMED as err:
        raise ValueError(f"not a readable .npz ({type(err).__name__}: {err})") from err


def _read_npz(data: bytes, check: bool) -> dict[str, np.ndarray]:
    if check:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    out: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = archive.infolist()
    for info in members:
        if info.compress_type != zipfile.ZIP_STORED or not info.filename.endswith(".npy"):
            return _read_npz(data, True)
        at = info.header_offset
        if data[at : at + 4] != b"PK\x03\x04":
            return _read_npz(data, True)
        name_len, extra_len = struct.unpack("<HH", data[at + 26 : at + 30])
        start = at + 30 + name_len + extra_len
        head = io.BytesIO(data[start : start + 65536])
        version = np.lib.format.read_magic(head)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(head)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(head)
        else:
            return _read_npz(data, True)
        if dtype.hasobject:
            raise ValueError(f"{info.filename}: object arrays are not read")
        if any(n < 0 for n in shape) or not dtype.itemsize:
            raise ValueError(f"{info.filename}: a negative dimension or an empty type")
        count = math.prod(shape)
        begin = start + head.tell()
        if begin + count * dtype.itemsize > min(start + info.file_size, len(data)):
            raise ValueError(f"{info.filename}: shorter than its header says")
        values = np.frombuffer(data, dtype=dtype, count=count, offset=begin)
        out[info.filename[:-4]] = values.reshape(shape, order="F" if fortran else "C")
    return out


def buffer_arrays(buffers: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The tail buffers (in strategy number order) as the state's ``t_offsets`` and
    ``t_buffer`` arrays."""
    sizes = np.array([b.size for b in buffers], dtype=np.int64)
    return {
        "t_offsets": np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        "t_buffer": np.concatenate(buffers).astype("<f8") if buffers else np.empty(0),
    }


def _insert_sorted(tail: _Tail, values: np.ndarray) -> None:
    """Insert ``values`` (a strategy's new gaps at or below its threshold, sorted ascending by
    a stable sort) into its sorted tail buffer, keeping only what
    :meth:`IncrementalStats._refill_tails` would keep.

    The refill trims a buffer longer than ``4m + 4096`` (``m = ⌈0.05 n⌉``, ``n`` the strategy's
    count, final when the entering records are applied) to the gaps at or below its
    ``keep = 2m + 1024``-th smallest. When that will happen, the ``keep``-th smallest of the old
    buffer and the new gaps is found first by a selection (``np.partition``, linear) and only
    the gaps at or below it are merged: the same buffer and threshold, bit for bit (the k-th
    smallest is a value, whatever the order; a sorted array's part at or below it is sorted).
    """
    _, m = tail_count(tail.n)
    total = tail.buffer.size + values.size
    if total > 4 * m + 4096:
        keep = 2 * m + 1024
        kth = np.partition(np.concatenate([tail.buffer, values]), keep - 1)[keep - 1]
        buffer, values = tail.buffer[tail.buffer <= kth], values[values <= kth]
        merged = _merge_sorted(buffer, values)
        tail.threshold = float(merged[keep - 1])
        tail.buffer = merged[merged <= tail.threshold]
        return
    tail.buffer = _merge_sorted(tail.buffer, values)


def _merge_sorted(buffer: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``np.insert(buffer, np.searchsorted(buffer, values), values)`` (both sorted): each value
    before the equal ones already there. A few values (a cycle's new tail gaps) are placed by
    slice copies between their positions: ``np.insert`` builds a mask of the whole buffer."""
    if values.size > 32:
        return np.insert(buffer, np.searchsorted(buffer, values), values)
    out = np.empty(buffer.size + values.size, dtype=buffer.dtype)
    at = 0
    for shift, position in enumerate(np.searchsorted(buffer, values).tolist()):
        out[at + shift : position + shift] = buffer[at:position]
        out[position + shift] = values[shift]
        at = position
    out[at + values.size :] = buffer[at:]
    return out


def frames_at(
    records: pl.DataFrame | SortedLedger,
    telemetry: pl.DataFrame | None,
    as_of: datetime,
    policy: Policy,
    chunk_rows: int = CHUNK_ROWS,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """``(agent_stats, confidence, tails)`` of ``records`` as of ``as_of`` (the stats with
    their ``expected_records`` when cadence is on): a fresh
    :class:`IncrementalStats` advanced over them in time chunks of about ``chunk_rows`` records.

    What a live cycle on the store computes, bit for bit (a state built at once, in chunks or
    cycle by cycle holds the same numbers), with memory bounded by the chunk: only the records
    matured in the longest window ``(as_of − W, as_of]`` are read, plus the latest earlier
    record of each agent with none in it (it stays in the universe, gated as stale), as the
    store's rebuild does.
    """
    ledger = records if isinstance(records, SortedLedger) else SortedLedger(records)
    inc = IncrementalStats(policy)
    now = epoch_us(as_of)
    start = now - max(*inc._lookbacks(), inc._cadence()[0])
    us = ledger.matured_us
    first = int(np.searchsorted(us, start, side="right"))
    last = int(np.searchsorted(us, now, side="right"))
    view = ledger.frame.slice(first, last - first)
    before = ledger.frame.slice(0, first)
    if before.height:
        inside = view["agent"].unique().implode()
        stale = (
            before.filter(~pl.col("agent").is_in(inside))
            .group_by("agent", maintain_order=True)
            .agg(pl.all().sort_by(*ORDER).last())
            .select(ledger.frame.columns)
        )
        view = pl.concat([stale.sort("matured_at"), view]) if stale.height else view
    source = SortedLedger(view)
    rows = last - first
    chunks = max(1, math.ceil(rows / max(chunk_rows, 1)))
    for k in range(1, chunks + 1):
        step = now if k == chunks else max(int(us[first + rows * k // chunks]), start)
        inc.advance(source, from_epoch_us(step), keep_window=False)
    stats, conf, tails = inc.frames(telemetry)
    return inc.with_expected_records(stats), conf, tails
