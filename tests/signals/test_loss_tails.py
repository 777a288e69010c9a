"""The engine's loss tails (issue #17): select's broken cut without reading the cadence history.

:class:`IncrementalStats` with ``loss_tails`` keeps each agent's latest records at the horizon
in a ring and gives ``recent_loss_z`` and ``fleet_vol_ratio``. The reference is
:meth:`CadenceIndex.loss_regime` on every record appended so far: after any sequence of appends
(late arrivals, ties, future records), cycles, reloads and journal replays the two must agree
to the bit. ``MAX_SCALE_RECORDS`` is made small so that rings wrap within a few dozen records.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meta_supervisor.ingest.records import RECORD_SCHEMA
from meta_supervisor.policy.model import Policy, Profile
from meta_supervisor.signals import broken, journal
from meta_supervisor.signals.cadence import CadenceIndex
from meta_supervisor.signals.incremental import (
    COLUMNS,
    IncrementalStats,
    StateMismatch,
    buffer_arrays,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SMALL_SCALE = 12  # MAX_SCALE_RECORDS in these tests: a ring of 12 + R + r − 1 slots

AGENTS = ["a", "b", "c", "d", "e", "f"]
# a burst: some agents each get `count` hourly records from as_of + `offset` hours (late, tied
# with an earlier burst, or in the future), PnL t(4)-like noise with zeros and blow-ups
burst_st = st.tuples(
    st.lists(st.sampled_from(AGENTS), min_size=1, max_size=6, unique=True),
    st.integers(1, 30),
    st.integers(-50, 3),
    st.integers(0, 2**16),
)
op_st = st.one_of(
    st.tuples(st.just("append"), burst_st),
    st.tuples(st.just("cycle"), st.integers(0, 30)),
    st.tuples(st.just("cycle"), st.integers(0, 3)),
    st.tuples(st.just("reload"), st.just(0)),
    st.tuples(st.just("journal"), st.just(0)),
)
policy_st = st.builds(
    Policy,
    profile=st.just(Profile.SELECT),
    lookback_hours=st.sampled_from([6.0, 24.0]),
    cadence_history_hours=st.sampled_from([30.0, 90.0, 400.0]),
    broken_memory_records=st.integers(1, 5),
    broken_consecutive=st.integers(1, 3),
    broken_regime_relative=st.booleans(),
)


def _frame(rows: list[dict]) -> pl.DataFrame:
    schema = {c: RECORD_SCHEMA[c] for c in COLUMNS}
    return pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)


def _record(index: int, agent: str, matured: datetime, horizon: int, realized: float) -> dict:
    return {
        "record_id": f"r{index:05d}",
        "ts": matured - timedelta(hours=horizon),
        "matured_at": matured,
        "agent": agent,
        "strategy": f"s{ord(agent[-1]) % 2}",
        "horizon_hours": horizon,
        "realized_pnl_bps": realized,
        "expected_sigma_bps": None,
        "gap_bps": realized / 2,
    }


def _burst(first: int, burst: tuple, now: datetime) -> pl.DataFrame:
    agents, count, offset, seed = burst
    rng = np.random.default_rng(seed)
    pnl = np.round(rng.standard_t(4, (len(agents), count)) * 10, 1)
    pnl[rng.random(pnl.shape) < 0.1] = 0.0
    pnl[rng.random(pnl.shape) < 0.05] = -250.0
    horizon = np.where(rng.random(pnl.shape) < 0.1, 1, 24)
    rows = [
        _record(
            first + k * count + i,
            agent,
            now + timedelta(hours=offset + i),
            int(horizon[k, i]),
            float(pnl[k, i]),
        )
        for k, agent in enumerate(agents)
        for i in range(count)
    ]
    return _frame(rows)


def _loss_columns(inc: IncrementalStats) -> tuple[list[str], np.ndarray, np.ndarray]:
    stats = inc.with_expected_records(inc.frames(None)[0])
    z = stats["recent_loss_z"].fill_null(np.nan).to_numpy()
    v = stats["fleet_vol_ratio"].fill_null(np.nan).to_numpy()
    return stats["agent"].to_list(), z, v


def _assert_as_the_ledger(inc: IncrementalStats, ledger: pl.DataFrame, as_of: datetime) -> None:
    names, z, v = _loss_columns(inc)
    index = CadenceIndex.from_records(ledger, inc.policy.horizon_hours)
    want_z, want_v = index.loss_regime(names, as_of, inc.policy)
    assert z.tobytes() == want_z.tobytes()
    assert v.tobytes() == np.full(len(names), want_v).tobytes()


def _assert_sorted_copies(inc: IncrementalStats) -> None:
    """Every sorted copy the engine keeps is its agent's earlier records (the full ring but
    its judged slots), sorted (up to the sign of a zero: 0.0 and −0.0 are one value to an
    order and to the cut), then +inf for its judged slots."""
    k = inc.loss_k
    judged = broken.judged_records(inc.policy)
    width = k - judged
    for agent in np.flatnonzero(inc._past_ok):
        head = int(inc._col("rg_head")[agent])
        ring = inc._ring[agent * k : (agent + 1) * k]
        earlier = ring[(head + np.arange(width)) % k]
        assert int(inc._col("rg_len")[agent]) == k
        assert inc._past[agent, :width].tolist() == np.sort(earlier).tolist(), inc.names[agent]
        assert (inc._past[agent, width:] == np.inf).all()


def _journaled(inc: IncrementalStats, before: dict[str, np.ndarray]) -> IncrementalStats:
    """``inc`` as the engine restores it: the image before, one journal entry replayed. The
    entry gives the ring by the slots the engine wrote since ``before`` (tracked from then);
    the image it replays to must be the one a compare of the whole ring gives, bit for bit
    (a write the engine did not track would be lost in the files)."""
    image_before, buffers = journal.split_buffers(before)
    slots = inc.take_ring_writes()
    assert slots is not None
    entry = journal.delta(
        image_before, inc.state_arrays(buffers=False, ring=False), [], inc.ring_rows(slots)
    )
    image, _ = journal.apply(image_before, buffers, journal.decode(journal.encode(entry)))
    compared = journal.delta(image_before, inc.state_arrays(buffers=False), [])
    want, _ = journal.apply(image_before, buffers, compared)
    assert sorted(image) == sorted(want)
    for name, values in want.items():
        assert image[name].dtype == values.dtype and image[name].tobytes() == values.tobytes()
    tails = [inc.tails[s].buffer for s in inc._strategies.names]
    return IncrementalStats.from_arrays(
        {**image, **buffer_arrays(tails)}, inc.policy, loss_tails=True
    )


@given(
    policy=policy_st,
    history=st.tuples(st.integers(0, 40), st.integers(0, 2**16)),
    ops=st.lists(op_st, min_size=1, max_size=24),
)
@settings(max_examples=80, deadline=None)
def test_loss_tails_give_the_ledgers_broken_cut_to_the_bit(policy, history, ops):
    """Starting from up to 40 hourly records of each of six agents, then any sequence."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(broken, "MAX_SCALE_RECORDS", SMALL_SCALE)
        as_of = T0
        inc = IncrementalStats(policy, loss_tails=True)
        assert inc.loss_k == SMALL_SCALE + policy.broken_memory_records + (
            policy.broken_consecutive - 1
        )
        hours, seed = history
        ledger = _burst(0, (AGENTS, hours, 1 - hours, seed), T0) if hours else _frame([])
        late: list[pl.DataFrame] = []
        index = ledger.height
        cycled = False
        for kind, arg in ops:
            if kind == "append":
                batch = _burst(index, arg, as_of)
                index += batch.height
                ledger = pl.concat([ledger, batch])
                late.append(batch)
            elif kind == "reload" and cycled:
                inc = IncrementalStats.from_bytes(inc.to_bytes(), policy, loss_tails=True)
            elif kind == "journal" and cycled:
                # the next cycle's change, replayed as the engine's journal replays it
                before = inc.state_arrays()
                inc.track_tails()
                as_of += timedelta(hours=1)
                inc.advance(ledger, as_of, late=pl.concat(late) if late else None)
                late = []
                inc = _journaled(inc, before)
                _assert_as_the_ledger(inc, ledger, as_of)
            elif kind == "cycle":
                as_of += timedelta(hours=arg)
                inc.advance(ledger, as_of, late=pl.concat(late) if late else None)
                late, cycled = [], True
                _assert_as_the_ledger(inc, ledger, as_of)
                _assert_sorted_copies(inc)
                rebuilt = IncrementalStats(policy, loss_tails=True)
                rebuilt.advance(ledger, as_of)
                assert [c.tobytes() for c in _loss_columns(rebuilt)[1:]] == [
                    c.tobytes() for c in _loss_columns(inc)[1:]
                ]


def _hourly(agents: int, hours: int) -> pl.DataFrame:
    return _burst(0, (AGENTS[:agents], hours, -hours + 1, 7), T0)


def test_a_late_record_relays_only_its_agents_tail():
    """A record arriving at or before its agent's last one cannot be appended to the ring: that
    agent alone is laid again from the ledger, and the cut is the ledger's."""
    policy = Policy(profile=Profile.SELECT)
    ledger = _hourly(6, 1200)  # more than a ring (1,030 records) per agent
    inc = IncrementalStats(policy, loss_tails=True)
    inc.advance(ledger, T0)
    assert inc.recomputed_tails == 0
    late = _frame([_record(99_999, "c", T0 - timedelta(hours=5.5), 24, -500.0)])
    ledger = pl.concat([ledger, late])
    inc.advance(ledger, T0 + timedelta(hours=1), late=late)
    assert inc.recomputed_tails == 1
    _assert_as_the_ledger(inc, ledger, T0 + timedelta(hours=1))


def test_a_relaid_tail_reaches_the_journal_whole():
    """A tail laid again from a short cadence history holds fewer records than its ring had:
    the slots it no longer fills are zeroed, and the journal entry built from the written
    slots must carry them too (the files would otherwise keep the old values there)."""
    policy = Policy(profile=Profile.SELECT, lookback_hours=6.0, cadence_history_hours=10.0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(broken, "MAX_SCALE_RECORDS", SMALL_SCALE)
        ledger = _burst(0, (AGENTS[:3], 80, -79, 3), T0)  # 80 hourly records: rings wrap
        # a ring holds more than the 10 hours of cadence history it is laid from again
        inc = IncrementalStats(policy, loss_tails=True)
        inc.advance(ledger, T0)
        before = inc.state_arrays()
        inc.track_tails()
        late = _frame([_record(99_999, "b", T0 - timedelta(hours=2.5), 24, -40.0)])
        ledger = pl.concat([ledger, late])
        inc.advance(ledger, T0 + timedelta(hours=1), late=late)
        assert inc.recomputed_tails == 1
        restored = _journaled(inc, before)
        want = inc.state_arrays()
        assert restored.state_arrays()["r_ring"].tobytes() == want["r_ring"].tobytes()


def test_a_new_agents_empty_ring_reaches_the_journal():
    """An agent first seen with a record at another horizon grows the ring by slots nothing
    writes: the journal entry built from the written slots still gives the ring's new length
    (a replay would refuse an entry whose length its rows do not cover)."""
    policy = Policy(profile=Profile.SELECT)
    ledger = _hourly(3, 30)
    inc = IncrementalStats(policy, loss_tails=True)
    inc.advance(ledger, T0)
    before = inc.state_arrays()
    inc.track_tails()
    other = {**_record(99_999, "z", T0 + timedelta(minutes=30), 1, 5.0), "strategy": "s9"}
    ledger = pl.concat([ledger, _frame([other])])
    inc.advance(ledger, T0 + timedelta(hours=1))
    assert "z" in inc.names
    restored = _journaled(inc, before)
    assert restored.state_arrays()["r_ring"].tobytes() == inc.state_arrays()["r_ring"].tobytes()


def test_a_state_without_loss_tails_is_refused_where_they_are_kept():
    """Loss tails are part of the state: a state saved without them does not serve an engine
    that keeps them (it is rebuilt), nor the other way round, whatever the policy."""
    policy = Policy(profile=Profile.SELECT)
    plain = IncrementalStats(policy)
    plain.advance(_hourly(3, 30), T0)
    with pytest.raises(StateMismatch, match="loss-tail"):
        IncrementalStats.from_bytes(plain.to_bytes(), policy, loss_tails=True)
    kept = IncrementalStats(policy, loss_tails=True)
    kept.advance(_hourly(3, 30), T0)
    with pytest.raises(StateMismatch, match="loss-tail"):
        IncrementalStats.from_bytes(kept.to_bytes(), policy)


@pytest.mark.parametrize(
    "edit",
    [
        lambda a: a.__setitem__("r_ring", a["r_ring"][:-1]),
        lambda a: a.__setitem__("a_rg_len", a["a_rg_len"] * 0),
        lambda a: a.__setitem__("a_rg_head", a["a_rg_head"] - 1_000_000),
    ],
    ids=["short ring", "fewer held than counted", "head outside the ring"],
)
def test_an_inconsistent_ring_is_refused(edit):
    """A ring that does not fit its counts is a StateMismatch (the state is rebuilt), not a
    cut computed from the wrong records."""
    policy = Policy(profile=Profile.SELECT)
    inc = IncrementalStats(policy, loss_tails=True)
    inc.advance(_hourly(3, 30), T0)
    arrays = inc.state_arrays()
    edit(arrays)
    with pytest.raises(StateMismatch, match="inconsistent state"):
        IncrementalStats.from_arrays(arrays, policy, loss_tails=True)


def test_an_agent_without_a_new_record_is_not_judged_again(monkeypatch):
    """In an hourly cycle most of a daily fleet has no new record: their cut is kept, only
    the agents whose tail (or count in the cadence history) changed are computed again."""
    from meta_supervisor.signals import incremental

    judged: list[int] = []
    real = incremental.fleet_loss_runs

    def spy(lengths, *args):
        judged.append(lengths.size)
        return real(lengths, *args)

    monkeypatch.setattr(incremental, "fleet_loss_runs", spy)
    policy = Policy(profile=Profile.SELECT)
    ledger = _hourly(6, 60)
    inc = IncrementalStats(policy, loss_tails=True)
    inc.advance(ledger, T0)
    before = _loss_columns(inc)
    more = _burst(10_000, (["b"], 1, 1, 3), T0)
    ledger = pl.concat([ledger, more])
    inc.advance(ledger, T0 + timedelta(hours=1))
    after = _loss_columns(inc)
    assert judged == [6, 1]
    _assert_as_the_ledger(inc, ledger, T0 + timedelta(hours=1))
    assert before[1][0] == after[1][0]  # agent a: kept


def test_a_full_rings_sorted_copy_is_swapped_not_sorted_again(monkeypatch):
    """The broken cut's earlier records are kept sorted (in memory) between cycles: an hourly
    cycle swaps each agent's entering records for its leaving ones (no sort from scratch,
    the cost of 1,000 agents × 1,024 records), and the cut stays the ledger's to the bit, a
    blow-up included; an agent given a late record is laid again and sorted again."""
    from meta_supervisor.signals import incremental

    sorted_afresh: list[int] = []
    real = incremental.sort_rows

    def spy(block, **kwargs):
        sorted_afresh.append(block.shape[0])
        return real(block, **kwargs)

    monkeypatch.setattr(incremental, "sort_rows", spy)
    # every ring full (1,030 records), all of them in the cadence history
    policy = Policy(profile=Profile.SELECT, cadence_history_hours=2_000.0)
    ledger = _hourly(6, 1_300)  # 9 in 10 at the policy horizon
    inc = IncrementalStats(policy, loss_tails=True)
    inc.advance(ledger, T0)
    _assert_as_the_ledger(inc, ledger, T0)
    assert sorted_afresh == [6]
    index = ledger.height
    for step in range(1, 9):  # two hours a cycle: two records per agent, after its last
        hour = 2 * step
        more = _burst(index, (AGENTS, 2, hour - 1, step), T0)
        if step >= 6:  # agent d blows up
            more = more.with_columns(
                pl.when(pl.col("agent") == "d")
                .then(pl.lit(-900.0))
                .otherwise(pl.col("realized_pnl_bps"))
                .alias("realized_pnl_bps")
            )
        index += more.height
        ledger = pl.concat([ledger, more])
        inc.advance(ledger, T0 + timedelta(hours=hour))
        _assert_as_the_ledger(inc, ledger, T0 + timedelta(hours=hour))
        _assert_sorted_copies(inc)
    assert sorted_afresh == [6]
    assert inc._past_ok[: len(AGENTS)].all()
    _, z, _ = _loss_columns(inc)
    assert z[AGENTS.index("d")] > policy.broken_loss_scale  # the blow-up is cut
    late = _frame([_record(99_999, "c", T0 + timedelta(hours=2.5), 24, -40.0)])
    ledger = pl.concat([ledger, late])
    inc.advance(ledger, T0 + timedelta(hours=17), late=late)
    _assert_as_the_ledger(inc, ledger, T0 + timedelta(hours=17))
    assert sorted_afresh == [6, 1]


def test_copies_owed_too_many_swaps_are_dropped_and_sorted_again(monkeypatch):
    """An engine advanced many times without being read owes its sorted copies a swap per
    advance: past ``MAX_PENDING_SWAPS`` it drops them (memory stays bounded) and the next read
    sorts them afresh, the cut still the ledger's."""
    from meta_supervisor.signals import incremental

    monkeypatch.setattr(incremental, "MAX_PENDING_SWAPS", 2)
    policy = Policy(profile=Profile.SELECT, cadence_history_hours=2_000.0)
    ledger = _hourly(3, 1_300)
    inc = IncrementalStats(policy, loss_tails=True)
    inc.advance(ledger, T0)
    _loss_columns(inc)
    assert inc._past_ok[:3].all()
    index = ledger.height
    for hour in range(1, 5):
        more = _burst(index, (AGENTS[:3], 1, hour, hour), T0)
        index += more.height
        ledger = pl.concat([ledger, more])
        inc.advance(ledger, T0 + timedelta(hours=hour))
        assert len(inc._swaps) <= 2
    assert not inc._past_ok[:3].any()
    _assert_as_the_ledger(inc, ledger, T0 + timedelta(hours=4))
    _assert_sorted_copies(inc)
    assert inc._past_ok[:3].all()


def test_sorted_copies_owe_several_swaps_grow_and_refuse_a_nan(monkeypatch):
    """The sorted copies' hard paths, each against the ledger's cut and the copies against the
    rings: three advances between two reads (three batches of swaps made in order, a count
    of P − 1 among them), a fleet that outgrows the copies' room while they are kept (70
    agents, room made for 64), and a NaN that enters an agent's earlier records (its swap
    refused: the agent is judged as any series with a NaN) and later leaves them (sorted
    again, kept again). Every swap owed is made (none refused) but the NaN's."""
    from meta_supervisor.signals import incremental

    refused: list[int] = []
    real = incremental.swap_values

    def spy(block, rows, removed, added):
        done = real(block, rows, removed, added)
        refused.append(int((~done[np.unique(rows)]).sum()))
        return done

    monkeypatch.setattr(incremental, "swap_values", spy)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(broken, "MAX_SCALE_RECORDS", SMALL_SCALE)
        policy = Policy(
            profile=Profile.SELECT,
            cadence_history_hours=2_000.0,
            broken_memory_records=2,
            broken_consecutive=2,
        )
        names = [f"a{i:02d}" for i in range(70)]
        first = names[:60]
        ledger = _burst(0, (first, 40, -39, 1), T0)
        inc = IncrementalStats(policy, loss_tails=True)
        inc.advance(ledger, T0)
        _loss_columns(inc)
        kept = inc._past_ok[: len(first)].copy()
        assert kept.sum() > 40  # most rings full (9 in 10 records at the horizon)
        room = inc._past_ok.size
        index, hour = ledger.height, 0
        nan_agent = first[int(np.flatnonzero(kept)[0])]
        plans = [
            (first[:30], 1),
            (first[10:50], SMALL_SCALE - 1),  # a count of P − 1
            (first, 2),
        ]
        for agents, count in plans:  # three advances, no read
            more = _burst(index, (agents, count, hour + 1, hour), T0)
            index, hour = index + more.height, hour + count
            ledger = pl.concat([ledger, more])
            inc.advance(ledger, T0 + timedelta(hours=hour))
        assert len(inc._swaps) == 3
        _assert_as_the_ledger(inc, ledger, T0 + timedelta(hours=hour))
        _assert_sorted_copies(inc)
        assert len(refused) == 3 and sum(refused) == 0
        # ten new agents: the fleet outgrows the copies' room while they are kept
        more = _burst(index, (names, 30, hour + 1, 99), T0)
        index, hour = index + more.height, hour + 30
        ledger = pl.concat([ledger, more])
        inc.advance(ledger, T0 + timedelta(hours=hour))
        _assert_as_the_ledger(inc, ledger, T0 + timedelta(hours=hour))
        _assert_sorted_copies(inc)
        assert inc._past_ok.size > room >= 64
        assert inc._past_ok[: len(names)].sum() > 50
        # a NaN enters one agent's judged records, then its earlier ones, then leaves
        row = inc._agents.index[nan_agent]
        bad = _record(index, nan_agent, T0 + timedelta(hours=hour + 1), 24, float("nan"))
        index += 1
        ledger = pl.concat([ledger, _frame([bad])])
        steps = [(1, True), (policy.broken_memory_records + 2, False), (SMALL_SCALE + 2, True)]
        for count, held in steps:
            more = _burst(index, ([nan_agent], count, hour + 2, index), T0)
            more = more.with_columns(pl.lit(24, dtype=pl.Int64).alias("horizon_hours"))
            index, hour = index + more.height, hour + 1 + count
            ledger = pl.concat([ledger, more])
            inc.advance(ledger, T0 + timedelta(hours=hour))
            _assert_as_the_ledger(inc, ledger, T0 + timedelta(hours=hour))
            _assert_sorted_copies(inc)
            assert bool(inc._past_ok[row]) is held
        assert sum(refused) == 1  # the NaN's swap
