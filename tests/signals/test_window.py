"""The stats window kept in memory (issue #17): agents that lost records from the stats window
are computed again from it instead of the ledger.

References: a list of the records held (for the window itself); the same engine that never
keeps the window (every such agent read from the ledger, as before), one that may keep only
a few records (the whole window then read but not kept), and a rebuild (for the engine)."""

from __future__ import annotations

import itertools
from datetime import timedelta
from unittest import mock

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_incremental import T0, _frame, _record, anchor_policy_st, inexact_op_st

from helpers import assert_same_bits
from meta_supervisor.policy.model import Policy
from meta_supervisor.signals import incremental
from meta_supervisor.signals.incremental import IncrementalStats
from meta_supervisor.signals.window import RecordWindow

window_op_st = st.one_of(
    st.tuples(st.just("drop"), st.integers(-5, 60)),
    st.tuples(st.just("append"), st.lists(st.integers(0, 6), min_size=0, max_size=40)),
)


@given(ops=st.lists(window_op_st, max_size=60))
@settings(max_examples=200, deadline=None)
def test_the_window_holds_what_was_appended_and_not_dropped(ops):
    """Appends of records in time order (steps of 0 to 6 µs: ties included) and drops of the
    front, against a list of the records held; an append before the last record held is
    refused and changes nothing."""
    window, held, clock, number = RecordWindow(), [], 0, 0
    for kind, arg in ops:
        if kind == "drop":
            moment = clock - arg
            window.drop_through(moment)
            held = [r for r in held if r[3] > moment]
        else:
            matured = clock + np.cumsum(np.array(arg, dtype=np.int64))
            codes = np.arange(number, number + len(arg), dtype=np.int64) % 7
            pnl, gap = matured * 0.5, -matured * 0.25
            window.append(codes, pnl, gap, matured)
            held += list(
                zip(codes.tolist(), pnl.tolist(), gap.tolist(), matured.tolist(), strict=True)
            )
            clock = int(matured[-1]) if len(arg) else clock
            number += len(arg)
        codes, pnl, gap = window.columns()
        assert len(window) == len(held)
        assert codes.tolist() == [r[0] for r in held]
        assert pnl.tolist() == [r[1] for r in held] and gap.tolist() == [r[2] for r in held]
    if held:
        before = [c.copy() for c in window.columns()]
        early = np.array([held[-1][3] - 1], dtype=np.int64)
        with pytest.raises(ValueError, match="out of order"):
            window.append(np.array([0]), np.array([1.0]), np.array([1.0]), early)
        assert all(np.array_equal(a, b) for a, b in zip(before, window.columns(), strict=True))


def _state_bytes(inc: IncrementalStats) -> dict[str, bytes]:
    return {name: np.asarray(value).tobytes() for name, value in inc.state_arrays().items()}


@given(
    policy=anchor_policy_st,
    ops=st.lists(inexact_op_st, min_size=1, max_size=16),
    reload_every=st.integers(0, 3),
)
@settings(max_examples=60, deadline=None)
def test_agents_computed_again_from_the_kept_window_are_those_read_from_the_ledger(
    policy, ops, reload_every
):
    """Cycle by cycle, late records and reloads (a state loaded from its bytes has no window:
    its first such cycle reads and keeps it) included: the engine that keeps the window, one
    that never does and one that may keep three records hold the same state, array by array
    and bit for bit, and the frames of a rebuild."""
    engines = {rows: IncrementalStats(policy) for rows in (incremental.WINDOW_ROWS, 0, 3)}
    as_of, ledger, late, index, cycles = T0, _frame([]), [], 0, 0
    kept = 0
    for kind, arg in ops:
        if kind == "append":
            batch = _frame([_record(index + i, item, as_of) for i, item in enumerate(arg)])
            index += len(arg)
            ledger = pl.concat([ledger, batch])
            late.append(batch)
            continue
        as_of += timedelta(hours=arg)
        cycles += 1
        for rows, inc in engines.items():
            with mock.patch.object(incremental, "WINDOW_ROWS", rows):
                inc.advance(ledger, as_of, late=pl.concat(late) if late else None)
        late = []
        kept += engines[incremental.WINDOW_ROWS]._window is not None
        states = [_state_bytes(inc) for inc in engines.values()]
        assert states[0] == states[1] == states[2]
        counts = {inc.recomputed_agents for inc in engines.values()}
        assert len(counts) == 1
        rebuilt = IncrementalStats(policy)
        rebuilt.advance(ledger.lazy(), as_of)
        assert_same_bits(rebuilt.frames(None), engines[0].frames(None))
        if reload_every and cycles % reload_every == 0:
            for rows, inc in list(engines.items()):
                engines[rows] = IncrementalStats.from_bytes(inc.to_bytes(), policy)
    assert engines[0]._window is None


def test_a_live_hour_computes_the_agents_that_lost_records_from_the_kept_window():
    """Hourly cycles with a 6-hour stats window: every agent loses a record each hour. The
    window is read from the ledger once (the first time agents are computed again), then
    kept: never read again."""
    policy = Policy(lookback_hours=6.0, confidence_lookback_hours=8.0, cvar_lookback_hours=5.0)
    rows = [
        _record(i, (agent, "s1", h - 48, 24, float((i * 37) % 11 - 5), 0.5, None), T0)
        for i, (agent, h) in enumerate((a, h) for h in range(60) for a in ("a", "b", "c"))
    ]
    ledger = _frame(rows)
    inc = IncrementalStats(policy)
    inc.advance(ledger, T0 - timedelta(hours=40))
    reads: list[int] = []
    original = incremental._Source.range

    def counted(self, low, high):
        reads.append(high - low)
        return original(self, low, high)

    with mock.patch.object(incremental._Source, "range", counted):
        for hour in range(-39, 11):
            before = inc.recomputed_agents
            inc.advance(ledger, T0 + timedelta(hours=hour))
            assert inc.recomputed_agents - before == 3  # every agent lost a record
    stats_window_us = 6 * 3_600_000_000
    assert reads.count(stats_window_us) == 1
    rebuilt = IncrementalStats(policy)
    rebuilt.advance(ledger, T0 + timedelta(hours=10))
    assert_same_bits(rebuilt.frames(None), inc.frames(None))


def test_an_agent_whose_records_all_left_the_window_holds_no_last_record():
    """Its last record is the one a rebuild finds in its (empty) window: none."""
    policy = Policy(lookback_hours=6.0, confidence_lookback_hours=8.0, cvar_lookback_hours=5.0)
    ledger = _frame(
        [
            _record(0, ("x", "s1", -10, 24, 1.5, 0.5, None), T0),
            _record(1, ("y", "s1", -9, 24, 2.5, 0.5, None), T0),
            _record(2, ("y", "s1", -1, 24, -2.5, 0.5, None), T0),
        ]
    )
    kept, read = IncrementalStats(policy), IncrementalStats(policy)
    for moment in (T0 - timedelta(hours=9), T0):
        kept.advance(ledger, moment)
        with mock.patch.object(incremental, "WINDOW_ROWS", 0):
            read.advance(ledger, moment)
    assert kept._window is not None and read._window is None
    assert _state_bytes(kept) == _state_bytes(read)
    rebuilt = IncrementalStats(policy)
    rebuilt.advance(ledger, T0)
    assert_same_bits(rebuilt.frames(None), kept.frames(None))


def test_a_window_too_long_to_keep_is_read_whole_once_a_window_length():
    """With room for two records: the first time agents are computed again the window is
    read whole and found too long; the next cycles read only the agents' rows, as before,
    until a window length (6 hourly cycles) has passed."""
    policy = Policy(lookback_hours=6.0, confidence_lookback_hours=8.0, cvar_lookback_hours=5.0)
    rows = [  # "a" reports every hour, "b" every third: most hours only "a" loses a record
        _record(i, (agent, "s1", h - 48, 24, float(i % 7 - 3), 0.5, None), T0)
        for i, (agent, h) in enumerate(
            (a, h) for h in range(60) for a in ("a", "b") if a == "a" or h % 3 == 1
        )
    ]
    ledger = _frame(rows)
    inc = IncrementalStats(policy)
    whole: list[bool] = []
    original = IncrementalStats._recompute_from

    def spy(self, agents, window):
        named = {self.names[i] for i in agents}
        whole.append(bool(set(window["agent"].to_list()) - named))
        return original(self, agents, window)

    with (
        mock.patch.object(incremental, "WINDOW_ROWS", 2),
        mock.patch.object(IncrementalStats, "_recompute_from", spy),
    ):
        inc.advance(ledger, T0 - timedelta(hours=40))
        for hour in range(-39, 11):
            inc.advance(ledger, T0 + timedelta(hours=hour))
    reads = [i for i, read_whole in enumerate(whole) if read_whole]
    assert len(whole) > 40 and reads and inc._window is None
    assert all(b - a >= 6 for a, b in itertools.pairwise(reads))
    rebuilt = IncrementalStats(policy)
    rebuilt.advance(ledger, T0 + timedelta(hours=10))
    assert_same_bits(rebuilt.frames(None), inc.frames(None))


def _row(index: int, agent: str, matured, horizon: int, ts_shift_s: int, pnl: float) -> dict:
    return {
        "record_id": f"r{index:05d}",
        "ts": matured - timedelta(hours=horizon) + timedelta(seconds=ts_shift_s),
        "matured_at": matured,
        "agent": agent,
        "strategy": "s1",
        "horizon_hours": horizon,
        "realized_pnl_bps": pnl,
        "expected_sigma_bps": None,
        "gap_bps": 0.3 * (index % 7),
    }


POLICY_6H = Policy(lookback_hours=6.0, confidence_lookback_hours=8.0, cvar_lookback_hours=5.0)


def test_some_agents_computed_again_from_the_kept_window_with_ties_and_other_horizons():
    """Only some agents lose records in most hours ("b" reports every third hour), rows at
    another horizon sit in the ledger, and records tie on ``matured_at`` with their ``ts``
    in reverse order: the kept window's state is the ledger-reading engine's, hour by hour
    (a window taken at every horizon, left unordered, or not cut to the recomputed agents
    differs)."""
    rows, index = [], 0
    for hour in range(60):
        matured = T0 + timedelta(hours=hour - 48)
        for agent in ("a", "b"):
            if agent == "b" and hour % 3:
                continue
            for k, (horizon, shift) in enumerate(((24, 2), (24, 1), (1, 0))):
                rows.append(_row(index, agent, matured, horizon, shift, (0.1, -0.7, 5.0)[k]))
                index += 1
    ledger = _frame(rows)
    kept, read = IncrementalStats(POLICY_6H), IncrementalStats(POLICY_6H)
    for hour in range(-40, 11):
        for inc, cap in ((kept, incremental.WINDOW_ROWS), (read, 0)):
            with mock.patch.object(incremental, "WINDOW_ROWS", cap):
                inc.advance(ledger, T0 + timedelta(hours=hour))
        assert _state_bytes(kept) == _state_bytes(read), hour
    assert kept._window is not None


def test_a_late_record_tying_with_the_windows_last_one_drops_the_window():
    """Matured at the same instant as the window's last record, with an earlier ``ts``: it
    belongs before it, so the window cannot take it at its back."""
    base = _frame(
        [
            _row(0, "z", T0 - timedelta(hours=5), 24, 0, 1.0),
            _row(1, "a", T0 + timedelta(hours=1), 24, 0, 1.0),
            _row(2, "a", T0 + timedelta(hours=2), 24, 1, -5.0),
        ]
    )
    late = _frame([_row(3, "a", T0 + timedelta(hours=2), 24, 0, 3.0)])
    ledger = pl.concat([base, late])
    kept, read = IncrementalStats(POLICY_6H), IncrementalStats(POLICY_6H)
    for inc, cap in ((kept, incremental.WINDOW_ROWS), (read, 0)):
        with mock.patch.object(incremental, "WINDOW_ROWS", cap):
            inc.advance(base, T0)
            inc.advance(base, T0 + timedelta(hours=2))
            assert (inc._window is not None) == bool(cap)
            inc.advance(ledger, T0 + timedelta(hours=3), late=late)
    assert _state_bytes(kept) == _state_bytes(read)
    rebuilt = IncrementalStats(POLICY_6H)
    rebuilt.advance(ledger, T0 + timedelta(hours=3))
    assert_same_bits(rebuilt.frames(None), kept.frames(None))


def test_a_late_record_before_the_stats_window_keeps_it():
    """Late, but matured before the stats window: the window's records are unchanged."""
    base = _frame(
        [_row(i, "a", T0 + timedelta(hours=h), 24, 0, 1.0 + h) for i, h in enumerate(range(-12, 3))]
    )
    late = _frame([_row(99, "a", T0 - timedelta(hours=20), 24, 0, 7.0)])
    inc = IncrementalStats(POLICY_6H)
    inc.advance(base, T0)
    inc.advance(base, T0 + timedelta(hours=1))
    assert inc._window is not None
    inc.advance(pl.concat([base, late]), T0 + timedelta(hours=2), late=late)
    assert inc._window is not None
    rebuilt = IncrementalStats(POLICY_6H)
    rebuilt.advance(pl.concat([base, late]), T0 + timedelta(hours=2))
    assert_same_bits(rebuilt.frames(None), inc.frames(None))


def test_a_rebuilds_chunks_keep_no_window_and_a_refused_one_is_tried_again_later():
    """``keep_window=False`` (a rebuild's chunks): none kept, the agents' rows read. A window
    found too long is read whole again only a window length later: a burst of records, then
    a quiet fleet whose window fits again."""
    rows, index = [], 0
    for hour in range(-48, 11):
        per_hour = 6 if hour < -30 else 1
        for k in range(per_hour):
            matured = T0 + timedelta(hours=hour, minutes=k)
            rows.append(_row(index, "a", matured, 24, 0, float(index % 5 - 2)))
            index += 1
    ledger = _frame(rows)
    chunked = IncrementalStats(POLICY_6H)
    for hour in range(-40, -30):
        chunked.advance(ledger, T0 + timedelta(hours=hour), keep_window=False)
        assert chunked._window is None
    inc = IncrementalStats(POLICY_6H)
    with mock.patch.object(incremental, "WINDOW_ROWS", 12):
        inc.advance(ledger, T0 - timedelta(hours=40))
        states = []
        for hour in range(-39, 11):
            inc.advance(ledger, T0 + timedelta(hours=hour))
            states.append(inc._window is not None)
    assert not any(states[:5]) and states[-1]  # refused in the burst, kept once it fits
    rebuilt = IncrementalStats(POLICY_6H)
    rebuilt.advance(ledger, T0 + timedelta(hours=10))
    assert_same_bits(rebuilt.frames(None), inc.frames(None))
