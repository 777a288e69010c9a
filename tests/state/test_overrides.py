"""Operator overrides on disk: validation naming the field, atomic add/remove, expiry."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meta_supervisor.allocate.core import allocate
from meta_supervisor.allocate.inputs import Override
from meta_supervisor.config import Paths
from meta_supervisor.cycle.run import load_overrides as cycle_load_overrides
from meta_supervisor.state.overrides import (
    OverrideError,
    active_overrides,
    add_override,
    load_overrides,
    make_override,
    parse_duration,
    parse_override,
    remove_override,
    save_overrides,
)

T0 = datetime(2026, 1, 15, tzinfo=UTC)


def _item(**changes: object) -> dict[str, object]:
    item: dict[str, object] = {
        "agent": "hydra",
        "action": "exclude",
        "reason": "venue outage",
        "expires_at": "2026-01-18T00:00:00Z",
        "cap": None,
        "created_by": "risk-desk",
    }
    item.update(changes)
    return {k: v for k, v in item.items() if v != "<drop>"}


def test_round_trip_through_the_file(tmp_path: Path) -> None:
    path = tmp_path / "overrides.json"
    overrides = [
        parse_override(_item()),
        parse_override(_item(agent="atlas", action="cap", cap=0.05, reason="sim review")),
    ]
    save_overrides(path, overrides)
    loaded = load_overrides(path)
    assert sorted(loaded, key=lambda o: o.agent) == sorted(overrides, key=lambda o: o.agent)
    assert [item["agent"] for item in json.loads(path.read_text())] == ["atlas", "hydra"]
    assert not list(tmp_path.glob(".*.tmp")), "atomic write left a temp file behind"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"reason": "<drop>"}, "field 'reason'"),
        ({"reason": "   "}, "field 'reason'"),
        ({"agent": ""}, "field 'agent'"),
        ({"action": "kill"}, "field 'action'"),
        ({"action": "cap", "cap": 1.5}, "field 'cap' must be in [0, 1]"),
        ({"action": "cap", "cap": -0.1}, "field 'cap' must be in [0, 1]"),
        ({"action": "cap", "cap": None}, "field 'cap' is required"),
        ({"action": "cap", "cap": True}, "field 'cap' is required"),
        ({"cap": 0.2}, "field 'cap' must be empty"),
        ({"expires_at": "2026-01-18T00:00:00"}, "field 'expires_at'"),
        ({"expires_at": "next week"}, "field 'expires_at'"),
        ({"expiry": "2026-01-18T00:00:00Z"}, "did you mean 'expires_at'"),
    ],
)
def test_each_invalid_entry_names_the_file_entry_and_field(
    tmp_path: Path, changes: dict[str, object], field: str
) -> None:
    path = tmp_path / "overrides.json"
    path.write_text(json.dumps([_item(agent="atlas"), _item(**changes)]))
    with pytest.raises(OverrideError) as err:
        load_overrides(path)
    assert str(path) in str(err.value)
    assert "entry 2" in str(err.value)
    assert field in str(err.value)


def test_bad_json_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "overrides.json"
    path.write_text('[\n  {"agent": "hydra",\n  oops\n]')
    with pytest.raises(OverrideError, match=r"overrides.json: line 3"):
        load_overrides(path)


def test_not_a_list_and_duplicate_agent_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "overrides.json"
    path.write_text(json.dumps(_item()))
    with pytest.raises(OverrideError, match="expected a JSON list"):
        load_overrides(path)
    path.write_text(json.dumps([_item(), _item(action="cap", cap=0.1)]))
    with pytest.raises(OverrideError, match=r"entry 2: field 'agent'.*entry 1"):
        load_overrides(path)


def test_missing_file_or_empty_list_means_none(tmp_path: Path) -> None:
    assert load_overrides(tmp_path / "nope.json") == []
    (tmp_path / "none.json").write_text("[]\n")
    assert load_overrides(tmp_path / "none.json") == []


@pytest.mark.parametrize("text", ["", "  \n"])
def test_empty_file_is_an_error_not_none(tmp_path: Path, text: str) -> None:
    """An emptied overrides file used to lift every exclusion (issue #13)."""
    path = tmp_path / "overrides.json"
    path.write_text(text)
    with pytest.raises(OverrideError, match=r"overrides.json: the overrides file is empty"):
        load_overrides(path)


def test_new_override_must_expire_after_now() -> None:
    with pytest.raises(OverrideError, match=r"field 'expires_at'.*not after"):
        make_override("atlas", action="exclude", reason="r", expires_at=T0, now=T0)
    made = make_override(
        "atlas", action="cap", reason="r", cap=0.1, expires_at=T0 + timedelta(hours=1), now=T0
    )
    assert made.active(T0)
    assert not made.active(T0 + timedelta(hours=1)), "active strictly before expires_at"


@pytest.mark.parametrize(
    ("text", "hours"), [("90m", 1.5), ("24h", 24), ("3d", 72), ("1w", 168), ("12", 12)]
)
def test_parse_duration(text: str, hours: float) -> None:
    assert parse_duration(text) == timedelta(hours=hours)


@pytest.mark.parametrize("text", ["soon", "0h", "-3h", "3y", ""])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(OverrideError, match="--for"):
        parse_duration(text)


def test_add_replaces_and_remove_returns(tmp_path: Path) -> None:
    path = tmp_path / "state" / "overrides.json"
    first = parse_override(_item())
    assert add_override(path, first) is None
    second = parse_override(_item(action="cap", cap=0.1, reason="half back"))
    assert add_override(path, second) == first
    assert load_overrides(path) == [second]
    with pytest.raises(OverrideError, match=r"no override for agent 'atlas' \(overrides: hydra\)"):
        remove_override(path, "atlas")
    assert remove_override(path, "hydra") == second
    assert load_overrides(path) == []


def test_active_overrides_at_an_instant() -> None:
    early = parse_override(_item(agent="a", expires_at="2026-01-15T01:00:00Z"))
    late = parse_override(_item(agent="b", expires_at="2026-01-15T05:00:00Z"))
    assert active_overrides([late, early], T0) == [early, late]
    assert active_overrides([late, early], T0 + timedelta(hours=1)) == [late]
    assert active_overrides([late, early], T0 + timedelta(hours=5)) == []


def test_cycle_reads_overrides_through_this_module(tmp_path: Path) -> None:
    paths = Paths.under(tmp_path)
    paths.state_dir.mkdir(parents=True)
    paths.overrides.write_text(json.dumps([_item(action="cap", cap=2)]))
    with pytest.raises(OverrideError, match="field 'cap'"):
        cycle_load_overrides(paths)
    paths.overrides.write_text(json.dumps([_item()]))
    assert cycle_load_overrides(paths) == [parse_override(_item())]


@given(cap=st.floats(allow_nan=False, allow_infinity=False, min_value=-2, max_value=3))
def test_cap_accepted_exactly_in_unit_interval(cap: float) -> None:
    item = _item(action="cap", cap=cap)
    if 0 <= cap <= 1:
        assert parse_override(item).cap == cap
    else:
        with pytest.raises(OverrideError, match="field 'cap'"):
            parse_override(item)


def _stats(pnl: float) -> dict[str, object]:
    return {
        "pnl_sum_bps": pnl,
        "hit_rate": 0.6,
        "error_rate": 0.0,
        "avg_abs_error_bps": 5.0,
        "strategy": "s",
        "max_drawdown_bps": 0.0,
    }


def test_expired_override_returns_the_agent_to_the_evidence() -> None:
    stats = {name: _stats(100.0) for name in ("a", "b", "c", "d", "e", "f")}
    cap = Override("a", "cap", "review", T0 + timedelta(hours=1), cap=0.05)
    exclude = Override("b", "exclude", "outage", T0 + timedelta(hours=1))
    during = allocate(stats, as_of=T0, overrides=[cap, exclude])
    after = allocate(stats, as_of=T0 + timedelta(hours=1), overrides=[cap, exclude])
    plain = allocate(stats, as_of=T0 + timedelta(hours=1))
    assert during.agents["a"]["weight"] <= 0.05
    assert during.agents["b"]["weight"] == 0
    assert during.agents["a"]["override"]["reason"] == "review"
    assert after.weights == plain.weights, "an expired override must leave no trace"
    assert after.agents["a"]["override"] is None
