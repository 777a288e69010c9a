"""incremental.IncrementalStats: any sequence of appends and cycles equals a full recompute.

The reference is the product's own full computation (stats.agent_stats,
confidence.confidence_multipliers, tails.strategy_tails, each checked elsewhere against brute
force) on everything appended so far; the decision from either set of inputs must be the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from helpers import assert_same_bits
from meta_supervisor.allocate.core import allocate
from meta_supervisor.allocate.inputs import Confidence, Tail
from meta_supervisor.ingest.records import RECORD_SCHEMA, TELEMETRY_SCHEMA
from meta_supervisor.policy.model import Policy
from meta_supervisor.signals.cadence import CadenceIndex
from meta_supervisor.signals.confidence import confidence_multipliers
from meta_supervisor.signals.incremental import (
    COLUMNS,
    STATE_VERSION,
    IncrementalStats,
    SortedLedger,
    StateMismatch,
    _groups,
    _remove_sorted,
    frames_at,
)
from meta_supervisor.signals.stats import agent_stats
from meta_supervisor.signals.tails import strategy_tails

T0 = datetime(2026, 1, 1, tzinfo=UTC)

record_st = st.tuples(
    st.sampled_from(["a", "b", "c", "d"]),
    st.sampled_from(["s1", "s2"]),
    st.integers(-30, 12),  # matured at T0 + this many hours (+ the op's offset): ties on purpose
    st.sampled_from([1, 24]),
    st.integers(-40, 40).map(float),
    st.integers(-20, 20).map(float),
    st.one_of(st.none(), st.sampled_from([0.0, 10.0, 30.0])),
)
# an op is either ("append", records) or ("cycle", hours to move as_of forward)
op_st = st.one_of(
    st.tuples(st.just("append"), st.lists(record_st, min_size=1, max_size=8)),
    st.tuples(st.just("cycle"), st.integers(0, 9)),
    st.tuples(st.just("reload"), st.just(0)),
)
policy_st = st.builds(
    Policy,
    lookback_hours=st.sampled_from([6.0, 10.0, 1000.0]),
    confidence_lookback_hours=st.sampled_from([8.0, 1000.0]),
    cvar_lookback_hours=st.sampled_from([5.0, 12.0, 1000.0]),
    confidence_half_life_hours=st.sampled_from([3.0, 72.0]),
    cvar_min_samples=st.sampled_from([1, 4]),
    min_records=st.sampled_from([0, 2]),
)


def _frame(rows: list[dict]) -> pl.DataFrame:
    schema = {c: RECORD_SCHEMA[c] for c in COLUMNS}
    return pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)


def _record(index: int, item: tuple, now: datetime) -> dict:
    agent, strategy, hours, horizon, realized, gap, sigma = item
    matured = now + timedelta(hours=hours)
    return {
        "record_id": f"r{index:04d}",
        "ts": matured - timedelta(hours=horizon),
        "matured_at": matured,
        "agent": agent,
        "strategy": strategy,
        "horizon_hours": horizon,
        "realized_pnl_bps": realized,
        "expected_sigma_bps": sigma,
        "gap_bps": gap,
    }


def _decision_inputs(stats: pl.DataFrame, conf: pl.DataFrame, tails: pl.DataFrame):
    agents = {row["agent"]: row for row in stats.iter_rows(named=True)}
    confidence = {
        r["agent"]: Confidence(r["confidence"], r["n_evidence"], r["evidence_weight"])
        for r in conf.iter_rows(named=True)
    }
    tail_map = {
        r["strategy"]: Tail(r["strategy"], r["n"], r["gap_cvar95_bps"], r["gap_cvar95_used_bps"])
        for r in tails.iter_rows(named=True)
    }
    return agents, confidence, tail_map


def _assert_same(inc: IncrementalStats, ledger: pl.DataFrame, as_of: datetime, policy: Policy):
    stats, conf, tails = inc.frames(None)
    # the expected records the engine keeps are the cadence index's, to the bit
    index = CadenceIndex.from_records(ledger, policy.horizon_hours)
    want = index.expected_records(stats["agent"].to_list(), as_of, policy)
    got = inc.with_expected_records(stats)["expected_records"].fill_null(np.nan).to_numpy()
    assert got.tobytes() == want.tobytes()
    full_stats = agent_stats(ledger, None, as_of, policy)
    full_conf = confidence_multipliers(ledger, as_of, policy)
    full_tails = strategy_tails(ledger, as_of, policy)
    # equal up to float reassociation (sums updated in another order than a fresh sum)
    assert_frame_equal(stats, full_stats, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)
    assert_frame_equal(conf, full_conf, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)
    assert_frame_equal(tails, full_tails, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)
    mine = _decision_inputs(stats, conf, tails)
    full = _decision_inputs(full_stats, full_conf, full_tails)
    ours = allocate(mine[0], as_of=as_of, policy=policy, confidence=mine[1], tails=mine[2])
    theirs = allocate(full[0], as_of=as_of, policy=policy, confidence=full[1], tails=full[2])
    assert ours.weights.keys() == theirs.weights.keys()
    for agent, weight in theirs.weights.items():
        # weights are rounded down to 1e-6: a last-bit difference may move one unit
        assert ours.weights[agent] == pytest.approx(weight, abs=1.01e-6)


@given(policy=policy_st, ops=st.lists(op_st, min_size=1, max_size=12))
@settings(max_examples=40)
def test_any_sequence_of_appends_and_cycles_matches_a_full_recompute(policy, ops, tmp_path_factory):
    as_of = T0
    inc = IncrementalStats(policy)
    scanned = IncrementalStats(policy)  # the same, reading a LazyFrame (as from the store)
    ledger = _frame([])
    late: list[dict] = []
    index = 0
    cycled = False
    for kind, arg in ops:
        if kind == "append":
            rows = []
            for item in arg:
                rows.append(_record(index, item, as_of))
                index += 1
            batch = _frame(rows)
            ledger = pl.concat([ledger, batch])
            late.append(batch)
        elif kind == "reload" and cycled:
            path = tmp_path_factory.mktemp("state") / "incremental.npz"
            path.write_bytes(inc.to_bytes())
            inc = IncrementalStats.from_bytes(path.read_bytes(), policy, path)
        elif kind == "cycle":
            as_of += timedelta(hours=arg)
            batch = pl.concat(late) if late else None
            inc.advance(ledger, as_of, late=batch)
            scanned.advance(ledger.lazy(), as_of, late=batch)
            late, cycled = [], True
            _assert_same(inc, ledger, as_of, policy)
            for mine, theirs in zip(scanned.frames(None), inc.frames(None), strict=True):
                assert_frame_equal(mine, theirs, check_exact=False, rel_tol=1e-12, abs_tol=1e-12)


def _some_state(policy: Policy) -> tuple[IncrementalStats, pl.DataFrame]:
    rows = [
        _record(i, (agent, strategy, -h, 24, float(h % 7 - 3), float(h % 5 - 2), sigma), T0)
        for i, (agent, strategy, h, sigma) in enumerate(
            (a, s, h, None if h % 3 else 30.0)
            for a, s in (("a", "s1"), ("b", "s2"), ("c", "s1"))
            for h in range(1, 40)
        )
    ]
    ledger = _frame(rows)
    inc = IncrementalStats(policy)
    inc.advance(ledger, T0 - timedelta(hours=20))
    inc.advance(ledger, T0)
    return inc, ledger


def test_save_and_load_round_trip_gives_identical_frames(tmp_path):
    policy = Policy(lookback_hours=30.0, cvar_lookback_hours=24.0, cvar_min_samples=4)
    inc, ledger = _some_state(policy)
    path = tmp_path / "engine.state"
    path.write_bytes(inc.to_bytes())
    again = IncrementalStats.from_bytes(path.read_bytes(), policy, path)
    assert again.as_of_us == inc.as_of_us
    for mine, theirs in zip(again.frames(None), inc.frames(None), strict=True):
        assert_frame_equal(mine, theirs, check_exact=True)
    # and it keeps advancing like the original
    inc.advance(ledger, T0 + timedelta(hours=5))
    again.advance(ledger, T0 + timedelta(hours=5))
    for mine, theirs in zip(again.frames(None), inc.frames(None), strict=True):
        assert_frame_equal(mine, theirs, check_exact=True)
    assert not list(tmp_path.glob(".*.tmp"))  # the temp file was renamed


def test_a_restored_state_owns_its_tails_whatever_memory_it_came_from():
    """The tail buffers of a state restored from a ``bytes`` object are views of it (nobody
    can change those bytes), and read-only; from memory the caller can still write, read-only
    or not (a read-only view of its array, a read-only memoryview of a bytearray), they are
    copied: the caller's later writes never reach the engine's tails."""
    policy = Policy(lookback_hours=30.0, cvar_lookback_hours=24.0, cvar_min_samples=4)
    inc, _ = _some_state(policy)
    want = inc.frames(None)[2]
    arrays = inc.state_arrays()
    mine = arrays["t_buffer"]
    view = mine.view()
    view.flags.writeable = False
    from_view = IncrementalStats.from_arrays({**arrays, "t_buffer": view}, policy)
    raw = bytearray(inc.to_bytes())
    from_memory = IncrementalStats.from_bytes(
        memoryview(raw).toreadonly(),
        policy,
        verified=True,  # type: ignore[arg-type]
    )
    from_bytes = IncrementalStats.from_bytes(bytes(raw), policy, verified=True)
    mine[:] = -1e9
    raw[:] = bytes(len(raw))
    for restored in (from_view, from_memory, from_bytes):
        assert_frame_equal(restored.frames(None)[2], want, check_exact=True)
    buffers = [t.buffer for t in from_bytes.tails.values() if t.buffer.size]
    assert buffers and not any(b.flags.writeable for b in buffers)
    with pytest.raises(ValueError, match="read-only"):
        buffers[0][0] = 0.0


def test_restored_read_only_tails_take_every_buffer_path_as_the_live_engine(monkeypatch):
    """Restored tail buffers are read-only views (no tail operation writes in place): an engine
    restored from its bytes before every cycle takes every buffer path (small inserts, the
    selection insert past ``4m + 4096``, removals, trims, a strategy that drains and empties)
    to the same bits as one never restored. (A review drove these paths; they run here on
    read-only buffers, where an in-place write would raise.)"""
    from meta_supervisor.signals import incremental
    from meta_supervisor.signals.measures import tail_count

    large: list[bool] = []
    real = incremental._insert_sorted

    def spy(tail, values):
        if not tail.buffer.flags.writeable:
            large.append(tail.buffer.size + values.size > 4 * tail_count(tail.n)[1] + 4096)
        return real(tail, values)

    monkeypatch.setattr(incremental, "_insert_sorted", spy)
    rng = np.random.default_rng(5)
    n = 120_000
    hours = -40 + 80 * np.arange(n) / n
    gap = np.round(-hours * 50 + rng.normal(0, 20, n), 1)  # later gaps enter below the cut
    strategy = np.where(np.arange(n) % 5, "s1", "s2")
    strategy[(hours > 10) & (strategy == "s2")] = "s1"  # s2 stops: its window drains, empties
    matured = [T0 + timedelta(hours=float(h)) for h in hours]
    ledger = pl.DataFrame(
        {
            "record_id": [f"r{i:06d}" for i in range(n)],
            "ts": [m - timedelta(hours=24) for m in matured],
            "matured_at": matured,
            "agent": [f"a{i % 7}" for i in range(n)],
            "strategy": strategy,
            "horizon_hours": np.full(n, 24),
            "realized_pnl_bps": gap,
            "expected_sigma_bps": np.full(n, 30.0),
            "gap_bps": gap,
        },
        schema={c: RECORD_SCHEMA[c] for c in COLUMNS},
    )
    policy = Policy(cvar_lookback_hours=30.0, lookback_hours=30.0, confidence_lookback_hours=30.0)
    live = IncrementalStats(policy)
    restored = IncrementalStats(policy)
    for hour in [*range(-10, 45), 80]:
        at = T0 + timedelta(hours=hour)
        live.advance(ledger, at)
        restored = IncrementalStats.from_bytes(restored.to_bytes(), policy, verified=True)
        restored.advance(ledger, at)
        for mine, theirs in zip(restored.frames(None), live.frames(None), strict=True):
            assert_frame_equal(mine, theirs, check_exact=True)
        assert restored.to_bytes() == live.to_bytes()
    assert any(large) and not all(large)


def test_a_state_for_another_policy_is_refused_naming_the_file(tmp_path):
    inc, _ = _some_state(Policy())
    path = tmp_path / "engine.state"
    path.write_bytes(inc.to_bytes())
    with pytest.raises(StateMismatch, match="another policy") as err:
        IncrementalStats.from_bytes(path.read_bytes(), Policy(lookback_hours=10.0), path)
    assert str(path) in str(err.value) and err.value.path == str(path)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_a_corrupt_state_file_is_one_clear_exception(tmp_path, damage):
    inc, _ = _some_state(Policy())
    path = tmp_path / "engine.state"
    path.write_bytes(inc.to_bytes())
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"{not a state}" * 10)
    else:
        path.write_bytes(b"")
    with pytest.raises(StateMismatch) as err:
        IncrementalStats.from_bytes(path.read_bytes(), Policy(), path)
    assert str(path) in str(err.value) and "rebuild" in str(err.value)


def test_a_state_of_another_version_is_refused(tmp_path, monkeypatch):
    import meta_supervisor.signals.incremental as module

    inc, _ = _some_state(Policy())
    monkeypatch.setattr(module, "STATE_VERSION", STATE_VERSION + 1)
    path = tmp_path / "engine.state"
    path.write_bytes(inc.to_bytes())
    monkeypatch.setattr(module, "STATE_VERSION", STATE_VERSION)
    with pytest.raises(StateMismatch, match=f"version {STATE_VERSION + 1}, expected"):
        IncrementalStats.from_bytes(path.read_bytes(), Policy(), path)


def _telemetry(rows: list[tuple[str, int, bool | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {"ts": T0 + timedelta(hours=h), "agent": a, "run_id": f"u{i}", "is_error": e}
            for i, (a, h, e) in enumerate(rows)
        ],
        schema=TELEMETRY_SCHEMA,
    )


@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "z"]),  # z: telemetry only
            st.integers(-50, 10),
            st.one_of(st.none(), st.booleans()),
        ),
        max_size=25,
    ),
    steps=st.lists(st.integers(0, 12), min_size=1, max_size=4),
)
@settings(max_examples=30)
def test_error_rate_from_telemetry_matches_agent_stats(rows, steps):
    policy = Policy(lookback_hours=24.0)
    ledger = _frame(
        [_record(i, (a, "s1", -h, 24, 1.0, 0.0, None), T0) for i, (a, h) in enumerate(
            [("a", 3), ("b", 30), ("a", 1)])]
    )  # fmt: skip
    shuffled = _telemetry(rows).sample(fraction=1.0, shuffle=True, seed=1)
    inc = IncrementalStats(policy)
    as_of = T0 - timedelta(hours=12)
    for step in steps:
        as_of += timedelta(hours=step)
        inc.advance(ledger, as_of)
        for telemetry in (shuffled, shuffled.lazy()):  # the cached index and the lazy path
            expected = agent_stats(ledger, telemetry, as_of, policy)
            assert_frame_equal(inc.frames(telemetry)[0], expected)


@given(
    hours=st.lists(st.integers(-20, 20), max_size=30),
    low=st.integers(-25, 25),
    width=st.integers(0, 30),
)
def test_sorted_ledger_ranges_are_the_filtered_rows(hours, low, width):
    ledger = _frame(
        [_record(i, ("a", "s1", h, 24, float(i), 0.0, None), T0) for i, h in enumerate(hours)]
    )
    sorted_ledger = SortedLedger(ledger)
    us = lambda h: int((T0 + timedelta(hours=h)).timestamp() * 1e6)  # noqa: E731
    got = sorted_ledger.range(us(low), us(low + width))
    lo, hi = T0 + timedelta(hours=low), T0 + timedelta(hours=low + width)
    want = ledger.filter((pl.col("matured_at") > lo) & (pl.col("matured_at") <= hi))
    assert sorted(got["record_id"].to_list()) == sorted(want["record_id"].to_list())
    assert got["matured_at"].is_sorted()


@given(
    st.lists(st.integers(0, 40), max_size=60)
    | st.lists(st.sampled_from([0, 3, 2**16 - 1, 2**16, 70_001]), max_size=60)
)
def test_groups_are_each_codes_rows_in_their_order(values):
    """Rows grouped by code (16-bit codes and wider): every code once, ascending, its rows in
    their order, against a plain loop."""
    codes = np.array(values, dtype=np.int64)
    order, groups, starts, lengths = _groups(codes)
    want = {c: [i for i, v in enumerate(values) if v == c] for c in sorted(set(values))}
    assert groups.tolist() == list(want)
    got = [order[a : a + n].tolist() for a, n in zip(starts, lengths, strict=True)]
    assert got == list(want.values())


def test_the_grouping_memo_lives_for_one_advance_and_tells_arrays_apart():
    """Within an advance the same array is grouped once, a different array (same length)
    is grouped on its own; after it, nothing is held."""
    engine = IncrementalStats(Policy())
    seen = []

    def spy_advance(ledger, as_of, late):
        a = np.array([2, 0, 2, 1], dtype=np.int64)
        b = np.array([0, 2, 1, 1], dtype=np.int64)
        seen.append(engine._grouped(a))
        seen.append(engine._grouped(a))
        seen.append(engine._grouped(b))
        seen.append(engine._grouped(a[::-1]))
        seen.append(engine._grouped(a[:2]))
        seen.append(engine._grouped(a[::2]))  # the same memory and shape, other strides

    engine._advance = spy_advance
    engine.advance(pl.DataFrame(), datetime(2026, 1, 1, tzinfo=UTC))
    assert seen[0] is seen[1] and engine._memo is None
    assert [g[0].tolist() for g in seen[2:]] == [[0, 2, 3, 1], [2, 0, 1, 3], [1, 0], [0, 1]]


def test_as_of_going_backwards_is_refused():
    inc = IncrementalStats(Policy())
    inc.advance(_frame([]), T0)
    with pytest.raises(ValueError, match="backwards"):
        inc.advance(_frame([]), T0 - timedelta(hours=1))


@given(st.lists(st.integers(-5, 5), max_size=30), st.data())
def test_remove_sorted_removes_one_occurrence_each(values, data):
    buffer = np.sort(np.array(values, dtype=float))
    remove = data.draw(
        st.lists(st.sampled_from(values), max_size=len(values)) if values else st.just([])
    )
    expected = list(buffer)
    for v in remove:
        if v in expected:
            expected.remove(v)
    got = _remove_sorted(buffer, np.sort(np.array(remove, dtype=float)))
    assert list(got) == expected


def test_a_late_record_before_an_agents_last_one_redoes_its_drawdown():
    # +10 then -10 gives drawdown -10; a late -20 that matured before both makes the path
    # -20, -10, -20: drawdown -20, which appending it at the end (+10, -10, -20: -30) would miss.
    first = _frame(
        [
            _record(0, ("a", "s1", -3, 1, 10.0, 0.0, None), T0),
            _record(1, ("a", "s1", -2, 1, -10.0, 0.0, None), T0),
        ]
    )
    policy = Policy(lookback_hours=1000.0, horizon_hours=1)
    inc = IncrementalStats(policy)
    inc.advance(first, T0)
    late = _frame([_record(2, ("a", "s1", -5, 1, -20.0, 0.0, None), T0)])
    ledger = pl.concat([first, late])
    inc.advance(ledger, T0 + timedelta(hours=1), late=late)
    stats, _, _ = inc.frames(None)
    assert stats["max_drawdown_bps"].to_list() == [-20.0]
    _assert_same(inc, ledger, T0 + timedelta(hours=1), policy)


def replay(policy: Policy, ops: list) -> Iterator[tuple[IncrementalStats, pl.DataFrame, datetime]]:
    """Run ``ops`` (``("append", records)`` stamped from the current as_of, or ``("cycle",
    hours)``) on a state advanced cycle by cycle; after each cycle yield ``(state, every record
    appended so far, as_of)``. The records appended since the last cycle are its late ones."""
    as_of = T0
    inc = IncrementalStats(policy)
    ledger, late, index = _frame([]), [], 0
    for kind, arg in ops:
        if kind == "append":
            batch = _frame([_record(index + i, item, as_of) for i, item in enumerate(arg)])
            index += len(arg)
            ledger = pl.concat([ledger, batch])
            late.append(batch)
            continue
        as_of += timedelta(hours=arg)
        inc.advance(ledger, as_of, late=pl.concat(late) if late else None)
        late = []
        yield inc, ledger, as_of


# values whose sums depend on the order of the additions (unlike the small integers above)
inexact_st = st.one_of(
    st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False),
    st.sampled_from([0.1, -0.7, 1e-9, 3.3333333333333335, 1e15, -1e15, 2.5e-300]),
)
inexact_record_st = st.tuples(
    st.sampled_from(["a", "b", "c"]),
    st.sampled_from(["s1", "s2"]),
    st.integers(-30, 12),
    st.sampled_from([1, 24]),
    inexact_st,
    inexact_st,
    st.one_of(st.none(), st.sampled_from([0.0, 0.3, 30.0])),
)
inexact_op_st = st.one_of(
    st.tuples(st.just("append"), st.lists(inexact_record_st, min_size=1, max_size=8)),
    st.tuples(st.just("cycle"), st.integers(0, 80)),
)


# half-lives of 1 h move the confidence anchor every 24 h: cycles cross it often
anchor_policy_st = st.builds(
    Policy,
    lookback_hours=st.sampled_from([6.0, 10.0, 1000.0]),
    confidence_lookback_hours=st.sampled_from([8.0, 200.0]),
    cvar_lookback_hours=st.sampled_from([5.0, 12.0, 1000.0]),
    confidence_half_life_hours=st.sampled_from([1.0, 3.0, 72.0]),
    cvar_min_samples=st.sampled_from([1, 4]),
)


@given(
    policy=anchor_policy_st,
    ops=st.lists(inexact_op_st, min_size=1, max_size=14),
    chunks=st.integers(1, 3),
)
@settings(max_examples=60, deadline=None)
def test_a_rebuild_gives_the_same_bits_as_the_incremental_path(policy, ops, chunks):
    """Issue #13: a state rebuilt from the ledger (in one go, or in time chunks as the store
    rebuild does) holds exactly the frames of the state advanced cycle by cycle, late records
    and all, so a cycle after a lost engine state records the same bytes."""
    for inc, ledger, as_of in replay(policy, ops):
        rebuilt = IncrementalStats(policy)
        first = as_of - timedelta(hours=3 * (chunks - 1))
        for step in range(chunks):
            rebuilt.advance(ledger.lazy(), first + timedelta(hours=3 * step))
        assert_same_bits(rebuilt.frames(None), inc.frames(None))
        # and the cadence counts behind expected_records
        mine, theirs = rebuilt.frames(None)[0], inc.frames(None)[0]
        assert_same_bits(
            (rebuilt.with_expected_records(mine),), (inc.with_expected_records(theirs),)
        )


@given(
    policy=policy_st,
    items=st.lists(inexact_record_st, min_size=1, max_size=40),
    chunk_rows=st.integers(1, 7),
)
@settings(max_examples=40, deadline=None)
def test_frames_at_gives_the_same_bits_in_any_chunking_and_keeps_stale_agents(
    policy, items, chunk_rows
):
    """The cycle's frames from raw records (frames_at: the engine over the longest window in
    time chunks, plus each stale agent's latest record) are one engine advanced at once, and
    hold every agent that ever reported, as agent_stats does."""
    as_of = T0 + timedelta(hours=6)
    ledger = _frame([_record(i, item, T0) for i, item in enumerate(items)])
    once = IncrementalStats(policy)
    once.advance(ledger, as_of)
    chunked = frames_at(
        ledger.sample(fraction=1.0, shuffle=True, seed=1), None, as_of, policy, chunk_rows
    )
    stats, conf, tails = once.frames(None)
    assert_same_bits(chunked, (once.with_expected_records(stats), conf, tails))
    visible = ledger.filter(pl.col("matured_at") <= as_of)["agent"].unique().sort()
    assert chunked[0]["agent"].to_list() == visible.to_list()


@given(
    policy=anchor_policy_st,
    ops=st.lists(inexact_op_st, min_size=1, max_size=14),
)
@settings(max_examples=40, deadline=None)
def test_confidence_and_tails_beside_the_agent_sums_give_the_same_bits(policy, ops):
    """A large advance updates the confidence sums and the tails in a thread while the agent
    sums are updated (``threads.parts``): forced here for every advance, on any machine, the
    state must be that of one thread, array by array and bit for bit (its journal's tail log
    too), cycle after cycle, late records and agents new to a leaving window included."""
    from unittest import mock

    from meta_supervisor.signals import threads

    def states(parallel: bool) -> list[tuple[dict, list]]:
        with (
            mock.patch.object(threads, "MIN_SIZE", 0 if parallel else 1 << 62),
            mock.patch.object(threads, "cores", lambda: 2),
        ):
            out = []
            for inc, _, _ in replay(policy, ops):
                inc.track_tails()
                out.append((inc.state_arrays(), inc.frames(None)))
            return out

    for (mine, frames_mine), (theirs, frames_theirs) in zip(
        states(True), states(False), strict=True
    ):
        assert sorted(mine) == sorted(theirs)
        for name, values in theirs.items():
            assert mine[name].dtype == values.dtype and mine[name].tobytes() == values.tobytes()
        assert_same_bits(frames_mine, frames_theirs)


def test_names_are_numbered_in_order_of_first_sight():
    """The codebook numbers the agents (and strategies) of a frame in order of first sight, as
    it says: the state's arrays are laid out in that order, so a number that depends on a hash
    order (polars' plain ``unique``, which differed between runs with two threads at work)
    gives another state's bytes for the same records (regression: 5,000 names over 200,000
    rows were numbered in hash order)."""
    from meta_supervisor.signals.incremental import _Codebook

    rng = np.random.default_rng(0)
    names = [f"agent-{i}" for i in rng.permutation(5_000)]
    values = pl.Series("agent", [names[i] for i in rng.integers(0, 5_000, 200_000)])
    book = _Codebook()
    codes = book.codes(values)
    assert book.names == list(dict.fromkeys(values.to_list()))
    assert [book.names[c] for c in codes[:1000]] == values.head(1000).to_list()
