"""Ingest: every upstream defect of DESIGN.md, each as a fixture, and the JSONL fast path."""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meta_supervisor.ingest.batch import dedupe_batch, ingest
from meta_supervisor.ingest.sources import RECORD_FIELDS, detect_kind, iter_raw, read_records
from meta_supervisor.ledger.store import LedgerStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def record(i: int, **changes: object) -> dict:
    """A valid reconciled record (the original system's fields)."""
    row = {
        "ts": (T0 + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "agent": f"agent{i % 3}",
        "run_id": "",
        "symbol": "BTC",
        "direction": "LONG",
        "entry_price": 100.0,
        "exit_price": 101.0,
        "horizon_hours": 24,
        "realized_pnl_bps": float(i % 17) - 8.0,
        "expected_pnl_bps": 1.5,
        "expected_sigma_bps": 10.0,
        "sim_version": "v1",
        "strategy_class": "perp_funding",
        "regime": "calm",
    }
    row.update(changes)
    return row


def write_jsonl(path: Path, rows: list) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def stored(root: Path) -> pl.DataFrame:
    return LedgerStore(root).records().sort("record_id")


def test_duplicates_from_reruns_are_stored_once(tmp_path: Path) -> None:
    rows = [record(i) for i in range(20)] + [record(i, run_id=f"r{i}") for i in range(5)]
    path = write_jsonl(tmp_path / "a.jsonl", rows + rows[:7] + rows[20:])  # a re-run appended
    report = ingest([path], tmp_path / "L")
    assert (report.read, report.accepted, report.duplicates, report.refused) == (37, 25, 12, 0)
    assert stored(tmp_path / "L")["record_id"].n_unique() == 25


def test_conflicting_rerun_is_refused_naming_the_first(tmp_path: Path) -> None:
    first = record(1, run_id="run-7")
    changed = record(1, run_id="run-7", realized_pnl_bps=999.0)
    path = write_jsonl(tmp_path / "a.jsonl", [first, record(2), changed])
    report = ingest([path], tmp_path / "L")
    assert report.accepted == 2 and report.refused == 1
    entry = report.quarantine.row(0, named=True)
    assert entry["line"] == 3 and entry["field"] == "record_id"
    assert "run:run-7:24" in entry["reason"] and "a.jsonl:1" in entry["reason"]
    kept = stored(tmp_path / "L").filter(pl.col("run_id") == "run-7")
    assert kept["realized_pnl_bps"].to_list() == [first["realized_pnl_bps"]]
    # Against the store too: a later file changing the run's numbers is refused, stored kept.
    later = write_jsonl(tmp_path / "b.jsonl", [record(1, run_id="run-7", realized_pnl_bps=5.0)])
    again = ingest([later], tmp_path / "L")
    assert again.accepted == 0 and again.refused == 1
    assert "already in the ledger" in again.quarantine["reason"][0]
    assert LedgerStore(tmp_path / "L").quarantine().height == 2


def test_two_telemetry_schemas_in_one_file(tmp_path: Path) -> None:
    ts = "2026-01-01T00:00:00Z"
    rows = [
        {"ts": ts, "agent": "a", "run_id": "1", "latency_ms": 5, "cost_usd": None,
         "tokens_in": None, "tokens_out": None, "error": None, "reward": 1.0},
        {"ts": ts, "agent": "a", "run_id": "2", "latency_ms": 5, "cost_usd": 0.1,
         "tokens_in": 3, "tokens_out": 4, "error": "timeout", "reward": 0.0},
        {"ts": ts, "agent": "b", "run_id": "3", "latency_ms": 5, "tokens_in": 1,
         "tokens_out": 2, "cost_usd": 0.2, "errors": 0},
        {"ts": ts, "agent": "b", "run_id": "4", "latency_ms": 5, "tokens_in": 1,
         "tokens_out": 2, "cost_usd": 0.2, "errors": 2},
        {"ts": ts, "agent": "b", "run_id": "5", "latency_ms": 5, "errors": "many"},
        {"ts": ts, "agent": "a", "run_id": "6", "latency_ms": 5, "error": ""},
    ]  # fmt: skip
    path = write_jsonl(tmp_path / "events.jsonl", rows)
    assert detect_kind(path) == "telemetry"
    report = ingest([path], tmp_path / "L")
    assert report.accepted_telemetry == 5 and report.refused == 1
    assert report.quarantine["field"].to_list() == ["errors"]
    tel = LedgerStore(tmp_path / "L").telemetry().sort("run_id")
    assert tel["is_error"].to_list() == [False, True, False, True, False]


# One row per defect: (changes to a valid record, refused field or None if accepted).
DEFECTS = [
    ({"expected_sigma_bps": None}, None),
    ({"ts": "2026-01-01T00:00:00+00:00"}, None),
    ({"ts": "2026-01-01T02:00:00+02:00"}, None),
    ({"ts": "2026-01-01T00:00:00.250Z"}, None),
    ({"ts": "2026-01-01T00:00:00"}, "ts"),
    ({"ts": "yesterday"}, "ts"),
    ({"ts": None}, "ts"),
    ({"agent": ""}, "agent"),
    ({"realized_pnl_bps": None}, "realized_pnl_bps"),
    ({"realized_pnl_bps": "abc"}, "realized_pnl_bps"),
    ({"realized_pnl_bps": float("nan")}, "realized_pnl_bps"),
    ({"expected_pnl_bps": float("inf")}, "expected_pnl_bps"),
    ({"horizon_hours": 2.5}, "horizon_hours"),
    ({"horizon_hours": "24"}, None),
    ({"realized_pnl_bps": "12.5"}, None),
]


@pytest.mark.parametrize(("changes", "field"), DEFECTS)
def test_each_field_defect(tmp_path: Path, changes: dict, field: str | None) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [record(0), record(1, **changes)])
    report = ingest([path], tmp_path / "L")
    if field is None:
        assert report.accepted == 2 and report.refused == 0
    else:
        assert report.accepted == 1
        assert report.quarantine.select("line", "field").rows() == [(2, field)]


def test_missing_field_is_refused_by_name(tmp_path: Path) -> None:
    row = record(1)
    del row["expected_pnl_bps"]
    report = ingest([write_jsonl(tmp_path / "a.jsonl", [row])], tmp_path / "L")
    assert report.quarantine["reason"].to_list() == ["missing required field 'expected_pnl_bps'"]


def test_timestamp_formats_normalise_to_the_same_instant(tmp_path: Path) -> None:
    spellings = ["2026-01-01T10:00:00Z", "2026-01-01T10:00:00+00:00", "2026-01-01T12:00:00+02:00",
                 "2026-01-01T05:00:00-05:00", "2026-01-01 10:00:00Z"]  # fmt: skip
    rows = [record(i, ts=ts, run_id=f"r{i}") for i, ts in enumerate(spellings)]
    ingest([write_jsonl(tmp_path / "a.jsonl", rows)], tmp_path / "L")
    instants = set(stored(tmp_path / "L")["ts"].to_list())
    assert instants == {datetime(2026, 1, 1, 10, tzinfo=UTC)}


def test_corrupt_and_truncated_lines_do_not_stop_the_rest(tmp_path: Path) -> None:
    lines = [json.dumps(record(i)) for i in range(6)]
    lines[1] = lines[1][:40]  # truncated by a crash mid-write
    lines[3] = "garbage \x00 {"
    lines.insert(4, "[1, 2, 3]")
    lines.insert(5, "")
    path = write_jsonl(tmp_path / "a.jsonl", lines)
    report = ingest([path], tmp_path / "L")
    assert report.accepted == 4
    assert report.quarantine["line"].to_list() == [2, 4, 5]
    assert report.quarantine["reason"][2] == "not a JSON object (list)"


def test_empty_file_is_no_evidence(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text("")
    report = ingest([tmp_path / "a.jsonl", tmp_path / "missing.jsonl"], tmp_path / "L")
    assert (report.read, report.usable, report.committed) == (0, False, False)
    assert report.sources[1].error == "no such file"
    assert not LedgerStore(tmp_path / "L").exists()


def test_shuffled_order_gives_the_same_store(tmp_path: Path) -> None:
    rows = [record(i, run_id=f"r{i}" if i % 2 else "") for i in range(120)]
    rows += rows[::5]  # re-run copies
    shuffled = rows[:]
    random.Random(3).shuffle(shuffled)
    ingest([write_jsonl(tmp_path / "a.jsonl", rows)], tmp_path / "A")
    ingest([write_jsonl(tmp_path / "b.jsonl", shuffled)], tmp_path / "B")
    assert stored(tmp_path / "A").equals(stored(tmp_path / "B"))


def test_csv_and_parquet_read_like_jsonl(tmp_path: Path) -> None:
    rows = [record(i, run_id=f"r{i}" if i % 3 else "") for i in range(50)]
    frame = pl.DataFrame(rows)
    write_jsonl(tmp_path / "a.jsonl", rows)
    frame.write_csv(tmp_path / "a.csv")
    frame.write_parquet(tmp_path / "a.parquet")
    results = {}
    for suffix in ("jsonl", "csv", "parquet"):
        ingest([tmp_path / f"a.{suffix}"], tmp_path / suffix)
        results[suffix] = stored(tmp_path / suffix)
    assert results["jsonl"].height == 50
    assert results["csv"].equals(results["jsonl"])
    assert results["parquet"].equals(results["jsonl"])


def test_csv_and_parquet_refusals_name_row_and_field(tmp_path: Path) -> None:
    rows = [record(i) for i in range(4)]
    rows[2]["realized_pnl_bps"] = "inf"
    pl.DataFrame(rows).with_columns(pl.col("realized_pnl_bps").cast(pl.String)).write_csv(
        tmp_path / "a.csv"
    )
    report = ingest([tmp_path / "a.csv"], tmp_path / "L")
    assert report.quarantine.select("line", "field").rows() == [(4, "realized_pnl_bps")]  # header=1
    naive = pl.DataFrame({"ts": [datetime(2026, 1, 1)] * 2, "agent": ["a", "b"],
                          "horizon_hours": [24, 24], "realized_pnl_bps": [1.0, None],
                          "expected_pnl_bps": [0.0, 0.0]})  # fmt: skip
    naive.write_parquet(tmp_path / "n.parquet")
    report = ingest([tmp_path / "n.parquet"], tmp_path / "M")
    assert report.quarantine.select("line", "field").rows() == [(1, "ts"), (2, "ts")]


def test_one_percent_corrupt_ingests_the_rest_and_lists_every_line(tmp_path: Path) -> None:
    n = 20_000
    rng = random.Random(11)
    bad_lines = set(rng.sample(range(1, n + 1), n // 100))
    lines = []
    for number in range(1, n + 1):
        text = json.dumps(record(number, run_id=f"r{number}"))
        if number in bad_lines:
            text = rng.choice([text[: rng.randrange(1, len(text) - 1)], text.replace(":", "", 1),
                               text.replace(": 24,", ": NaN,", 1), "{oops}"])  # fmt: skip
        lines.append(text)
    path = write_jsonl(tmp_path / "big.jsonl", lines)
    # Small chunks exercise the chunk boundaries and the per-chunk fallback.
    report = ingest([path], tmp_path / "L", chunk_bytes=256 << 10)
    assert report.accepted == n - len(bad_lines)
    assert sorted(report.quarantine["line"].to_list()) == sorted(bad_lines)
    assert report.quarantine["reason"].null_count() == 0
    assert LedgerStore(tmp_path / "L").quarantine().height == len(bad_lines)


def brute_force(lines: list[str]) -> tuple[list[int], list[int]]:
    """Line numbers json.loads accepts as objects, and those it refuses (blank lines skipped)."""
    good, bad = [], []
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            ok = isinstance(json.loads(text), dict)
        except ValueError:
            ok = False
        (good if ok else bad).append(number)
    return good, bad


line_strategy = st.one_of(
    st.builds(lambda i, v: json.dumps(record(i, realized_pnl_bps=v)), st.integers(0, 99),
              st.one_of(st.floats(allow_nan=True), st.text(max_size=4), st.none())),
    st.builds(lambda i, k: json.dumps(record(i))[:k], st.integers(0, 99), st.integers(0, 60)),
    st.sampled_from(["", "  ", "null", "[]", "{}", '{"a": Infinity}', '{"a": 1e999}', "{,}"]),
)  # fmt: skip


@settings(max_examples=25)
@given(st.lists(line_strategy, max_size=40), st.integers(64, 2048))
def test_chunked_fast_reader_agrees_with_json_loads(lines: list[str], chunk: int) -> None:
    """Whatever the chunking, every line json.loads reads is read, and only those."""
    blob = "".join(text.replace("\n", " ") + "\n" for text in lines).encode()
    good, bad = brute_force(blob.decode().split("\n")[:-1])
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.jsonl"
        path.write_bytes(blob)
        chunks = list(iter_raw(path, RECORD_FIELDS, chunk_bytes=chunk))
    read = sorted(line for c in chunks for line in c.frame["_line"].to_list())
    refused = sorted(line for c in chunks for line in c.unreadable["line"].to_list())
    assert read == good
    assert refused == bad


def test_fast_and_slow_paths_give_the_same_values(tmp_path: Path) -> None:
    rows = [record(i, realized_pnl_bps=(-1) ** i * i / 7, run_id=f"r{i}") for i in range(300)]
    clean = write_jsonl(tmp_path / "clean.jsonl", rows)
    # One NaN line forces its chunk through the fallback; the other rows must read identically.
    dirty = write_jsonl(tmp_path / "dirty.jsonl", [*rows, '{"ts": NaN}'])
    a = read_records(clean).records
    b = read_records(dirty).records
    assert a.equals(b)
    assert math.isclose(a["realized_pnl_bps"][1], -1 / 7, rel_tol=0, abs_tol=0)


def test_dedupe_batch_keeps_first_and_counts() -> None:
    frame = read_records_frame([record(1, run_id="x"), record(1, run_id="x"), record(2)])
    kept, duplicates, conflicts = dedupe_batch(frame)
    assert (kept.height, duplicates, conflicts.height) == (2, 1, 0)


def read_records_frame(rows: list[dict]) -> pl.DataFrame:
    from meta_supervisor.ingest.records import normalize_records

    raw = pl.DataFrame([{k: None if v is None else str(v) for k, v in r.items()} for r in rows])
    return normalize_records(raw).records
