"""The embedded ledger: idempotence, window reads, decisions, kills mid-ingest, reads mid-write."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from meta_supervisor.cycle.run import decide, load_ledger, window_hours
from meta_supervisor.ingest.batch import ingest
from meta_supervisor.ledger.store import MANIFEST, LedgerBusy, LedgerError, LedgerStore
from meta_supervisor.policy.model import Policy
from meta_supervisor.research.demo import DEMO_AS_OF, write_demo_fleet
from meta_supervisor.units import epoch_us

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ORDER = ["matured_at", "ts", "record_id"]


def write_records(
    path: Path, n: int, *, start: int = 0, agents: int = 4, step_min: int = 7
) -> Path:
    """``n`` valid records over several months (half run-keyed), one JSON object a line."""
    with path.open("w", encoding="utf-8") as handle:
        for i in range(start, start + n):
            row = {
                "ts": (T0 + timedelta(minutes=step_min * i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "agent": f"agent{i % agents}",
                "run_id": f"run{i}" if i % 2 else "",
                "symbol": "ETH",
                "direction": "SHORT",
                "horizon_hours": (1, 4, 24)[i % 3],
                "realized_pnl_bps": (i * 37 % 101) - 50.0,
                "expected_pnl_bps": 2.0,
                "strategy_class": f"s{i % 2}",
            }
            handle.write(json.dumps(row) + "\n")
    return path


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file of the store (except the lock) and its bytes."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def test_ingesting_twice_leaves_the_store_identical(tmp_path: Path) -> None:
    path = write_records(tmp_path / "a.jsonl", 5_000)
    with path.open("a") as handle:
        handle.write("{broken\n")
    first = ingest([path], tmp_path / "L")
    before = snapshot(tmp_path / "L")
    second = ingest([path], tmp_path / "L")
    assert first.accepted == 5_000 and second.accepted == 0
    assert second.duplicates == 5_000 and not second.committed
    assert snapshot(tmp_path / "L") == before


def test_overlapping_files_store_the_union(tmp_path: Path) -> None:
    a = write_records(tmp_path / "a.jsonl", 3_000)
    b = write_records(tmp_path / "b.jsonl", 3_000, start=2_000)
    ingest([a], tmp_path / "L")
    report = ingest([b], tmp_path / "L")
    assert (report.accepted, report.duplicates) == (2_000, 1_000)
    both = write_records(tmp_path / "c.jsonl", 5_000)
    ingest([both], tmp_path / "M")
    sort = ["record_id"]
    assert (
        LedgerStore(tmp_path / "L")
        .records()
        .sort(sort)
        .equals(LedgerStore(tmp_path / "M").records().sort(sort))
    )


def brute_window(full: pl.DataFrame, as_of: datetime, hours: float) -> pl.DataFrame:
    """Window rows plus each window-less visible agent's latest record, by plain filtering."""
    start = as_of - timedelta(hours=hours)
    visible = full.filter(pl.col("matured_at") <= as_of).sort(ORDER)
    window = visible.filter(pl.col("matured_at") > start)
    stale = set(visible["agent"]) - set(window["agent"])
    latest = visible.filter(pl.col("agent").is_in(sorted(stale))).group_by("agent").last()
    return pl.concat([window, latest.select(full.columns)]).sort(ORDER)


@pytest.mark.parametrize("hours", [1.0, 24.0, 720.0])
def test_window_read_equals_filtering_the_whole_history(tmp_path: Path, hours: float) -> None:
    ingest([write_records(tmp_path / "a.jsonl", 6_000)], tmp_path / "L")
    # A stale agent: records only early on, in a batch and months of its own.
    ingest([write_records(tmp_path / "b.jsonl", 50, start=0, agents=1, step_min=1)], tmp_path / "L")
    store = LedgerStore(tmp_path / "L")
    full = store.records()
    for as_of in (T0 + timedelta(days=3), T0 + timedelta(days=20, hours=5), T0 - timedelta(days=1)):
        got = store.records(as_of, hours).sort(ORDER)
        assert got.equals(brute_window(full, as_of, hours))
        some = ["agent", "matured_at", "ts", "record_id"]  # the stale agents' rows included
        assert store.records(as_of, hours, columns=some).sort(ORDER).equals(got.select(some))
        tel = store.telemetry(as_of, hours)
        assert tel.height == 0


@pytest.mark.parametrize("days", [3.0, 20.2, 45.0, 120.0])
def test_agents_after_equals_filtering_and_scans_only_segments_past_as_of(
    tmp_path: Path, days: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agents with a record in ``(start, as_of]`` come from the manifest's per-agent
    bounds for segments that end by ``as_of``; a segment holding later records (a cycle
    before the store's last append) is scanned, and only such a segment."""
    ingest([write_records(tmp_path / "a.jsonl", 20_000, step_min=5, agents=7)], tmp_path / "L")
    ingest([write_records(tmp_path / "b.jsonl", 60, start=9, agents=1, step_min=1)], tmp_path / "L")
    # a sparse agent (a record every 9 days, in the monthly segments of the others): after
    # as_of it has records in the scanned segments, before start too
    sparse = tmp_path / "c.jsonl"
    with sparse.open("w", encoding="utf-8") as handle:
        for k in range(12):
            ts = (T0 + timedelta(days=9 * k + 1)).strftime("%Y-%m-%dT%H:%M:%SZ")
            row = {"ts": ts, "agent": "sparse", "horizon_hours": 24, "realized_pnl_bps": 1.0}
            handle.write(json.dumps({**row, "expected_pnl_bps": 0.0, "symbol": "ETH"}) + "\n")
    ingest([sparse], tmp_path / "L")
    store = LedgerStore(tmp_path / "L")
    manifest = store.manifest()
    full = store.records()
    assert full.filter(pl.col("agent") == "sparse").height == 12
    as_of = T0 + timedelta(days=days)
    scanned: list[str] = []
    original = LedgerStore._scan_segments

    def spy(self: LedgerStore, kind: str, segments: list) -> pl.LazyFrame:
        scanned.extend(s.path for s in segments)
        return original(self, kind, segments)

    monkeypatch.setattr(LedgerStore, "_scan_segments", spy)
    hours = (6.0, 24.0 * 9)
    for hour in hours:
        start = as_of - timedelta(hours=hour)
        inside = full.filter((pl.col("matured_at") > start) & (pl.col("matured_at") <= as_of))
        assert store.agents_after(start, as_of, manifest) == set(inside["agent"])
    past = {
        s.path
        for s in manifest.of("records")
        if (s.hi is None or s.hi > epoch_us(as_of))
        and any(s.overlaps(epoch_us(as_of - timedelta(hours=h)), epoch_us(as_of)) for h in hours)
    }
    assert set(scanned) == past


def test_window_read_opens_only_overlapping_segments(tmp_path: Path) -> None:
    ingest([write_records(tmp_path / "a.jsonl", 40_000, step_min=5)], tmp_path / "L")
    store = LedgerStore(tmp_path / "L")
    segments = store.manifest().of("records")
    assert len(segments) >= 4  # one per matured month
    as_of = T0 + timedelta(days=60)
    plan = store.scan("records", as_of - timedelta(hours=24), as_of).explain()
    opened = [s for s in segments if s.path.split("/")[-1] in plan]
    assert 1 <= len(opened) <= 2 < len(segments)


def test_cycle_on_the_store_decides_as_on_the_raw_files(tmp_path: Path) -> None:
    paths = write_demo_fleet(tmp_path / "fleet")
    paths = replace(paths, ledger=tmp_path / "fleet" / "ledger")
    policy = Policy()
    raw = load_ledger(paths)  # no store yet: the raw files
    expected = decide(raw, DEMO_AS_OF, policy).to_json()
    report = ingest([paths.records, paths.telemetry], paths.ledger)
    assert report.accepted == raw.records.height + raw.telemetry.height
    windowed = load_ledger(paths, DEMO_AS_OF, window_hours(policy))
    assert windowed.records.height <= raw.records.height
    assert decide(windowed, DEMO_AS_OF, policy).to_json() == expected
    for as_of in (DEMO_AS_OF - timedelta(days=10), DEMO_AS_OF + timedelta(days=45)):
        a = decide(raw, as_of, policy).to_json()
        assert decide(load_ledger(paths, as_of, window_hours(policy)), as_of, policy).to_json() == a


HELPER = """
import os, sys
from meta_supervisor.ledger import store as L
from meta_supervisor.ingest.batch import ingest

source, root, point = sys.argv[1:4]
if point == "segment":  # pause after the 2nd segment file, inside the writer lock
    original = L.LedgerStore._write_segment
    written = []

    def paused(self, *args, **kwargs):
        segment = original(self, *args, **kwargs)
        written.append(segment)
        if len(written) == 2:
            print("PAUSED", flush=True)
            sys.stdin.read()
        return segment

    L.LedgerStore._write_segment = paused
elif point == "manifest":  # pause with half a new manifest in its temp file

    def paused(path, text):
        path.with_name(f".{path.name}.{os.getpid()}.tmp").write_text(text[: len(text) // 2])
        print("PAUSED", flush=True)
        sys.stdin.read()

    L.atomic_write_text = paused
ingest([source], root)
print("DONE", flush=True)
"""


def start_paused_ingest(source: Path, root: Path, point: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HELPER, str(source), str(root), point],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "PAUSED"
    return proc


@pytest.mark.parametrize("point", ["segment", "manifest"])
def test_sigkill_mid_ingest_leaves_no_half_batch(tmp_path: Path, point: str) -> None:
    root = tmp_path / "L"
    ingest([write_records(tmp_path / "first.jsonl", 1_000)], root)
    before = LedgerStore(root).records().sort("record_id")
    big = write_records(tmp_path / "big.jsonl", 30_000, start=1_000)
    proc = start_paused_ingest(big, root, point)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    store = LedgerStore(root)
    assert store.manifest().generation == 1
    assert store.records().sort("record_id").equals(before)  # none of the killed batch
    leftovers = set(snapshot(root)) - {MANIFEST} - store.manifest().files()
    assert leftovers  # the killed writer did leave files behind...
    report = ingest([big], root)  # ...which the next writer moves aside, deleting nothing
    assert report.accepted == 30_000
    after = set(snapshot(root)) - {MANIFEST}
    orphaned = {p for p in after if p.startswith("orphaned/")}
    assert after - orphaned == store.manifest().files()
    assert orphaned == {f"orphaned/{p}" for p in leftovers if not p.startswith(".")}
    assert store.records().height == 31_000


def test_readers_succeed_while_an_ingest_writes(tmp_path: Path) -> None:
    root = tmp_path / "L"
    ingest([write_records(tmp_path / "first.jsonl", 2_000)], root)
    expected = LedgerStore(root).records().sort("record_id")
    proc = start_paused_ingest(
        write_records(tmp_path / "b.jsonl", 20_000, start=2_000), root, "segment"
    )
    try:
        store = LedgerStore(root)
        assert store.records().sort("record_id").equals(expected)  # the committed snapshot
        assert store.records(T0 + timedelta(days=5), 48).height > 0
        assert store.quarantine().height == 0
        with pytest.raises(LedgerBusy, match="another ingest"):
            ingest([tmp_path / "first.jsonl"], root)
        assert proc.stdin is not None
        proc.stdin.close()  # let the writer finish
        assert proc.stdout is not None and proc.stdout.readline().strip() == "DONE"
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    assert LedgerStore(root).records().height == 22_000


def test_corrupt_manifest_is_named(tmp_path: Path) -> None:
    root = tmp_path / "L"
    root.mkdir()
    (root / MANIFEST).write_text("{not json")
    with pytest.raises(LedgerError, match=r"MANIFEST\.json: not a ledger manifest"):
        LedgerStore(root).records()
