"""state.history_tail: the newest entries, read backwards, equal the end of the full read.

A cycle reads only the tail of the history, so its cost does not grow with the history; these
tests hold the tail to :func:`meta_supervisor.state.files.read_history` (the whole-file reader).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meta_supervisor.allocate.core import allocate
from meta_supervisor.allocate.decision import iso
from meta_supervisor.state.files import append_history, history_tail, read_history, verify_history

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STATS = {"a": {"pnl_sum_bps": 10.0, "n_records": 30}, "b": {"pnl_sum_bps": 4.0, "n_records": 30}}


def _history(path: Path, hours: list[int]) -> None:
    for h in hours:
        append_history(path, allocate(STATS, as_of=T0 + timedelta(hours=h)))


@given(
    steps=st.lists(st.integers(0, 3), min_size=0, max_size=8),
    cut=st.integers(-1, 12),
    partial=st.booleans(),
)
@settings(max_examples=30)
def test_tail_is_the_suffix_of_the_full_read(tmp_path_factory, steps, cut, partial):
    path = tmp_path_factory.mktemp("h") / "history.jsonl"
    hours = [sum(steps[: k + 1]) for k in range(len(steps))]
    _history(path, hours)
    if partial:  # a kill mid-append leaves an unterminated line: never part of the history
        with open(path, "ab") as handle:
            handle.write(b'{"seq": 99, "prev')
    full = read_history(path)
    boundary = T0 + timedelta(hours=cut)
    tail = history_tail(path, lambda e: e.decision["as_of"] < iso(boundary))
    older = [k for k, e in enumerate(full) if e.decision["as_of"] < iso(boundary)]
    assert tail == full[older[-1] if older else 0 :]
    assert history_tail(path) == full[-1:]


def test_append_after_a_partial_line_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    _history(path, [0, 1])
    with open(path, "ab") as handle:
        handle.write(b'{"seq": 3, "prev_hash": "trunc')
    _history(path, [2])
    entries = read_history(path)
    assert [e.seq for e in entries] == [1, 2, 3]
    assert verify_history(path)[0]


def test_a_corrupt_line_in_the_tail_is_named_by_its_line(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    _history(path, [0, 1, 2])
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join([lines[0], b"not json\n", lines[2]]))
    with pytest.raises(ValueError, match="line 2"):
        history_tail(path, lambda e: False)


def test_missing_or_empty_history_has_no_tail(tmp_path: Path) -> None:
    assert history_tail(tmp_path / "absent.jsonl") == []
    (tmp_path / "empty.jsonl").write_bytes(b"")
    assert history_tail(tmp_path / "empty.jsonl") == []
