r"""The incremental engine walked forward in time over NumPy columns (issue 17, item 5).

A backtest advances one :class:`~meta_supervisor.signals.incremental.IncrementalStats` through
thousands of cycles over one in-memory ledger. Through
:meth:`~meta_supervisor.signals.incremental.IncrementalStats.advance` each cycle reads its
records as polars frames (slices, selects, filters, casts of agent names to numbers) and checks
their record order: some thirty small polars calls per cycle, most of a cycle's time at 10M
records. Here the ledger is prepared **once**:

* :class:`LedgerArrays`: the rows in record order (``matured_at``, ``ts``, ``record_id``;
  :func:`~meta_supervisor.signals.order.in_record_order` once over the whole frame), each
  column a NumPy array, agent and strategy names as integer codes. A time range
  ``(low, high]`` of ``matured_at`` is two binary searches: the rows of any range are then in
  record order by construction (``matured_at`` is the first key), so no cycle checks or sorts.
* :class:`ArrayStats`: an :class:`IncrementalStats` whose :meth:`ArrayStats.advance_to` does what
  ``advance`` does, on index ranges of those arrays, with the *same* numeric operations (it
  calls the engine's own ``_extend_arrays``, ``_confidence_arrays``, ``_tails_arrays``,
  ``_path_summaries``, ``_refill_tail``), so the state, and every frame built from it, holds
  the same bits as the per-cycle path (``tests/signals/test_arrays.py``).

What the construction guarantees, and so is not checked per cycle: the rows entering at
``as_of`` (``matured_at`` in ``(previous as_of, as_of]``) come after every row the state already
holds, in record order; an agent's first entering row is therefore after its last one (its
sums are continued, never recomputed for that reason), and each agent's last entering row is
its new latest. Hence a state walked here refuses any other ledger and any other way of
advancing it (``late`` records do not exist in a walk over a fixed ledger).

``record_id`` is read only where a state keeps it (each agent's last and latest record): as a
row number, turned into the string when a caller reads the state's text columns
(:meth:`ArrayStats.sync`, done by :meth:`ArrayStats.state_arrays`, which ``to_bytes`` calls).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import polars as pl

from meta_supervisor.policy.model import Policy
from meta_supervisor.signals.confidence import CONFIDENCE_COLUMNS
from meta_supervisor.signals.incremental import (
    _NONE,
    _STATS_FLOATS,
    _TAIL_ROW,
    _UNDEFINED,
    IncrementalStats,
    SortedLedger,
    _groups,
    _path_summaries,
    _TelemetryIndex,
)
from meta_supervisor.signals.order import in_record_order
from meta_supervisor.signals.tails import with_prior
from meta_supervisor.units import UTC_US, column_us, epoch_us

__all__ = ["ArrayStats", "LedgerArrays"]


def _codes(series: pl.Series) -> tuple[list[str], np.ndarray]:
    """The distinct names and each value's number among them (int32)."""
    # first sight (a plain unique() is in hash order, which may differ from run to run)
    names = series.unique(maintain_order=True).to_list()
    codes = series.cast(pl.Enum(names)).to_physical().to_numpy().astype(np.int32)
    return names, codes


class LedgerArrays:
    """A ledger's rows in record order as NumPy columns, for :class:`ArrayStats` (see the module
    docstring). ``horizon``: the policy horizon whose rows the statistics read (they get their
    own columns, a view of all rows when every record is at it).

    Raises ``ValueError`` for a frame the walk cannot hold: a null ``ts``, ``agent`` or
    ``strategy`` (rows with a null ``matured_at`` are dropped, as
    :class:`~meta_supervisor.signals.incremental.SortedLedger` drops them).
    """

    def __init__(self, records: pl.DataFrame | SortedLedger, horizon: int) -> None:
        ledger = records if isinstance(records, SortedLedger) else SortedLedger(records)
        frame = ledger.frame
        for column in ("ts", "agent", "strategy"):
            if frame[column].null_count():
                raise ValueError(f"the array walk needs a {column} on every record")
        frame = in_record_order(frame)
        self.horizon = horizon
        self.height = frame.height
        self.matured = column_us(frame["matured_at"])
        self.ts = column_us(frame["ts"])
        self.agent_names, self.agent = _codes(frame["agent"])
        self.strategy_names, self.strategy = _codes(frame["strategy"])
        self.strategy_objects = np.array(self.strategy_names, dtype=object)
        self.record_id = frame["record_id"]
        at = frame["horizon_hours"].to_numpy() == horizon
        # the row (in these columns) of each row at the horizon; None: every row is
        rows: np.ndarray | slice = slice(None)
        self.h_row: np.ndarray | None = None
        if not bool(at.all()):
            rows = self.h_row = np.flatnonzero(at)
        self.h_matured = self.matured[rows]
        self.h_ts = self.ts[rows]
        self.h_agent = self.agent[rows]
        self.h_strategy = self.strategy[rows]
        self.h_pnl = frame["realized_pnl_bps"].to_numpy()[rows]
        self.h_gap = frame["gap_bps"].to_numpy()[rows]
        self.h_sigma = frame["expected_sigma_bps"].cast(pl.Float64).to_numpy()[rows]

    def upto(self, moment_us: int) -> int:
        """The number of rows with ``matured_at ≤ moment`` (µs)."""
        return int(np.searchsorted(self.matured, moment_us, side="right"))

    def h_upto(self, moment_us: int) -> int:
        """The number of rows at the horizon with ``matured_at ≤ moment`` (µs)."""
        return int(np.searchsorted(self.h_matured, moment_us, side="right"))


class ArrayStats(IncrementalStats):
    """:class:`IncrementalStats` advanced by :meth:`advance_to` over one :class:`LedgerArrays`
    (see the module docstring); :meth:`frames` and everything else are the engine's own."""

    def __init__(self, policy: Policy) -> None:
        super().__init__(policy)
        self._walk: LedgerArrays | None = None
        self._agent_map = np.empty(0, dtype=np.int64)  # ledger agent code -> engine number
        self._strategy_map = np.empty(0, dtype=np.int64)
        # per engine agent: row of its last record in the stats window, of its latest record
        # (-1: none); their record_id is written to the text columns by sync()
        self._rows = {"last_rid": np.empty(0, dtype=np.int64), "any_rid": np.empty(0, np.int64)}
        self._unsynced = False
        self._runs: tuple[Any, ...] | None = None  # the telemetry window of _walk_runs

    # ------------------------------------------------------------------ numbering

    def _agents_of(self, ledger_codes: np.ndarray) -> np.ndarray:
        """Engine numbers of ledger agent codes, numbering the agents not yet known."""
        mapped = self._agent_map[ledger_codes]
        if (mapped < 0).any():
            new = np.flatnonzero(np.bincount(ledger_codes[mapped < 0]))
            self._add_agents([self._walked().agent_names[c] for c in new])
            self._agent_map[new] = np.arange(len(self.names) - new.size, len(self.names))
            for name, rows in self._rows.items():
                grown = np.full(len(self.names), -1, dtype=np.int64)
                grown[: rows.size] = rows
                self._rows[name] = grown
            mapped = self._agent_map[ledger_codes]
        return mapped

    def _strategies_of(self, ledger_codes: np.ndarray) -> np.ndarray:
        """Engine strategy numbers of ledger strategy codes (new ones get a tail)."""
        mapped = self._strategy_map[ledger_codes]
        if (mapped < 0).any():
            new = np.flatnonzero(np.bincount(ledger_codes[mapped < 0]))
            names = self._walked().strategy_names
            self._strategy_codes(pl.Series([names[c] for c in new], dtype=pl.String))
            index = self._strategies.index
            self._strategy_map[new] = [index[names[c]] for c in new]
            mapped = self._strategy_map[ledger_codes]
        return mapped

    def _walked(self) -> LedgerArrays:
        if self._walk is None:
            raise ValueError("advance_to() the state over a LedgerArrays first")
        return self._walk

    # ------------------------------------------------------------------ the cycle

    def advance(
        self,
        ledger: object,
        as_of: datetime,
        late: pl.DataFrame | None = None,
        *,
        keep_window: bool = True,
    ) -> None:
        """The engine's own ``advance`` (a state walked by :meth:`advance_to` stops walking:
        its text columns are written first)."""
        self.sync()
        self._walk = None
        super().advance(ledger, as_of, late, keep_window=keep_window)  # type: ignore[arg-type]

    def advance_to(self, arrays: LedgerArrays, as_of: datetime) -> None:
        """Bring the state to ``as_of`` over ``arrays``: what ``advance(ledger, as_of)`` does,
        on index ranges (the module docstring says what is guaranteed instead of checked)."""
        now = epoch_us(as_of)
        prev = self.as_of_us
        if prev is not None and now < prev:
            raise ValueError(f"as_of went backwards: {as_of} is before the state's last cycle")
        if arrays.horizon != self.policy.horizon_hours:
            raise ValueError("the arrays were built for another horizon than the policy's")
        if self._walk is None:
            if prev is not None:
                raise ValueError("only a fresh state walks a LedgerArrays")
            self._walk = arrays
            self._agent_map = np.full(len(arrays.agent_names), -1, dtype=np.int64)
            self._strategy_map = np.full(len(arrays.strategy_names), -1, dtype=np.int64)
        elif self._walk is not arrays:
            raise ValueError("a walked state advances over the LedgerArrays it started on")
        a = arrays
        stats_l, conf_l, cvar_l = self._lookbacks()
        cad_l, cad_late_l = self._cadence()
        windows = (stats_l, conf_l, cvar_l, cad_l, cad_late_l)
        low = now - max(windows) if prev is None else prev
        end, h_end = a.upto(now), a.h_upto(now)
        h_start = a.h_upto(low)
        # every agent with a visible record (any horizon) is known; its latest is the last
        # visible row, which for a walked state is among those entering now
        visible = 0 if prev is None else a.upto(prev)
        self._latest_rows(visible, end)
        # the records at the horizon entering each window, and those leaving it (by time)
        entering = [
            (max(h_start, a.h_upto(now - lookback)), h_end) if lookback > 0 else (h_end, h_end)
            for lookback in windows
        ]
        leaving = [
            (h_end, h_end)
            if prev is None or lookback <= 0
            else (a.h_upto(prev - lookback), a.h_upto(min(prev, now - lookback)))
            for lookback in windows
        ]
        dirty = self._stats_rows(*entering[0], *leaving[0])
        self._move_anchor(now)
        for sign, (i, j) in ((-1, leaving[1]), (1, entering[1])):
            if j > i:
                self._confidence_arrays(
                    sign,
                    self._agents_of(a.h_agent[i:j]),
                    a.h_matured[i:j],
                    a.h_sigma[i:j],
                    a.h_gap[i:j],
                )
        for sign, (i, j) in ((-1, leaving[2]), (1, entering[2])):
            if j > i:
                self._tails_arrays(sign, self._strategies_of(a.h_strategy[i:j]), a.h_gap[i:j])
        for name, rows_in, rows_out in (
            ("cad_n", entering[3], leaving[3]),
            ("cad_late", entering[4], leaving[4]),
        ):
            for sign, (i, j) in ((1, rows_in), (-1, rows_out)):
                if j > i:
                    codes = self._agents_of(a.h_agent[i:j])
                    self._col(name)[:] += sign * np.bincount(codes, minlength=len(self.names))
        self.as_of_us = now
        if dirty.size:
            self._recompute_rows(dirty, a.h_upto(now - stats_l), h_end)
        self._refill_rows(a.h_upto(now - cvar_l), h_end)
        self._unsynced = True

    def _latest_rows(self, start: int, end: int) -> None:
        """Number the agents of rows ``[start, end)`` (any horizon) and make each one's last row
        its latest record (``any_*``)."""
        if end <= start:
            return
        a = self._walked()
        codes = self._agents_of(a.agent[start:end])
        order, idx, starts, lengths = _groups(codes)
        last = start + order[starts + lengths - 1]
        self._col("any_m")[idx] = a.matured[last]
        self._col("any_t")[idx] = a.ts[last]
        self._col("any_strategy")[idx] = a.strategy_objects[a.strategy[last]]
        self._rows["any_rid"][idx] = last

    def _stats_rows(self, i: int, j: int, out_i: int, out_j: int) -> np.ndarray:
        """``_update_stats`` on horizon rows ``[i, j)`` entering the stats window and
        ``[out_i, out_j)`` leaving it: agents that lost records are returned (to recompute),
        the others' sums and paths are continued over their entering rows."""
        a = self._walked()
        dirty = np.zeros(len(self.names), dtype=bool)
        if out_j > out_i:
            dirty[self._agents_of(a.h_agent[out_i:out_j])] = True
        if j <= i:
            return np.flatnonzero(dirty)
        codes = self._agents_of(a.h_agent[i:j])
        grouped = _groups(codes)
        order, idx, starts, lengths = grouped
        extend = np.zeros(len(self.names), dtype=bool)
        extend[idx[~dirty[idx]]] = True
        rows = extend[codes]
        if rows.any():
            pnl, gap = a.h_pnl[i:j], a.h_gap[i:j]
            every = bool(rows.all())
            part = codes if every else codes[rows]
            part_pnl = pnl if every else pnl[rows]
            self._extend_arrays(part, part_pnl, gap if every else gap[rows])
            state = tuple(self._col(c) for c in ("total", "hi", "lo", "dd"))
            ext, *paths = _path_summaries(part, part_pnl, grouped if every else None, start=state)
            for name, values in zip(("total", "hi", "lo", "dd"), paths, strict=True):
                self._col(name)[ext] = values
        self._set_last(idx, i + order[starts + lengths - 1])
        return np.flatnonzero(dirty)

    def _set_last(self, agents: np.ndarray, h_rows: np.ndarray) -> None:
        """Agents' last record in the stats window: horizon rows ``h_rows``."""
        a = self._walked()
        self._col("last_m")[agents] = a.h_matured[h_rows]
        self._col("last_t")[agents] = a.h_ts[h_rows]
        self._col("last_strategy")[agents] = a.strategy_objects[a.h_strategy[h_rows]]
        self._rows["last_rid"][agents] = h_rows if a.h_row is None else a.h_row[h_rows]

    def _recompute_rows(self, agents: np.ndarray, i: int, j: int) -> None:
        """``_recompute_agents``: the stats of ``agents`` from their horizon rows in ``[i, j)``
        (the stats window), from the first record on."""
        a = self._walked()
        self.recomputed_agents += agents.size
        for name in ("pnl", "pnl_sq", "abs_gap", "total", "hi", "lo", "dd", "n", "hits"):
            self._col(name)[agents] = 0
        for name in ("last_m", "last_t"):
            self._col(name)[agents] = _NONE
        self._col("last_strategy")[agents] = None
        self._rows["last_rid"][agents] = -1
        if j <= i:
            return
        wanted = np.zeros(len(self.names), dtype=bool)
        wanted[agents] = True
        window = self._agents_of(a.h_agent[i:j])
        rows = np.flatnonzero(wanted[window])
        if not rows.size:
            return
        codes, pnl = window[rows], a.h_pnl[i:j][rows]
        self._extend_arrays(codes, pnl, a.h_gap[i:j][rows])
        grouped = _groups(codes)
        ext, *paths = _path_summaries(codes, pnl, grouped)
        for name, values in zip(("total", "hi", "lo", "dd"), paths, strict=True):
            self._col(name)[ext] = values
        order, idx, starts, lengths = grouped
        self._set_last(idx, i + rows[order[starts + lengths - 1]])

    def _refill_rows(self, i: int, j: int) -> None:
        """``_refill_tails`` from the horizon rows ``[i, j)`` (the CVaR window)."""
        short = self._short_tails()
        if not short:
            return
        a = self._walked()
        codes = self._strategies_of(a.h_strategy[i:j])
        gaps = a.h_gap[i:j]
        index = self._strategies.index
        for strategy in short:
            values = np.sort(gaps[codes == index[strategy]])
            if values.size:
                self._refill_tail(strategy, values)

    # ------------------------------------------------------------------ text columns

    def sync(self) -> None:
        """Write each agent's last and latest ``record_id`` (kept as row numbers while walking)
        into the state's text columns."""
        if not self._unsynced or self._walk is None:
            return
        for name, rows in self._rows.items():
            column = self._col(name)
            column[:] = None
            have = np.flatnonzero(rows[: column.size] >= 0)
            if have.size:
                ids = self._walk.record_id.gather(rows[have]).to_list()
                column[have] = np.array(ids, dtype=object)
        self._unsynced = False

    def state_arrays(self, buffers: bool = True, ring: bool = True) -> dict[str, np.ndarray]:
        """The engine's state arrays (what ``to_bytes`` stores), text columns written first."""
        self.sync()
        return super().state_arrays(buffers, ring)

    # ------------------------------------------------------------------ frames

    def cycle_frames(
        self, telemetry: pl.DataFrame | None = None
    ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        """``frames(telemetry)`` with the stats' ``expected_records``
        (:meth:`with_expected_records`): the same frames, bit for bit, each built in one
        construction from the state's arrays (the engine's way takes about ten polars queries:
        fills, a join, sorts, selects)."""
        return self._walk_stats(telemetry), self._walk_confidence(), self._walk_tails()

    def _name_rank(self, cache: str, names: list[str], key: tuple[object, ...]) -> np.ndarray:
        """The permutation putting ``names`` in name order (polars' string order: UTF-8 bytes,
        i.e. code points), kept under ``cache`` while ``key`` is the same."""
        return self._cached(
            cache,
            key,
            lambda: np.argsort(np.array(names, dtype=object), kind="stable"),
        )

    def _names_column(
        self, cache: str, name: str, names: list[str], rows: np.ndarray, key: tuple[object, ...]
    ) -> pl.Series:
        """``names[rows]`` as a string column, kept under ``cache`` while ``key`` is the same
        (the agents and their order change rarely from one cycle to the next)."""
        column = self._cached(
            cache, key, lambda: pl.Series(name, [names[i] for i in rows], dtype=pl.String)
        )
        return column  # type: ignore[return-value]

    def _walk_stats(self, telemetry: pl.DataFrame | None) -> pl.DataFrame:
        values = self._stats_values()
        size = len(self.names)
        names, extra = self.names, np.empty(0, dtype=np.int64)
        n_runs = np.zeros(size, dtype=np.int64)
        error_rate = np.full(size, np.nan)
        index = None
        if telemetry is not None:
            index = self._telemetry
            if index is None or index.source is not telemetry or index.height != telemetry.height:
                self._telemetry = index = _TelemetryIndex(telemetry, self._agents)
            as_of_us = self._advanced_to()
            runs, known, errors = self._walk_runs(index, as_of_us - self._lookbacks()[0], as_of_us)
            to_engine = self._telemetry_to_engine(index)
            extra = np.flatnonzero((to_engine < 0) & (runs > 0))
            mapped = to_engine >= 0
            target = np.concatenate([to_engine[mapped], size + np.arange(extra.size)])
            source = np.concatenate([np.flatnonzero(mapped), extra])
            n_runs = np.zeros(size + extra.size, dtype=np.int64)
            n_known, n_errors = np.zeros(size + extra.size), np.zeros(size + extra.size)
            n_runs[target], n_known[target], n_errors[target] = (
                runs[source],
                known[source],
                errors[source],
            )
            with np.errstate(divide="ignore", invalid="ignore"):
                error_rate = np.where(n_known > 0, n_errors / n_known, np.nan)
            if extra.size:
                names = [*self.names, *(index.agents.names[i] for i in extra)]
        pad = extra.size
        if pad:
            values["strategy"] = np.concatenate(
                [values["strategy"], np.full(pad, "unclassified", dtype=object)]
            )
            values["n_records"] = np.concatenate([values["n_records"], np.zeros(pad, np.int64)])
            for key in (*_UNDEFINED, "pnl_sum_bps", "max_drawdown_bps"):
                fill = np.nan if key in _UNDEFINED else 0.0
                values[key] = np.concatenate([values[key], np.full(pad, fill)])
            values["last_matured_at"] = np.concatenate(
                [values["last_matured_at"], np.full(pad, _NONE, dtype=np.int64)]
            )
        same = (index, len(self.names), extra.tobytes())
        order = self._name_rank("walk_stats", names, same)
        columns = [
            self._names_column("walk_stats_agents", "agent", names, order, same),
            pl.Series("strategy", values["strategy"][order].tolist(), dtype=pl.String),
            pl.Series("n_records", values["n_records"][order], dtype=pl.Int64),
            *(
                pl.Series(key, values[key][order], dtype=pl.Float64, nan_to_null=key in _UNDEFINED)
                for key in _STATS_FLOATS
            ),
            # int64 min is numpy's NaT, i.e. null
            pl.Series(
                "last_matured_at", values["last_matured_at"][order].view("datetime64[us]")
            ).cast(UTC_US),
            pl.Series("n_runs", n_runs[order], dtype=pl.Int64),
            pl.Series("error_rate", error_rate[order], dtype=pl.Float64, nan_to_null=True),
        ]
        if self._cadence()[0] > 0:
            expected = self._expected_values()
            if pad:
                expected = np.concatenate([expected, np.full(pad, np.nan)])
            columns.append(
                pl.Series("expected_records", expected[order], dtype=pl.Float64, nan_to_null=True)
            )
        return pl.DataFrame(columns)

    def _walk_runs(
        self, index: _TelemetryIndex, low: int, high: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``index.runs(low, high)``, moved from the previous window by the runs that entered
        and left it when it only moved forward: counts of runs, of known flags and of errors
        (0/1 values: integer sums, exact in any order)."""
        i = int(np.searchsorted(index.ts, low, side="right"))
        j = int(np.searchsorted(index.ts, high, side="right"))
        kept = self._runs
        if (
            kept is None
            or kept[0] is not index
            or i < kept[1]
            or j < kept[2]
            or (j - kept[2]) + (i - kept[1]) > j - i
        ):
            n, known, errors = index.runs(low, high)
        else:
            # [i, j) = [i0, j0) + [j0, j) − [i0, i)
            _, i0, j0, n, known, errors = kept
            size = len(index.agents.names)
            for sign, a, b in ((1, j0, j), (-1, i0, i)):
                if b > a:
                    codes = index.codes[a:b]
                    n = n + sign * np.bincount(codes, minlength=size)
                    known = known + sign * np.bincount(codes, index.known[a:b], minlength=size)
                    errors = errors + sign * np.bincount(codes, index.error[a:b], minlength=size)
        self._runs = (index, i, j, n, known, errors)
        return n, known, errors

    def _walk_confidence(self) -> pl.DataFrame:
        keep, conf, w, ratio = self._confidence_values()
        order = self._name_rank("walk_agents", self.names, (len(self.names),))
        kept = order[keep[order]]  # the agents with evidence, in name order
        position = np.zeros(len(self.names), dtype=np.int64)
        position[keep] = np.arange(np.count_nonzero(keep))
        sel = position[kept]  # their place in the values (agents with evidence, by number)
        return pl.DataFrame(
            [
                self._names_column(
                    "walk_conf_agents",
                    CONFIDENCE_COLUMNS[0],
                    self.names,
                    kept,
                    (len(self.names), kept.tobytes()),
                ),
                pl.Series(CONFIDENCE_COLUMNS[1], conf[sel], dtype=pl.Float64),
                pl.Series(CONFIDENCE_COLUMNS[2], self._col("conf_n")[kept], dtype=pl.Int64),
                pl.Series(CONFIDENCE_COLUMNS[3], w[sel], dtype=pl.Float64),
                pl.Series(CONFIDENCE_COLUMNS[4], ratio[sel], dtype=pl.Float64),
            ]
        )

    def _walk_tails(self) -> pl.DataFrame:
        """The tails frame; built at once when no strategy is shrunk toward the prior (the CVaR
        used is then the raw one), else by :func:`with_prior`, the one place of that rule."""
        rows = self._tail_rows()
        columns = list(zip(*rows, strict=True)) if rows else [()] * 6
        n = np.array(columns[1], dtype=np.int64)
        if (n < self.policy.cvar_min_samples).any():
            return with_prior(pl.DataFrame(rows, schema=_TAIL_ROW, orient="row"), self.policy)
        raw = pl.Series("gap_cvar95_bps", columns[2], dtype=pl.Float64)
        return pl.DataFrame(
            [
                pl.Series("strategy", columns[0], dtype=pl.String),
                pl.Series("n", n, dtype=pl.Int64),
                raw,
                raw.alias("gap_cvar95_used_bps"),
                pl.Series("shrunk", np.zeros(n.size, dtype=bool), dtype=pl.Boolean),
                *(
                    pl.Series(name, columns[i], dtype=pl.Float64)
                    for i, name in ((3, "worst_gap"), (4, "mean_gap"), (5, "mean_abs_gap"))
                ),
            ]
        )
