"""Per-(agent, bucket) PnL sums: canonical bits whatever the order or batching of the records,
a canonical encoding that refuses what it did not write, and cells that equal a brute force."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meta_supervisor.policy.model import Policy, Profile
from meta_supervisor.signals.daysums import DaySums, bucket_of, bucket_us

T0 = datetime(2026, 3, 1, tzinfo=UTC)
POLICY = Policy(
    profile=Profile.EVIDENCE,
    lookback_hours=48.0,
    evidence_persistence_lags=3,
    evidence_persistence_step_hours=12.0,
)
WIDTH = bucket_us(POLICY)  # 12 h
LOW, HIGH = 0, 10**18

record_st = st.tuples(
    st.sampled_from(["a", "b", "c"]),
    st.sampled_from(["s1", "s2", None, ""]),
    st.integers(0, 6 * 12 * 60),  # matured, minutes after T0: several buckets, ties on purpose
    st.integers(0, 2),  # ts: minutes before matured (ties on time: the strategy decides)
    st.integers(-600, 600).map(lambda v: v / 10),  # tenths: sums depend on the order
    st.sampled_from([24, 24, 24, 4]),
)


def _frame(rows: list[tuple]) -> pl.DataFrame:
    matured = [T0 + timedelta(minutes=m) for _, _, m, _, _, _ in rows]
    return pl.DataFrame(
        {
            "agent": [r[0] for r in rows],
            "strategy": [r[1] for r in rows],
            "matured_at": matured,
            "ts": [m - timedelta(minutes=r[3]) for m, r in zip(matured, rows, strict=True)],
            "horizon_hours": [r[5] for r in rows],
            "realized_pnl_bps": [r[4] for r in rows],
        },
        schema={
            "agent": pl.String,
            "strategy": pl.String,
            "matured_at": pl.Datetime("us", "UTC"),
            "ts": pl.Datetime("us", "UTC"),
            "horizon_hours": pl.Int64,
            "realized_pnl_bps": pl.Float64,
        },
    )


def _us(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def test_the_bucket_width_divides_the_step_and_the_lookback():
    assert bucket_us(POLICY) == 12 * 3_600_000_000
    assert bucket_us(Policy()) == 24 * 3_600_000_000  # 24 h step, 168 h lookback: a day
    assert bucket_us(POLICY.model_copy(update={"lookback_hours": 30.0})) == 6 * 3_600_000_000
    # a record matured exactly at a boundary belongs to the bucket that ends there
    assert bucket_of(2 * WIDTH, WIDTH) == 1 and bucket_of(2 * WIDTH + 1, WIDTH) == 2


@given(st.lists(record_st, min_size=1, max_size=40), st.randoms(use_true_random=False))
@settings(max_examples=150)
def test_cells_are_the_same_bytes_whatever_the_order_and_batching_of_the_records(rows, rnd):
    """Issue #13's rule at the level of the cells: rows shuffled, and buckets recomputed one
    batch at a time (as late records arrive) from all their records, give the bytes of one
    build from everything."""
    _assert_order_free(rows, rnd)


#: PnL a store appended to directly may hold (ingest refuses the non-finite ones), and values
#: whose sum depends on the order they are added in
hostile_record_st = st.tuples(
    st.sampled_from(["a", "b"]),
    st.sampled_from(["s1", "s2"]),
    st.integers(0, 3 * 12 * 60).map(lambda m: m - m % 90),  # few instants: many ties
    st.integers(0, 1),
    st.one_of(
        st.sampled_from([math.nan, math.inf, -math.inf, 1e16, -1e16, 1.0, 0.0, -0.0]),
        st.integers(-600, 600).map(lambda v: v / 10),
    ),
    st.just(24),
)


@given(st.lists(hostile_record_st, min_size=1, max_size=40), st.randoms(use_true_random=False))
@settings(max_examples=150)
def test_stored_nan_and_inf_leave_the_cells_the_same_bytes_whatever_the_order(rows, rnd):
    """Regression (review): a NaN among records tied on time has no place under ``<``, so
    the sort of the tie left it, and the finite values beside it, in input order: another
    agent's sum moved with the order (0, 1 or 2 for 1e16, 1, −1e16, 1), and a NaN sum kept
    whichever NaN it met first. PnL now sorts in a total order and a NaN sum is one NaN."""
    _assert_order_free(rows, rnd)


def _assert_order_free(rows: list[tuple], rnd: Any) -> None:
    whole = DaySums.from_records(_frame(rows), POLICY, LOW, HIGH)
    shuffled = list(rows)
    rnd.shuffle(shuffled)
    assert DaySums.from_records(_frame(shuffled), POLICY, LOW, HIGH).to_bytes() == whole.to_bytes()
    # incrementally: the rows arrive in random batches; each batch's buckets are recomputed
    # from every row that has arrived so far
    arrived: list[tuple] = []
    sums = DaySums.empty(POLICY)
    while shuffled:
        k = rnd.randint(1, 6)
        batch, shuffled = shuffled[:k], shuffled[k:]
        arrived += batch
        frame = _frame(arrived)
        touched = {bucket_of(_us(T0 + timedelta(minutes=r[2])), WIDTH) for r in batch}
        fresh = [
            DaySums.from_records(frame, POLICY, b * WIDTH, (b + 1) * WIDTH).cells
            for b in sorted(touched)
        ]
        sums = sums.replaced(touched, DaySums.from_cells(24, WIDTH, pl.concat(fresh)))
    assert sums.to_bytes() == DaySums.from_records(_frame(arrived), POLICY, LOW, HIGH).to_bytes()
    assert DaySums.from_bytes(whole.to_bytes()).to_bytes() == whole.to_bytes()


@given(st.lists(record_st, min_size=1, max_size=40))
def test_each_cell_equals_a_brute_force_over_its_records(rows):
    """n, Σx (to 1e-12), Σ(x − mean)² (to 1e-9 relative) and the strategy of the latest record
    (largest (matured, ts, strategy)), counted one record at a time."""
    cells = DaySums.from_records(_frame(rows), POLICY, LOW, HIGH).cells
    got = {(r["agent"], r["bucket"]): r for r in cells.iter_rows(named=True)}
    want: dict[tuple[str, int], list[tuple]] = {}
    for r in rows:
        if r[5] != 24:
            continue
        b = bucket_of(_us(T0 + timedelta(minutes=r[2])), WIDTH)
        want.setdefault((r[0], b), []).append(r)
    assert got.keys() == want.keys()
    for key, members in want.items():
        xs = [r[4] for r in members]
        mean = math.fsum(xs) / len(xs)
        cell = got[key]
        assert cell["n"] == len(xs)
        assert cell["pnl_sum"] == pytest.approx(math.fsum(xs), abs=1e-12)
        m2 = math.fsum((x - mean) ** 2 for x in xs)
        assert cell["pnl_m2"] == pytest.approx(m2, rel=1e-9, abs=1e-9)
        latest = max(members, key=lambda r: (r[2], -r[3], r[1] or "unclassified"))
        assert cell["strategy"] == (latest[1] or "unclassified")


def test_the_encoding_refuses_what_it_did_not_write():
    sums = DaySums.from_records(
        _frame([("a", "s1", 5, 0, 1.5, 24), ("b", "s2", 900, 0, -2.0, 24)]), POLICY, LOW, HIGH
    )
    data = sums.to_bytes()
    assert DaySums.from_bytes(data).cells.equals(sums.cells)
    header_end = data.index(b"\n", data.index(b"\n") + 1) + 1
    bad = [
        b"",
        data[:-1],  # truncated
        data + b"\x00",  # trailing bytes
        b"x" + data[1:],  # not the magic
        data[:header_end] + bytes(len(data) - header_end),  # n = 0 in every cell
    ]
    # the two cells swapped: out of (agent, bucket) order
    flip = slice(None, None, -1)
    swapped = replace(sums, agent=sums.agent[flip], bucket=sums.bucket[flip], n=sums.n[flip])
    unused = replace(sums, agents=(*sums.agents, "zzz"))  # a name no cell uses
    bad += [swapped.to_bytes(), unused.to_bytes()]
    for blob in bad:
        with pytest.raises(ValueError):
            DaySums.from_bytes(blob)


def test_a_large_common_level_keeps_its_spread():
    """Σx² − (Σx)²/n would cancel a spread of 1 under a level of 1e9 (its rounding is ~1e4);
    the cells' two-pass spread matches the exact one."""
    noise = np.random.default_rng(1).normal(0, 1, 60)
    rows = [("a", "s1", k * 30, 0, float(1e9 + x), 24) for k, x in enumerate(noise)]
    cells = DaySums.from_records(_frame(rows), POLICY, LOW, HIGH).cells
    groups: dict[int, list[float]] = {}
    for r in rows:
        groups.setdefault(bucket_of(_us(T0 + timedelta(minutes=r[2])), WIDTH), []).append(r[4])
    assert cells["bucket"].to_list() == sorted(groups)
    for got, xs in zip(cells["pnl_m2"].to_list(), [groups[b] for b in sorted(groups)], strict=True):
        mean = math.fsum(xs) / len(xs)
        assert got == pytest.approx(math.fsum((x - mean) ** 2 for x in xs), rel=1e-6)


@given(st.lists(record_st, min_size=1, max_size=30), st.randoms(use_true_random=False))
@settings(max_examples=30)
def test_tiny_buckets_number_cells_by_a_sort_and_stay_canonical(rows, rnd):
    """A lookback that shares only 360 µs with the step: too many (agent, bucket) slots for a
    dense grid, so the cells are numbered by a sort; the same bytes whatever the row order."""
    policy = POLICY.model_copy(update={"lookback_hours": 48.0000001})
    width = bucket_us(policy)
    assert width == 360
    whole = DaySums.from_records(_frame(rows), policy, LOW, HIGH)
    shuffled = list(rows)
    rnd.shuffle(shuffled)
    assert DaySums.from_records(_frame(shuffled), policy, LOW, HIGH).to_bytes() == whole.to_bytes()
    keys = {(r[0], bucket_of(_us(T0 + timedelta(minutes=r[2])), width)) for r in rows if r[5] == 24}
    assert set(zip(whole.cells["agent"], whole.cells["bucket"], strict=True)) == keys


def _encodings(rows: list[tuple]) -> set[bytes]:
    """The cells' bytes over every order of ``rows``."""
    return {
        DaySums.from_records(_frame(list(perm)), POLICY, LOW, HIGH).to_bytes()
        for perm in itertools.permutations(rows)
    }


def test_a_stored_nan_leaves_the_cells_the_same_bytes_whatever_the_order():
    """Regression (review): records tied on time are ordered by (strategy, PnL), and a NaN
    has no place under ``<``: the sort left it, and the finite values beside it, in input
    order, so agent b's sum of 1e16, 1, −1e16, 1 came out 0, 1 or 2 with agent a's NaN tied
    in. Two NaNs of other bits (two stored NaNs; or one and x86's default NaN of inf − inf)
    compare equal, and a sum keeps the first it meets: every NaN sum is stored as one NaN."""
    tied = [("a", "s1", 30, 0, math.nan, 24)] + [
        ("b", "s1", 30, 0, v, 24) for v in (1e16, 1.0, -1e16, 1.0)
    ]
    assert len(_encodings(tied)) == 1
    other_nan = float(np.frombuffer(np.uint64(0xFFF8000000000001).tobytes(), np.float64)[0])
    nans = [("a", "s1", 30, 0, v, 24) for v in (math.nan, other_nan, 1.0, 2.5)]
    assert len(_encodings(nans)) == 1
