"""A state directory written before explanations moved out (each history entry and
``decision.json`` with the explanations inline) is read, shown and verified exactly as one
written now: every view of every past decision gives the same numbers and texts, only the
chain hashes differ (they hash what each line holds)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from legacykit import legacy_append, legacy_current
from meta_supervisor.allocate.core import allocate
from meta_supervisor.allocate.decision import Decision, canonical_json
from meta_supervisor.cli.main import app
from meta_supervisor.state.files import append_history, read_history

T0 = datetime(2026, 1, 1, tzinfo=UTC)
AGENTS = [f"agent-{i}" for i in range(5)]


def _decisions() -> list[Decision]:
    out: list[Decision] = []
    previous = None
    for k in range(4):
        stats = {
            name: {"pnl_sum_bps": 40.0 + 15 * i - 9 * k * (i % 2), "hit_rate": 0.5 + 0.05 * i}
            for i, name in enumerate(AGENTS)
        }
        decision = allocate(stats, as_of=T0 + timedelta(hours=k), previous=previous)
        previous = decision.weights
        out.append(decision)
    return out


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> tuple[Path, Path]:
    """The same four decisions recorded by the old writer (``legacy``) and the new (``now``)."""
    legacy = tmp_path_factory.mktemp("legacy")
    now = tmp_path_factory.mktemp("now")
    decisions = _decisions()
    for decision in decisions:
        legacy_append(legacy / "history.jsonl", decision)
        append_history(now / "history.jsonl", decision)
    legacy_current(legacy, decisions[-1])
    record = read_history(now / "history.jsonl")[-1].record
    (now / "decision.json").write_text(canonical_json(record, indent=2))
    (now / "allocation.json").write_text(canonical_json(decisions[-1].weights, indent=2))
    return legacy, now


def _run(state: Path, *args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--state-dir", str(state)])
    assert result.exit_code == 0, result.output
    text = result.output
    for entry in read_history(state / "history.jsonl"):  # the one legitimate difference
        text = text.replace(entry.hash, f"<hash of entry {entry.seq}>")
    return text


VIEWS = [
    ("explain", "--json"),
    ("explain", "agent-1", "--json"),
    ("explain", "--format", "md"),
    ("explain", "agent-3"),
    *[("explain", "--seq", str(k), "--json") for k in range(1, 5)],
    *[("explain", "agent-2", "--seq", str(k), "--format", "md") for k in range(1, 5)],
    ("explain", "--at", "2026-01-01T01:30:00Z", "--json"),
    ("history", "--json"),
    ("history", "--agent", "agent-1", "--json"),
    ("diff", "--json"),
]


@pytest.mark.parametrize("view", VIEWS, ids=[" ".join(v) for v in VIEWS])
def test_every_view_of_a_legacy_state_is_as_of_the_same_decisions_now(dirs, view):
    legacy, now = dirs
    assert _run(legacy, *view) == _run(now, *view)


def test_legacy_entries_resolve_to_themselves_and_new_ones_keep_explanations_once(dirs):
    legacy, now = dirs
    old, new = read_history(legacy / "history.jsonl"), read_history(now / "history.jsonl")
    assert [e.decision for e in old] == [e.decision for e in new]
    assert all(e.decision is e.record for e in old)
    assert all("agents" not in e.record for e in new)
    assert len((now / "history.jsonl").read_bytes()) < len((legacy / "history.jsonl").read_bytes())
    assert "agents" not in json.loads((now / "decision.json").read_text())


def test_both_verify(dirs):
    for state in dirs:
        assert "4 entries, chain intact" in _run(state, "verify")


def test_a_cycle_extends_a_legacy_state_and_explanations_move_out_from_then_on(tmp_path):
    """The first cycle after the upgrade builds on the inline entries, then writes its own
    explanations file; verify holds the mixed chain, readers give both kinds back."""
    from meta_supervisor.config import Paths
    from meta_supervisor.cycle.run import commit

    decisions = _decisions()
    for decision in decisions[:2]:
        legacy_append(tmp_path / "history.jsonl", decision)
    legacy_current(tmp_path, decisions[1])
    paths = Paths(records=tmp_path / "none", telemetry=tmp_path / "none", state_dir=tmp_path)
    commit(decisions[2], paths)
    entries = read_history(paths.history)
    assert [e.decision for e in entries] == [d.to_dict() for d in decisions[:3]]
    assert (tmp_path / "explanations" / "00000003.json").exists()
    assert "3 entries, chain intact; decision.json is the last entry" in _run(tmp_path, "verify")


def test_an_edited_explanations_file_is_refused_by_every_reader(dirs, tmp_path):
    import shutil

    _, now = dirs
    state = tmp_path / "state"
    shutil.copytree(now, state)
    target = state / "explanations" / "00000002.json"
    target.write_bytes(target.read_bytes().replace(b'"summary":"', b'"summary":"fine ', 1))
    for args in (("explain", "--seq", "2"), ("verify",), ("history", "--agent", "agent-1")):
        result = CliRunner().invoke(app, [*args, "--state-dir", str(state)])
        assert result.exit_code == 1, (args, result.output)
        assert "00000002.json" in " ".join(result.output.split()), result.output
    # the other decisions are still shown
    assert (
        CliRunner().invoke(app, ["explain", "--seq", "3", "--state-dir", str(state)]).exit_code == 0
    )
