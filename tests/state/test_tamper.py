"""Tamper evidence: any edit, deletion, insertion or reordering of a past history entry is
caught by ``verify`` (the function and the CLI, exit 1), which names the entry's line and as_of.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from legacykit import legacy_append
from meta_supervisor.allocate.core import allocate
from meta_supervisor.allocate.decision import canonical_json
from meta_supervisor.cli.main import app
from meta_supervisor.state.files import append_history, history_tail, verify_history

N = 5
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def history(tmp_path):
    path = tmp_path / "history.jsonl"
    for k in range(N):
        stats = {
            f"agent-{i}": {"pnl_sum_bps": 50.0 + 10 * i + k, "hit_rate": 0.5, "strategy": "s"}
            for i in range(4)
        }
        append_history(path, allocate(stats, as_of=T0 + timedelta(hours=k)))
    assert verify_history(path)[0]
    return path


def _lines(path):
    return path.read_bytes().splitlines(keepends=True)


def _as_of(line: bytes) -> str:
    return json.loads(line)["decision"]["as_of"]


def _assert_names(path, line_no: int, as_of: str):
    ok, message = verify_history(path)
    assert not ok
    assert f"line {line_no}," in message and f"as_of {as_of}" in message, message
    result = CliRunner().invoke(app, ["verify", "--state-dir", str(path.parent)])
    assert result.exit_code == 1
    assert f"line {line_no}" in " ".join(result.output.split())


EDITS = {
    "seq": lambda e: e.update(seq=e["seq"] + 1),
    "prev_hash": lambda e: e.update(prev_hash="f" * 64),
    "hash": lambda e: e.update(hash="0" * 64),
    "weight": lambda e: e["decision"]["weights"].update({"agent-0": 0.123}),
    "cash": lambda e: e["decision"].update(cash=e["decision"]["cash"] + 0.125),
    "explanations_ref": lambda e: e["decision"]["explanations"].update(sha256="0" * 64),
    "explanations_file": lambda e: e["decision"]["explanations"].update(
        file="explanations/00000001.json"
    ),
    "fingerprint": lambda e: e["decision"]["provenance"].update(inputs_fingerprint="x"),
    "extra_key": lambda e: e.update(note="harmless?"),
}


@pytest.mark.parametrize("index", range(N))
@pytest.mark.parametrize("field", sorted(EDITS))
def test_editing_any_field_of_any_entry_is_caught(history, index, field):
    lines = _lines(history)
    entry = json.loads(lines[index])
    EDITS[field](entry)
    if json.loads(lines[index]) == entry:  # entry 1 already names file 1
        entry["decision"]["explanations"]["file"] = "explanations/00000002.json"
    lines[index] = canonical_json(entry).encode() + b"\n"
    history.write_bytes(b"".join(lines))
    _assert_names(history, index + 1, entry["decision"]["as_of"])


@pytest.mark.parametrize("index", range(N))
def test_editing_as_of_or_bytes_is_caught(history, index):
    lines = _lines(history)
    original = lines[index]
    lines[index] = original.replace(b"2026-01-01T", b"2025-01-01T", 1)
    history.write_bytes(b"".join(lines))
    _assert_names(history, index + 1, _as_of(lines[index]))
    lines[index] = original.replace(b'{"decision":{', b'{"decision": {', 1)  # same content
    history.write_bytes(b"".join(lines))
    _assert_names(history, index + 1, _as_of(original))
    lines[index] = original[: len(original) // 2] + b"\n"  # a committed line cut short
    history.write_bytes(b"".join(lines))
    # the record's as_of is in the first half (its explanations are in their file): still named
    _assert_names(history, index + 1, _as_of(original))
    lines[index] = original[:20] + b"\n"
    history.write_bytes(b"".join(lines))
    _assert_names(history, index + 1, "unknown")  # as_of is after the cut: not readable


@pytest.mark.parametrize("index", range(N - 1))
def test_deleting_a_past_entry_is_caught(history, index):
    lines = _lines(history)
    del lines[index]
    history.write_bytes(b"".join(lines))
    _assert_names(history, index + 1, _as_of(lines[index]))


@pytest.mark.parametrize("index", range(N))
def test_inserting_an_entry_is_caught(history, index):
    lines = _lines(history)
    copy = lines[(index + 2) % N]
    lines.insert(index, copy)
    history.write_bytes(b"".join(lines))
    _assert_names(history, index + 1, _as_of(copy))


@pytest.mark.parametrize(("i", "j"), [(0, 1), (1, 3), (2, 4), (0, 4)])
def test_reordering_entries_is_caught(history, i, j):
    lines = _lines(history)
    lines[i], lines[j] = lines[j], lines[i]
    history.write_bytes(b"".join(lines))
    _assert_names(history, i + 1, _as_of(lines[i]))


def test_intact_history_verifies_through_the_cli(history):
    result = CliRunner().invoke(app, ["verify", "--state-dir", str(history.parent)])
    assert result.exit_code == 0, result.output
    assert f"{N} entries" in result.output


def _with_current(history, index: int = -1):
    """Write decision.json as a cycle would: the decision of entry ``index``."""
    entry = json.loads(_lines(history)[index])
    (history.parent / "decision.json").write_text(canonical_json(entry["decision"], indent=2))


def test_cutting_off_the_newest_entries_is_caught_against_decision_json(history):
    _with_current(history)
    assert CliRunner().invoke(app, ["verify", "--state-dir", str(history.parent)]).exit_code == 0
    lines = _lines(history)
    history.write_bytes(b"".join(lines[:-2]))  # a valid chain, two entries short
    assert verify_history(history)[0]
    result = CliRunner().invoke(app, ["verify", "--state-dir", str(history.parent)])
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "cut off" in text and _as_of(lines[-1]) in text and _as_of(lines[-3]) in text


def test_decision_json_one_entry_behind_is_an_interrupted_cycle_not_tampering(history):
    _with_current(history, -2)
    result = CliRunner().invoke(app, ["verify", "--state-dir", str(history.parent)])
    assert result.exit_code == 0
    assert "one entry behind" in " ".join(result.output.split())


def _explanations_file(history, index: int):
    ref = json.loads(_lines(history)[index])["decision"]["explanations"]
    return history.parent / ref["file"]


FILE_EDITS = {
    "summary": lambda data: data.replace(b'"summary":"', b'"summary":"all good ', 1),
    "weight": lambda data: data.replace(b'"weight":0', b'"weight":1', 1),
    "whitespace": lambda data: data.replace(b'{"agent-0":', b'{ "agent-0":', 1),
    "truncated": lambda data: data[: len(data) // 2],
    "emptied": lambda data: b"",
}


@pytest.mark.parametrize("index", range(N))
@pytest.mark.parametrize("edit", sorted(FILE_EDITS))
def test_editing_any_explanations_file_is_caught(history, index, edit):
    """The explanations live in a file per entry; the entry's hash covers the file's SHA-256."""
    path = _explanations_file(history, index)
    data = path.read_bytes()
    edited = FILE_EDITS[edit](data)
    assert edited != data
    path.write_bytes(edited)
    _assert_names(history, index + 1, _as_of(_lines(history)[index]))
    message = verify_history(history)[1]
    assert path.name in message and "edited" in message, message


@pytest.mark.parametrize("index", range(N))
def test_a_missing_or_swapped_explanations_file_is_caught(history, index):
    path = _explanations_file(history, index)
    other = _explanations_file(history, (index + 1) % N)
    original = path.read_bytes()
    path.write_bytes(other.read_bytes())  # another entry's (valid) explanations
    _assert_names(history, index + 1, _as_of(_lines(history)[index]))
    path.unlink()
    _assert_names(history, index + 1, _as_of(_lines(history)[index]))
    assert "missing" in verify_history(history)[1]
    path.write_bytes(original)
    assert verify_history(history)[0]


def test_explanations_are_kept_once_and_read_back_as_they_were_decided(tmp_path):
    """The line holds the record (no ``agents``); reading the entry gives the decision with
    its explanations exactly as the decision had them."""
    path = tmp_path / "history.jsonl"
    stats = {f"agent-{i}": {"pnl_sum_bps": 50.0 + i, "hit_rate": 0.5} for i in range(3)}
    decision = allocate(stats, as_of=T0)
    append_history(path, decision)
    line = json.loads(_lines(path)[0])
    assert "agents" not in line["decision"]
    assert b"summary" not in path.read_bytes()
    (entry,) = history_tail(path)
    assert entry.decision == decision.to_dict()
    assert canonical_json(entry.decision) == canonical_json(decision.to_dict())


def test_a_legacy_history_with_inline_explanations_still_verifies_and_is_caught(tmp_path):
    """Entries written before explanations moved out (inline ``agents``) verify, are extended
    by the new writer, and an edit of an inline explanation is still caught."""
    path = tmp_path / "history.jsonl"
    decisions = []
    for k in range(3):
        stats = {f"agent-{i}": {"pnl_sum_bps": 50.0 + i + k, "hit_rate": 0.5} for i in range(3)}
        decisions.append(allocate(stats, as_of=T0 + timedelta(hours=k)))
    legacy_append(path, decisions[0])
    legacy_append(path, decisions[1])
    append_history(path, decisions[2])
    ok, message = verify_history(path)
    assert ok and "3 entries" in message, message
    entries = history_tail(path, lambda e: False)
    assert [e.decision for e in entries] == [d.to_dict() for d in decisions]
    assert "agents" in entries[0].record and "explanations" in entries[2].record
    lines = _lines(path)
    entry = json.loads(lines[1])
    entry["decision"]["agents"]["agent-1"]["summary"] = "all good"
    lines[1] = canonical_json(entry).encode() + b"\n"
    path.write_bytes(b"".join(lines))
    _assert_names(path, 2, entry["decision"]["as_of"])
