"""``ingest(strict=True, info=...)``: the all-or-nothing batch the HTTP upload uses."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from helpers import raw_record, write_jsonl
from meta_supervisor.ingest.batch import ingest
from meta_supervisor.ledger.store import LedgerStore

T0 = datetime(2026, 1, 10, tzinfo=UTC)


def _rows(n: int, run: str = "r") -> list[dict]:
    return [raw_record("atlas", T0 + timedelta(hours=k), 1.0, run_id=f"{run}{k}") for k in range(n)]


def test_strict_refuses_the_whole_batch_and_writes_nothing(tmp_path: Path) -> None:
    rows: list[dict | str] = [*_rows(3)]
    rows.insert(1, json.dumps({**_rows(1, "bad")[0], "realized_pnl_bps": "lots"}))
    source = write_jsonl(tmp_path / "batch.jsonl", rows)
    report = ingest([source], tmp_path / "ledger", strict=True, info={"idempotency_key": "k"})
    assert not report.committed
    assert report.accepted == 0
    assert report.refused == 1
    assert report.quarantine["line"].to_list() == [2]
    assert not LedgerStore(tmp_path / "ledger").exists()  # not even the quarantine


def test_strict_commits_a_clean_batch_with_its_info(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "batch.jsonl", _rows(4))
    report = ingest([source], tmp_path / "ledger", strict=True, info={"idempotency_key": "k"})
    assert report.committed
    assert report.accepted_records == 4
    batches = LedgerStore(tmp_path / "ledger").manifest().batches
    assert [b["idempotency_key"] for b in batches] == ["k"]
    conflicting = write_jsonl(
        tmp_path / "again.jsonl", [{**r, "realized_pnl_bps": 9.0} for r in _rows(1)]
    )
    refused = ingest([conflicting], tmp_path / "ledger", strict=True)
    assert not refused.committed
    assert "conflicting duplicate" in refused.quarantine["reason"][0]
    assert LedgerStore(tmp_path / "ledger").manifest().generation == 1
    assert LedgerStore(tmp_path / "ledger").quarantine().height == 0
