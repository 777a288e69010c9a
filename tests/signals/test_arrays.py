"""signals.arrays: the engine walked over NumPy columns holds the per-cycle path's bits.

The reference is the engine's own ``advance`` on the frame, cycle after cycle (itself tested
against full recomputes and rebuilds in test_incremental.py): after every cycle both states
must give the same frames, bit for bit, and hold the same numbers per agent and strategy.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_incremental import T0, _frame, _record, _telemetry, inexact_record_st

from helpers import assert_same_bits
from meta_supervisor.policy.model import Policy, Profile
from meta_supervisor.signals.arrays import ArrayStats, LedgerArrays
from meta_supervisor.signals.incremental import IncrementalStats, _merge_sorted

walk_policy_st = st.builds(
    Policy,
    profile=st.just(Profile.EVIDENCE),  # cadence off (0.0) is refused under select, the default
    lookback_hours=st.sampled_from([6.0, 10.0, 1000.0]),
    confidence_lookback_hours=st.sampled_from([8.0, 200.0]),
    cvar_lookback_hours=st.sampled_from([5.0, 12.0, 1000.0]),
    confidence_half_life_hours=st.sampled_from([1.0, 3.0, 72.0]),
    cvar_min_samples=st.sampled_from([1, 4]),
    min_records=st.sampled_from([0, 2]),
    cadence_history_hours=st.sampled_from([0.0, 24.0]),
)


def _bits(value: object) -> object:
    if isinstance(value, float | np.floating):
        return np.float64(value).tobytes()
    return value


def _per_name(inc: IncrementalStats) -> dict:
    """Every number of the state by agent and strategy name (the two engines number agents and
    strategies in different orders)."""
    if isinstance(inc, ArrayStats):
        inc.sync()
    columns = sorted(inc._cols)
    agents = {
        name: tuple(_bits(inc._col(c)[i]) for c in columns) for i, name in enumerate(inc.names)
    }
    w, wz = inc._conf_w.value(), inc._conf_wz.value()
    for i, name in enumerate(inc.names):
        agents[name] += (_bits(w[i]), _bits(wz[i]))
    gap, absolute = inc._tail_gap.value(), inc._tail_abs.value()
    tails = {
        name: (
            t.n,
            _bits(t.threshold),
            t.buffer.tobytes(),
            _bits(gap[inc._strategies.index[name]]),
            _bits(absolute[inc._strategies.index[name]]),
        )
        for name, t in inc.tails.items()
        if t.n or t.buffer.size
    }
    return {"agents": agents, "tails": tails, "as_of": inc.as_of_us, "anchor": inc.conf_anchor_us}


@given(
    policy=walk_policy_st,
    items=st.lists(inexact_record_st, min_size=1, max_size=40),
    steps=st.lists(st.integers(0, 30), min_size=1, max_size=6),
    runs=st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "z"]),
            st.integers(-50, 10),
            st.one_of(st.none(), st.booleans()),
        ),
        max_size=12,
    ),
)
@settings(max_examples=50, deadline=None)
def test_the_walk_holds_the_bits_of_the_per_cycle_path(policy, items, steps, runs):
    """Each cycle: the same frames (stats with expected records, confidence, tails) and the
    same state, to the bit, whatever the windows, ties, late-looking rows of the frame's
    order, horizons and values whose sums depend on the order of additions."""
    ledger = _frame([_record(i, item, T0) for i, item in enumerate(items)])
    ledger = ledger.sample(fraction=1.0, shuffle=True, seed=len(items))  # any row order
    # runs of some agents, and of one ("z") with no record
    telemetry = _telemetry([(a, h, e) for a, h, e in runs])
    arrays = LedgerArrays(ledger, policy.horizon_hours)
    walked, stepped = ArrayStats(policy), IncrementalStats(policy)
    as_of = T0 - timedelta(hours=32)
    for hours in steps:
        as_of += timedelta(hours=hours)
        walked.advance_to(arrays, as_of)
        stepped.advance(ledger, as_of)
        mine, theirs = walked.frames(None), stepped.frames(None)
        assert_same_bits(mine, theirs)
        assert_same_bits(
            (walked.with_expected_records(mine[0]),), (stepped.with_expected_records(theirs[0]),)
        )
        assert _per_name(walked) == _per_name(stepped)
        # the frames the backtest reads, built at once, with the telemetry's runs
        for seen in (None, telemetry):
            stats, conf, tails = stepped.frames(seen)
            want = (stepped.with_expected_records(stats), conf, tails)
            assert_same_bits(walked.cycle_frames(seen), want)


def test_a_walked_state_saves_the_record_ids_of_the_per_cycle_path():
    items = [("a", "s1", h, 24, float(h), 1.0, None) for h in (-5, -3, -3, 0)]
    items += [("b", "s2", -4, 1, 2.0, 3.0, 30.0)]
    ledger = _frame([_record(i, item, T0) for i, item in enumerate(items)])
    walked, stepped = ArrayStats(Policy()), IncrementalStats(Policy())
    arrays = LedgerArrays(ledger, 24)
    for hours in (-4, 0):
        walked.advance_to(arrays, T0 + timedelta(hours=hours))
        stepped.advance(ledger, T0 + timedelta(hours=hours))
    again = IncrementalStats.from_bytes(walked.to_bytes(), Policy())
    assert _per_name(again) == _per_name(stepped)
    by_name = dict(zip(walked.names, walked._col("last_rid"), strict=True))
    assert by_name["a"] == "r0003" and by_name["b"] is None


def test_a_walk_refuses_another_ledger_or_going_backwards():
    ledger = _frame([_record(0, ("a", "s1", 0, 24, 1.0, 1.0, None), T0)])
    walked = ArrayStats(Policy())
    walked.advance_to(LedgerArrays(ledger, 24), T0)
    with pytest.raises(ValueError, match="started on"):
        walked.advance_to(LedgerArrays(ledger, 24), T0 + timedelta(hours=1))
    with pytest.raises(ValueError, match="backwards"):
        walked.advance_to(LedgerArrays(ledger, 24), T0 - timedelta(hours=1))
    with pytest.raises(ValueError, match="horizon"):
        ArrayStats(Policy()).advance_to(LedgerArrays(ledger, 1), T0)


def test_a_ledger_the_walk_cannot_hold_is_refused():
    ledger = _frame([_record(0, ("a", "s1", 0, 24, 1.0, 1.0, None), T0)])
    with pytest.raises(ValueError, match="strategy"):
        LedgerArrays(ledger.with_columns(pl.lit(None, dtype=pl.String).alias("strategy")), 24)


@given(
    buffer=st.lists(st.integers(-5, 5).map(float), max_size=60),
    values=st.lists(st.integers(-6, 6).map(float), max_size=40),
)
def test_merge_sorted_is_np_insert_at_the_sorted_positions(buffer, values):
    """The tails' merge (slice copies for a few values, np.insert for many) gives np.insert's
    array: each value before the equal ones already there."""
    old, new = np.sort(np.array(buffer)), np.sort(np.array(values))
    want = np.insert(old, np.searchsorted(old, new), new)
    assert _merge_sorted(old, new).tobytes() == want.tobytes()


def test_the_ledgers_names_are_numbered_in_order_of_first_sight():
    """The walk's agent and strategy numbers follow first sight, not a hash order that may
    differ between runs (as the engine's codebook, ``test_incremental``)."""
    import numpy as np
    import polars as pl

    from meta_supervisor.signals.arrays import _codes

    rng = np.random.default_rng(1)
    names = [f"agent-{i}" for i in rng.permutation(5_000)]
    values = pl.Series("agent", [names[i] for i in rng.integers(0, 5_000, 200_000)])
    book, codes = _codes(values)
    assert book == list(dict.fromkeys(values.to_list()))
    assert [book[c] for c in codes[:1000]] == values.head(1000).to_list()
