"""signals.order.in_record_order equals a full sort on (matured_at, ts, record_id), and the tail
buffers' selection-based insert equals an insert followed by the refill's trim."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
from hypothesis import given
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from meta_supervisor.ingest.records import UTC_US
from meta_supervisor.signals.incremental import _insert_sorted, _Tail
from meta_supervisor.signals.measures import tail_count
from meta_supervisor.signals.order import ORDER, in_record_order

row_st = st.tuples(
    st.integers(0, 6),  # matured_at (µs): few values, so ties are common
    st.integers(0, 3),  # ts
    st.one_of(st.none(), st.sampled_from(["r1", "r10", "r2", "R", "é", "z"])),
)


def _frame(rows: list[tuple[int, int, str | None]]) -> pl.DataFrame:
    m, t, r = zip(*rows, strict=True) if rows else ((), (), ())
    return pl.DataFrame(
        {
            "matured_at": pl.Series(list(m), dtype=pl.Int64).cast(UTC_US),
            "ts": pl.Series(list(t), dtype=pl.Int64).cast(UTC_US),
            "record_id": pl.Series(list(r), dtype=pl.String),
            "row": pl.Series(range(len(rows)), dtype=pl.Int64),
        }
    )


@given(st.lists(row_st, max_size=40), st.booleans())
def test_in_record_order_is_the_full_sort(rows: list, presort: bool) -> None:
    # unique record ids (the ledger's key), so the full sort's order is unique
    rows = [(m, t, None if r is None else f"{r}-{i}") for i, (m, t, r) in enumerate(rows)]
    frame = _frame(rows)
    if presort:  # the common case: already in time order, ties in any order
        frame = frame.sort(["matured_at", "ts"], maintain_order=True)
    got = in_record_order(frame)
    assert_frame_equal(got, frame.sort(ORDER, maintain_order=True))


@given(
    st.lists(st.floats(-100, 100, allow_nan=False), max_size=60),
    st.lists(st.floats(-100, 100, allow_nan=False), min_size=1, max_size=9000),
    st.integers(0, 3),
)
def test_insert_sorted_equals_insert_then_trim(old: list, new: list, extra_n: int) -> None:
    buffer = np.sort(np.asarray(old, dtype=np.float64))
    values = np.asarray(new, dtype=np.float64)
    n = buffer.size + values.size + extra_n
    tail = _Tail(n=n, buffer=buffer.copy())
    _insert_sorted(tail, np.sort(values, kind="stable"))
    # the reference: insert everything, then the refill's rule
    ordered = np.sort(values, kind="stable")
    merged = np.insert(buffer, np.searchsorted(buffer, ordered), ordered)
    threshold = math.inf
    _, m = tail_count(n)
    if merged.size >= max(m, 1) and merged.size > 4 * m + 4096:
        keep = 2 * m + 1024
        threshold = float(merged[keep - 1])
        merged = merged[merged <= threshold]
    assert tail.threshold == threshold
    np.testing.assert_array_equal(tail.buffer, merged)
    assert tail.buffer.tobytes() == merged.tobytes()


@given(st.integers(0, 2**32 - 1), st.integers(6_000, 40_000), st.integers(0, 3_000))
def test_insert_sorted_trims_large_batches(seed: int, n_new: int, n_old: int) -> None:
    """Batches large enough for the refill's trim (a rebuild's), with repeats and signed zeros."""
    rng = np.random.default_rng(seed)
    buffer = np.sort(np.round(rng.normal(0, 20, n_old)))
    values = np.round(rng.normal(0, 20, n_new)) * rng.choice([-1.0, 1.0], n_new)
    values[rng.random(n_new) < 0.01] = -0.0
    n = buffer.size + values.size
    tail = _Tail(n=n, buffer=buffer.copy())
    _insert_sorted(tail, np.sort(values, kind="stable"))
    ordered = np.sort(values, kind="stable")
    merged = np.insert(buffer, np.searchsorted(buffer, ordered), ordered)
    _, m = tail_count(n)
    assert merged.size > 4 * m + 4096
    keep = 2 * m + 1024
    threshold = float(merged[keep - 1])
    merged = merged[merged <= threshold]
    assert tail.threshold == threshold
    assert tail.buffer.tobytes() == merged.tobytes()
