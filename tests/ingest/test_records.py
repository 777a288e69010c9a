"""records: normalisation of well-formed rows (gap, maturity, strategy, UTC, ids, dedupe)."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from meta_supervisor.ingest.records import dedupe_records, normalize_records, normalize_telemetry


def _raw(**kw):
    row = {
        "ts": "2026-01-10T12:00:00Z", "agent": "a", "run_id": "", "symbol": "BTC-USD",
        "direction": "long", "horizon_hours": 24, "realized_pnl_bps": 7.5,
        "expected_pnl_bps": 10.0, "expected_sigma_bps": 5.0, "strategy_class": "basis",
    }  # fmt: skip
    return row | kw


def test_gap_maturity_strategy_and_utc():
    rows = [_raw(), _raw(ts="2026-01-10T14:00:00+02:00", horizon_hours=4, strategy_class="")]
    batch = normalize_records(pl.DataFrame(rows))
    assert batch.quarantine.height == 0
    out = batch.records.to_dicts()
    assert out[0]["gap_bps"] == -2.5
    assert out[0]["matured_at"] == datetime(2026, 1, 11, 12, tzinfo=UTC)
    assert out[0]["strategy"] == "basis"
    assert out[0]["direction"] == "LONG"
    assert out[1]["ts"] == datetime(2026, 1, 10, 12, tzinfo=UTC)  # +02:00 converted
    assert out[1]["matured_at"] == datetime(2026, 1, 10, 16, tzinfo=UTC)
    assert out[1]["strategy"] == "unclassified"


def test_zoneless_timestamp_and_bad_number_are_quarantined_with_field_and_line():
    rows = [_raw(ts="2026-01-10T12:00:00"), _raw(realized_pnl_bps="n/a"), _raw()]
    raw = pl.DataFrame(rows, schema_overrides={"realized_pnl_bps": pl.String})
    batch = normalize_records(raw, source="x.jsonl")
    assert batch.records.height == 1
    q = batch.quarantine.sort("line").to_dicts()
    assert [(r["line"], r["field"]) for r in q] == [(1, "ts"), (2, "realized_pnl_bps")]
    assert "time zone" in q[0]["reason"]


def test_record_ids_and_dedupe():
    rows = [_raw(run_id="r1"), _raw(run_id="r1"), _raw(), _raw(), _raw(realized_pnl_bps=8.0)]
    batch = normalize_records(pl.DataFrame(rows))
    unique, dropped = dedupe_records(batch.records)
    assert dropped == 2
    assert unique.height == 3
    assert unique["record_id"][0] == "run:r1:24"


def test_telemetry_schemas_a_and_b():
    rows = [
        {"ts": "2026-01-10T12:00:00Z", "agent": "a", "error": "timeout", "errors": None},
        {"ts": "2026-01-10T12:00:00Z", "agent": "a", "error": None, "errors": None},
        {"ts": "2026-01-10T12:00:00Z", "agent": "a", "error": "", "errors": None},
        {"ts": "2026-01-10T12:00:00Z", "agent": "a", "error": None, "errors": 3},
        {"ts": "2026-01-10T12:00:00Z", "agent": "a", "error": None, "errors": 0},
    ]
    batch = normalize_telemetry(pl.DataFrame(rows))
    assert batch.records["is_error"].to_list() == [True, False, False, True, False]
