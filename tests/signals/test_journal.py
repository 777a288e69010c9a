"""journal: an engine state's change as an entry; replaying entries gives the state bit for bit.

The reference is the engine's own :meth:`IncrementalStats.state_arrays` after each cycle: the
previous image and tail buffers with the cycle's entry applied must equal it array by array
(type, shape and bytes), and a state restored from the replayed arrays must produce the same
frames and keep advancing like the original.
"""

from __future__ import annotations

import io
import zipfile
from datetime import timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_incremental import (
    T0,
    _frame,
    _record,
    anchor_policy_st,
    inexact_op_st,
    replay,
)

from helpers import assert_same_bits
from meta_supervisor.policy.model import Policy
from meta_supervisor.signals import journal
from meta_supervisor.signals.incremental import IncrementalStats, buffer_arrays, read_npz


def _same_arrays(mine: dict[str, np.ndarray], theirs: dict[str, np.ndarray]) -> None:
    assert mine.keys() == theirs.keys()
    for name, values in theirs.items():
        assert mine[name].dtype == values.dtype, name
        assert mine[name].shape == values.shape, name
        assert mine[name].tobytes() == values.tobytes(), name


def _replayed(image: dict, buffers: dict) -> dict[str, np.ndarray]:
    names = [str(s) for s in image["t_names"]]
    return {**image, **buffer_arrays([buffers.get(s, np.empty(0)) for s in names])}


def _check_cycles(policy: Policy, cycles) -> int:
    """Journal every cycle of ``cycles`` (states yielded after each advance) and check the
    replay against the state; returns the number of entries."""
    image = buffers = None
    count = 0
    for inc, *_ in cycles:
        if image is None:
            image, buffers = journal.split_buffers(inc.state_arrays())
            inc.track_tails()
            continue
        log = inc.take_tail_log()
        assert log is not None
        entry = journal.decode(journal.encode(journal.delta(image, inc.state_arrays(False), log)))
        image, buffers = journal.apply(image, buffers, entry)
        count += 1
        _same_arrays(_replayed(image, buffers), inc.state_arrays())
        restored = IncrementalStats.from_arrays(_replayed(image, buffers), policy)
        assert_same_bits(restored.frames(None), inc.frames(None))
    return count


@given(policy=anchor_policy_st, ops=st.lists(inexact_op_st, min_size=1, max_size=14))
@settings(max_examples=60, deadline=None)
def test_replaying_the_entries_gives_the_state_bit_for_bit(policy, ops):
    _check_cycles(policy, replay(policy, ops))


def test_trimmed_and_refilled_tail_buffers_replay_bit_for_bit():
    """Buffers past ``4m + 4096`` gaps are trimmed (in an insert and in the refill), and a
    strategy that lost its window is emptied: the logged operations replay all of them."""
    rng = np.random.default_rng(7)
    policy = Policy(cvar_lookback_hours=30.0, lookback_hours=30.0, confidence_lookback_hours=30.0)
    rows = []
    for i in range(12_000):
        hours = -40 + 60 * i / 12_000
        gap = float(np.round(rng.normal(0, 20), 1)) if i % 97 else 0.0
        strategy = "s1" if i % 5 else "s2"
        rows.append(_record(i, (f"a{i % 7}", strategy, hours, 24, gap, gap, 30.0), T0))
    ledger = _frame(rows).sort("matured_at")

    def cycles():
        inc = IncrementalStats(policy)
        for hours in (-10, -4, 0, 1, 7, 8, 14, 19, 25, 40, 80):
            inc.advance(ledger, T0 + timedelta(hours=hours))
            yield (inc,)

    assert _check_cycles(policy, cycles()) == 10


def test_an_entry_holds_only_what_changed():
    """One agent's new record changes that agent's rows and its strategy's tail, not the
    others: the entry holds rows, not whole columns, and the buffer's changes, not the buffer."""
    policy = Policy(lookback_hours=1000.0, cvar_lookback_hours=1000.0)
    items = [
        (f"a{k}", "s1", -h, 24, float(h % 9 - 4), float(h % 7 - 3), 30.0)
        for k in range(40)
        for h in range(1, 30)
    ]
    ledger = _frame([_record(i, item, T0) for i, item in enumerate(items)])
    inc = IncrementalStats(policy)
    inc.advance(ledger, T0)
    image, _ = journal.split_buffers(inc.state_arrays())
    inc.track_tails()
    late = _frame([_record(len(items), ("a3", "s1", 1, 24, -9.0, -50.0, 30.0), T0)])
    inc.advance(pl.concat([ledger, late]), T0 + timedelta(hours=1))
    entry = journal.delta(image, inc.state_arrays(False), inc.take_tail_log() or [])
    assert "i.a_n" in entry and entry["i.a_n"].tolist() == [inc.names.index("a3")]
    assert not any(k.startswith("w.a_") for k in entry)
    assert entry["t.values"].size < 10


@given(policy=anchor_policy_st, ops=st.lists(inexact_op_st, min_size=1, max_size=8))
@settings(max_examples=15, deadline=None)
def test_the_unchecked_npz_reader_reads_what_np_load_reads(policy, ops):
    """The engine reads its base (after holding it against engine.json's SHA-256) without
    the zip CRC check, as views: the same arrays, type, shape and bytes, as ``np.load``."""
    for inc, *_ in replay(policy, ops):
        data = inc.to_bytes()
        _same_arrays(read_npz(data, check=False), read_npz(data))
        again = IncrementalStats.from_bytes(data, policy, verified=True)
        assert_same_bits(again.frames(None), inc.frames(None))


def test_the_unchecked_npz_reader_refuses_a_header_longer_than_its_member():
    """A member whose header claims more values than it holds is refused, not read into the
    next member's bytes."""
    out = io.BytesIO()
    np.savez(out, first=np.arange(5.0), second=np.arange(7.0))
    data = out.getvalue()
    assert data.count(b"'shape': (5,)") == 1
    with pytest.raises(ValueError, match="shorter than its header"):
        read_npz(data.replace(b"'shape': (5,)", b"'shape': (9,)"), check=False)
    with pytest.raises(zipfile.BadZipFile):
        read_npz(data[: len(data) // 2], check=False)
