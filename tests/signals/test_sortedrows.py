"""Rows kept sorted (issue #17): the broken cut's earlier records, swapped as records enter.

References: ``np.searchsorted`` of each row alone, and ``np.sort`` of each row's multiset after
the swap."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from meta_supervisor.signals.sortedrows import search_rows, sort_rows, swap_values

VALUES = [-math.inf, -1e308, -2.5, -0.0, 0.0, 1.0, 1.0, 2.5, 1e308, math.inf]


@settings(max_examples=100, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    rows=st.integers(1, 6),
    width=st.integers(0, 40),
    probes=st.integers(0, 30),
)
def test_search_rows_is_each_rows_own_searchsorted(seed, rows, width, probes):
    """Ties, ±0.0, infinities, an empty row width, probes outside every row; a block whole
    and the same rows as a view of a wider block (searched without a flat copy)."""
    rng = np.random.default_rng(seed)
    block = np.sort(rng.choice(VALUES, (rows, width)), axis=1)
    wider = np.concatenate([block, np.full((rows, 3), -7.0)], axis=1)
    owner = rng.integers(0, rows, probes)
    values = rng.choice([*VALUES, -5.0, 5.0, 1e300], probes)
    want = [np.searchsorted(block[r], v, side="left") for r, v in zip(owner, values, strict=True)]
    assert search_rows(block, owner, values).tolist() == want
    assert search_rows(wider[:, :width], owner, values).tolist() == want


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    rows=st.integers(1, 6),
    width=st.integers(1, 30),
    odd=st.sampled_from([None, "absent", "twice", "nan", "inf"]),
)
def test_swapped_rows_are_the_sorted_multisets(seed, rows, width, odd):
    """Each row loses some of its values (duplicates among them) and gains as many: it must
    then be the sorted multiset, bit for bit up to the sign of a zero (0.0 and −0.0 are one
    value to an order). A removed value a row does not hold (or holds fewer times), or an
    added value that is not finite, leaves the row as it was, marked not done."""
    rng = np.random.default_rng(seed)
    block = np.sort(np.round(rng.standard_normal((rows, width)) * 3) / 2, axis=1)
    block[rng.random(block.shape) < 0.1] = -0.0
    block.sort(axis=1)
    before = block.copy()
    owner, gone, new = [], [], []
    for r in range(rows):
        count = int(rng.integers(0, width + 1))
        picked = rng.choice(width, count, replace=False)
        owner += [r] * count
        gone += block[r, picked].tolist()
        new += (np.round(rng.standard_normal(count) * 3) / 2).tolist()
    owner_a, gone_a, new_a = np.array(owner, dtype=np.int64), np.array(gone), np.array(new)
    spoiled = -1
    if odd is not None and owner:
        q = int(rng.integers(0, len(owner)))
        spoiled = owner[q]
        if odd == "absent":
            gone_a[q] = 1e9
        elif odd == "twice":  # one more copy of a value than the row holds
            held = before[spoiled]
            value = gone_a[q]
            extra = int((held == value).sum()) - int((gone_a[owner_a == spoiled] == value).sum())
            owner_a = np.concatenate([owner_a, np.full(extra + 1, spoiled)])
            gone_a = np.concatenate([gone_a, np.full(extra + 1, value)])
            new_a = np.concatenate([new_a, np.zeros(extra + 1)])
        else:
            new_a[q] = math.nan if odd == "nan" else math.inf
    order = np.random.default_rng(seed + 1).permutation(owner_a.size)  # any order of pairs
    done = swap_values(block, owner_a[order], gone_a[order], new_a[order])
    for r in range(rows):
        if r == spoiled:
            assert not done[r]
            assert block[r].tobytes() == before[r].tobytes()
            continue
        assert done[r]
        mine = owner_a == r
        want = list(before[r])
        for value in gone_a[mine]:
            want.remove(value)
        want = np.sort(np.concatenate([want, new_a[mine]]))
        assert block[r].tolist() == want.tolist()


def test_sort_rows_in_threads_sorts_each_row(monkeypatch):
    """A block over threads.MIN_SIZE values is sorted in row ranges on two threads (stable or
    not): each row as np.sort of it alone (up to the sign of a zero, which two sorts may
    place differently)."""
    from meta_supervisor.signals import threads

    monkeypatch.setattr(threads, "cores", lambda: 2)
    rng = np.random.default_rng(3)
    block = np.round(rng.standard_normal((threads.MIN_SIZE // 500 + 1, 500)), 2)
    want = np.sort(block, axis=1)
    for stable in (False, True):
        work = block.copy()
        sort_rows(work, stable=stable)
        assert work.tolist() == want.tolist()
