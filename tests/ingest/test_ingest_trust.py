"""Issue #13: what an outside attack broke at ingest (every input is a trust boundary)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meta_supervisor.ingest.records import content_key, dedupe_records, normalize_records
from meta_supervisor.ingest.sources import read_records, read_telemetry

TS = "2026-01-10T12:00:00Z"


def _telemetry(tmp_path: Path, values: list[object], key: str) -> Path:
    path = tmp_path / "telemetry.jsonl"
    lines = [
        json.dumps({"ts": TS, "agent": "a", "run_id": f"r{i}", key: v})
        for i, v in enumerate(values)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("value", "is_error"),
    [
        (False, False),
        (0, False),
        (0.0, False),
        ("", False),
        (None, False),
        ("false", False),
        ("None", False),
        (True, True),
        (1, True),
        ("timeout", True),
    ],
)
def test_error_field_encodings(tmp_path: Path, value: object, is_error: bool) -> None:
    """``"error": false`` or ``0`` used to count as an error run (the fleet went to cash)."""
    batch = read_telemetry(_telemetry(tmp_path, [value], "error"))
    assert batch.quarantine.height == 0
    assert batch.records["is_error"].to_list() == [is_error]


@pytest.mark.parametrize("value", [[], {}, ["x"], {"code": 1}, 2, -1, 0.5])
def test_error_field_refuses_other_encodings(tmp_path: Path, value: object) -> None:
    batch = read_telemetry(_telemetry(tmp_path, [value], "error"))
    assert batch.records.height == 0
    assert batch.quarantine["field"].to_list() == ["error"]
    assert batch.quarantine["line"].to_list() == [1]


@pytest.mark.parametrize("value", [-1, 0.5, "x", True, float("inf")])
def test_errors_count_refuses_non_counts(tmp_path: Path, value: object) -> None:
    """``errors: -1`` and ``errors: 0.5`` used to be accepted."""
    path = tmp_path / "telemetry.jsonl"
    path.write_text(json.dumps({"ts": TS, "agent": "a", "errors": value}) + "\n")
    batch = read_telemetry(path)
    assert batch.records.height == 0
    assert batch.quarantine["field"].to_list() == ["errors"]


@pytest.mark.parametrize(("value", "is_error"), [(0, False), (3, True), (None, False)])
def test_errors_count_accepts_counts(tmp_path: Path, value: object, is_error: bool) -> None:
    path = tmp_path / "telemetry.jsonl"
    path.write_text(json.dumps({"ts": TS, "agent": "a", "errors": value}) + "\n")
    batch = read_telemetry(path)
    assert batch.records["is_error"].to_list() == [is_error]


def _record(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "ts": "2026-01-10T00:00:00Z",
        "agent": "a",
        "horizon_hours": 24,
        "realized_pnl_bps": 1.0,
        "expected_pnl_bps": 0.5,
    }
    return base | changes


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"ts": "9999-12-31T23:00:00Z"}, "ts"),
        ({"ts": "2200-01-01T00:00:00Z"}, "ts"),
        ({"ts": "0001-01-01T00:00:00Z"}, "ts"),
        ({"ts": "1969-12-31T23:59:59Z"}, "ts"),
        ({"horizon_hours": 10**12}, "horizon_hours"),
        ({"horizon_hours": 24 * 366 * 10 + 1}, "horizon_hours"),
    ],
)
def test_records_out_of_range_are_refused(tmp_path: Path, changes: dict, field: str) -> None:
    """A record dated year 9999 (or a horizon of 10^12 h) was accepted, then crashed every
    cycle on the raw files after it."""
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(_record()) + "\n" + json.dumps(_record(**changes)) + "\n")
    batch = read_records(path)
    assert batch.records.height == 1
    assert batch.quarantine.select("line", "field").rows() == [(2, field)]


def test_telemetry_out_of_range_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"ts": "9999-12-31T23:59:59Z", "agent": "a", "errors": 0}) + "\n")
    batch = read_telemetry(path)
    assert batch.records.height == 0 and batch.quarantine["field"].to_list() == ["ts"]


def test_records_without_run_id_do_not_collide(tmp_path: Path) -> None:
    """Fields joined with '|' collided: symbol 'X|LONG' + direction 'Y' vs symbol 'X' +
    direction 'LONG|Y' (agent names may no longer hold '|', symbols still may)."""
    path = tmp_path / "r.jsonl"
    rows = [_record(symbol="X|LONG", direction="Y"), _record(symbol="X", direction="LONG|Y")]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    records, duplicates = dedupe_records(read_records(path).records)
    assert duplicates == 0
    assert sorted(records["symbol"].to_list()) == ["X", "X|LONG"]


_free = st.text(alphabet="a|\\", max_size=3)
_text = st.one_of(st.none(), _free)


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(_free, _text, _text, st.sampled_from([1, 24])),
        min_size=2,
        max_size=12,
    )
)
def test_content_key_is_injective(fields: list[tuple[str, str | None, str | None, int]]) -> None:
    """Different (agent, symbol, direction, horizon) never share a key: the key is injective."""
    frame = pl.DataFrame(
        {
            "ts": [datetime(2026, 1, 1, tzinfo=UTC)] * len(fields),
            "agent": [f[0] for f in fields],
            "symbol": [f[1] or "" for f in fields],
            "direction": [f[2] or "" for f in fields],
            "horizon_hours": [f[3] for f in fields],
            "realized_pnl_bps": [1.0] * len(fields),
            "expected_pnl_bps": [0.5] * len(fields),
        }
    )
    keys = frame.select(content_key())[:, 0].to_list()
    distinct = {(a, s or "", d or "", h) for a, s, d, h in fields}
    assert len(set(keys)) == len(distinct)


_run = st.text(alphabet="ab:1", min_size=1, max_size=5)


@given(_run, _run, st.sampled_from([1, 12, 24]), st.sampled_from([1, 12, 24]))
def test_run_key_is_injective(run_a: str, run_b: str, h_a: int, h_b: int) -> None:
    """``run:<run_id>:<horizon>``: the horizon is the digits after the last ':', so injective."""
    raw = pl.DataFrame(
        {
            "ts": ["2026-01-01T00:00:00Z"] * 2,
            "agent": ["x", "y"],
            "run_id": [run_a, run_b],
            "horizon_hours": [str(h_a), str(h_b)],
            "realized_pnl_bps": ["1", "2"],
            "expected_pnl_bps": ["0", "0"],
        }
    )
    keys = normalize_records(raw).records["record_id"].to_list()
    assert (keys[0] == keys[1]) == ((run_a, h_a) == (run_b, h_b))


HOSTILE_NAMES = [
    "[/bold]x",
    "[red]atlas[/red]",
    "a\x1b[31mred",
    "atlas\u200b",
    "\u0430tlas",  # Cyrillic a: looks like atlas
    "<script>alert(1)</script>",
    "a b",
    "a|b",
    "x" * 65,
    "-flag",
    "a\nb",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
@pytest.mark.parametrize("field", ["agent", "strategy_class"])
def test_hostile_names_are_refused_at_ingest(tmp_path: Path, name: str, field: str) -> None:
    """Names were rendered as markup ('[/bold]x' crashed allocate) or reached the terminal raw."""
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(_record()) + "\n" + json.dumps(_record(**{field: name})) + "\n")
    batch = read_records(path)
    assert batch.records.height == 1
    assert batch.quarantine.select("line", "field").rows() == [(2, field)]
    assert "is not a valid name" in batch.quarantine["reason"][0]


@pytest.mark.parametrize("name", HOSTILE_NAMES[:4])
def test_hostile_agent_names_are_refused_in_telemetry(tmp_path: Path, name: str) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"ts": TS, "agent": name, "errors": 0}) + "\n")
    assert read_telemetry(path).quarantine["field"].to_list() == ["agent"]


@pytest.mark.parametrize(
    "name", ["atlas", "agent-0", "mean_reversion", "BTC/USD:perp", "a", "x" * 64]
)
def test_ordinary_names_are_accepted(tmp_path: Path, name: str) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(_record(agent=name, strategy_class=name)) + "\n")
    assert read_records(path).records["agent"].to_list() == [name]


@settings(max_examples=200)
@given(st.text(max_size=70))
def test_accepted_names_are_plain(name: str) -> None:
    """Fuzz: whatever is accepted as a name is plain ASCII with no markup, HTML or cell syntax."""
    raw = pl.DataFrame(
        {
            "ts": [TS],
            "agent": [name],
            "horizon_hours": ["24"],
            "realized_pnl_bps": ["1"],
            "expected_pnl_bps": ["0"],
        }
    )
    batch = normalize_records(raw)
    for accepted in batch.records["agent"].to_list():
        assert accepted.isascii() and accepted.isprintable() and 1 <= len(accepted) <= 64
        assert not set(accepted) & set("[]<>|& \\`*")
    assert batch.records.height + batch.quarantine.height == 1
