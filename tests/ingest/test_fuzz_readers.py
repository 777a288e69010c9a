"""Time-boxed fuzz of the JSONL and CSV readers: nothing but accepted rows or quarantine.

Every non-blank input line is either accepted or in the quarantine (counted), no exception
escapes, and accepted rows satisfy the schema (finite numbers, zoned UTC timestamps).
"""

from __future__ import annotations

import json

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from meta_supervisor.ingest.sources import read_records, read_telemetry

GOOD = {
    "ts": "2026-01-01T00:00:00Z",
    "agent": "a",
    "horizon_hours": 24,
    "realized_pnl_bps": 1.5,
    "expected_pnl_bps": 1.0,
}
odd = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**25), max_value=10**25),
    st.text(max_size=10),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
    st.sampled_from(["2026-01-01T00:00:00", "2026-01-01T05:00:00+02:00", "NaN", "1e400", ""]),
)
records = st.dictionaries(st.sampled_from([*GOOD, "expected_sigma_bps", "run_id"]), odd).map(
    lambda changes: {**GOOD, **changes}
)


def _line(obj) -> bytes:
    return json.dumps(obj, allow_nan=True, ensure_ascii=False).encode()


lines = st.one_of(
    records.map(_line),
    records.map(lambda r: _line(r)[: max(1, len(_line(r)) // 2)]),  # truncated
    st.binary(max_size=40).filter(lambda b: b"\n" not in b),
    st.just(_line(GOOD)),
    st.just(b"[1, 2]"),
)


def _check_schema(batch, kind: str) -> None:
    frame = batch.records
    assert frame.schema["ts"] == pl.Datetime("us", "UTC")
    if kind == "records":
        for column in ("realized_pnl_bps", "expected_pnl_bps", "gap_bps"):
            assert frame[column].is_finite().all(), column
        sigma = frame["expected_sigma_bps"].drop_nulls()
        assert (sigma.is_finite() & (sigma >= 0)).all()
        assert (frame["horizon_hours"] > 0).all()
        assert frame["matured_at"].null_count() == 0
    assert frame["ts"].null_count() == 0
    assert (frame["agent"].str.strip_chars() != "").all()


@settings(max_examples=100)
@given(st.lists(lines, max_size=12), st.booleans(), st.booleans())
def test_jsonl_readers_account_for_every_line(tmp_path_factory, body, bom, crlf):
    path = tmp_path_factory.mktemp("fuzz") / "records.jsonl"
    data = (b"\r\n" if crlf else b"\n").join(body)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    expected = sum(1 for b in body if b.decode("utf-8", errors="replace").strip())
    for kind, reader in (("records", read_records), ("telemetry", read_telemetry)):
        batch = reader(path)
        assert batch.records.height + batch.quarantine.height == expected, kind
        _check_schema(batch, kind)


def test_empty_and_header_only_files(tmp_path):
    for name, text in (("e.jsonl", ""), ("e.csv", ""), ("h.csv", ",".join(GOOD) + "\n")):
        path = tmp_path / name
        path.write_text(text)
        batch = read_records(path)
        assert batch.records.height == 0 and batch.quarantine.height == 0


# ---------------------------------------------------------------- CSV

CSV_COLUMNS = [*GOOD, "expected_sigma_bps"]
csv_value = st.one_of(
    st.sampled_from(["2026-01-01T00:00:00Z", "a", "24", "1.5", "", "NaN", "inf", "1e400"]),
    st.text(alphabet=st.characters(blacklist_characters='\r\n",', codec="utf-8"), max_size=8),
    # a quote inside a field (not at its start): polars' fast reader refuses such files
    st.text(alphabet="ab", min_size=1, max_size=3).map(lambda t: t + '"x'),
)
csv_row = st.one_of(
    st.lists(csv_value, min_size=len(CSV_COLUMNS), max_size=len(CSV_COLUMNS)),
    st.lists(csv_value, min_size=1, max_size=len(CSV_COLUMNS) + 2),  # ragged
    st.just(["2026-01-01T00:00:00Z", "a", "24", "1.5", "1.0", "3"]),
)


@settings(max_examples=100)
@given(st.lists(csv_row, max_size=12), st.booleans())
def test_csv_reader_accounts_for_every_row(tmp_path_factory, rows, crlf):
    path = tmp_path_factory.mktemp("fuzz") / "records.csv"
    newline = "\r\n" if crlf else "\n"
    body = [",".join(CSV_COLUMNS), *(",".join(row) for row in rows)]
    path.write_bytes(newline.join(body).encode() + newline.encode())
    expected = sum(1 for row in rows if any(row))  # blank rows are skipped, as in JSONL
    batch = read_records(path)
    assert batch.records.height + batch.quarantine.height == expected
    _check_schema(batch, "records")
    assert batch.quarantine["line"].is_between(2, len(rows) + 1).all()


def test_csv_with_bad_quoting_keeps_the_good_rows_and_names_the_bad_line(tmp_path):
    header = ",".join(CSV_COLUMNS)
    good = "2026-01-01T00:00:00Z,a,24,1.5,1.0,3"
    path = tmp_path / "records.csv"
    path.write_text(f'{header}\n{good}\nab"c,a,24,1,1\n{good.replace(",a,", ",b,")}\n')
    batch = read_records(path)
    assert sorted(batch.records["agent"].to_list()) == ["a", "b"]
    assert batch.quarantine["line"].to_list() == [3]
    assert "expected 6 fields" in batch.quarantine["reason"][0]
