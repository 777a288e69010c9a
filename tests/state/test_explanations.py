"""Explanations kept once (issue 17): the file and the record round-trip to the decision, for
any fleet; a record naming a file outside ``explanations/`` is refused without opening it."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import fleet_strategies
from meta_supervisor.allocate.core import allocate
from meta_supervisor.allocate.decision import canonical_json
from meta_supervisor.policy.model import Policy, Profile
from meta_supervisor.state import explanations
from meta_supervisor.state.explanations import ExplanationsError
from meta_supervisor.state.files import append_history, history_tail, verify_history

T0 = datetime(2026, 1, 1, tzinfo=UTC)
FLEET, _, PREVIOUS = fleet_strategies([f"a{i}" for i in range(8)], 0.3)


@given(FLEET, PREVIOUS, st.sampled_from([Profile.SEED, Profile.EVIDENCE]))
def test_any_decision_reads_back_as_it_was_decided(fleet, previous, profile):
    """What every reader gets (the entry's ``decision``) is the decision's JSON form, byte for
    byte once canonical, and the line holds none of its explanations."""
    decision = allocate(fleet, as_of=T0, policy=Policy(profile=profile), previous=previous)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.jsonl"
        append_history(path, decision)
        (entry,) = history_tail(path)
        assert canonical_json(entry.decision) == canonical_json(decision.to_dict())
        assert "agents" not in entry.record
        assert entry.record["explanations"]["agents"] == len(decision.agents)
        assert verify_history(path)[0]


@pytest.mark.parametrize(
    "name",
    ["../history.jsonl", "/etc/passwd", "explanations/../../x.json", "explanations/1.json", 7],
)
def test_a_record_naming_a_file_outside_explanations_is_refused(tmp_path, name):
    outside = tmp_path / "x.json"
    outside.write_text("{}")
    record = {"as_of": "2026-01-01T00:00:00Z", "explanations": {"file": name, "sha256": "0" * 64}}
    with pytest.raises(ExplanationsError, match="names no valid file"):
        explanations.resolve(tmp_path / "state", record)
    assert explanations.check(tmp_path / "state", record) is not None


def test_inline_records_resolve_to_themselves(tmp_path):
    record = {"as_of": "2026-01-01T00:00:00Z", "agents": {"a": {"weight": 0.1}}}
    assert explanations.resolve(tmp_path, record) is record
    assert explanations.check(tmp_path, record) is None
