"""``meta-supervisor ingest`` and ``quarantine``: summaries, exit codes, --dry-run, --json."""

from __future__ import annotations

import errno
import json
import os
import shlex
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from meta_supervisor.cli.main import app
from meta_supervisor.ledger import store as store_module
from meta_supervisor.ledger.store import LedgerStore

runner = CliRunner()

GOOD = {
    "ts": "2026-01-01T00:00:00Z",
    "agent": "a",
    "horizon_hours": 24,
    "realized_pnl_bps": 1.5,
    "expected_pnl_bps": 1.0,
}


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def records_file(path: Path, n: int, bad: int = 0) -> Path:
    lines = [json.dumps({**GOOD, "run_id": f"r{i}"}) for i in range(n)]
    lines += ['{"ts": "2026-01-01T00:00:00", "agent": "a"}'] * bad
    return write(path, lines)


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout


def test_ingest_summary_and_json(tmp_path: Path) -> None:
    path = records_file(tmp_path / "r.jsonl", 10, bad=2)
    code, out = run("ingest", str(path), "--ledger", str(tmp_path / "L"))
    assert code == 0
    assert "stored 10 new" in out and "2 refused" in out and "has no time zone" in out
    code, out = run("ingest", str(path), "--ledger", str(tmp_path / "L"), "--json")
    body = json.loads(out)
    assert code == 0
    assert (body["accepted"], body["duplicates"], body["refused"]) == (0, 10, 2)
    assert body["refused_by_reason"] == {"ts: 'ts' has no time zone (expected 'Z' or '+00:00')": 2}


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    path = records_file(tmp_path / "r.jsonl", 5)
    code, out = run("ingest", str(path), "--ledger", str(tmp_path / "L"), "--dry-run", "--json")
    assert code == 0 and json.loads(out)["accepted"] == 5
    assert not (tmp_path / "L").exists() or not LedgerStore(tmp_path / "L").exists()


def test_exit_1_only_when_nothing_usable(tmp_path: Path) -> None:
    empty = write(tmp_path / "e.jsonl", [])
    bad_row = '{"ts": "2026-01-01T00:00:00", "agent": "a", "horizon_hours": 24}'
    all_bad = write(tmp_path / "b.jsonl", [bad_row] * 3)  # records, each refused
    good = records_file(tmp_path / "g.jsonl", 1)
    ledger = str(tmp_path / "L")
    assert run("ingest", str(empty), "--ledger", ledger)[0] == 1
    assert run("ingest", str(all_bad), "--ledger", ledger)[0] == 1
    assert run("ingest", str(all_bad), str(good), "--ledger", ledger)[0] == 0
    # Re-reading only already-stored rows is still a usable read.
    assert run("ingest", str(good), "--ledger", ledger)[0] == 0


def test_kind_telemetry_and_auto(tmp_path: Path) -> None:
    events = write(
        tmp_path / "events.jsonl",
        [
            json.dumps({"ts": "2026-01-01T00:00:00Z", "agent": "a", "latency_ms": 3, "errors": 1}),
            json.dumps({"ts": "2026-01-01T00:00:00Z", "agent": "a", "error": None}),
        ],
    )
    code, out = run("ingest", str(events), "--ledger", str(tmp_path / "L"), "--json")
    assert code == 0 and json.loads(out)["accepted_telemetry"] == 2
    # Forced to records, the same file has none of the required fields: nothing usable.
    code, _ = run("ingest", str(events), "--ledger", str(tmp_path / "M"), "--kind", "records")
    assert code == 1


def test_quarantine_lists_and_filters(tmp_path: Path) -> None:
    ledger = str(tmp_path / "L")
    a = write(tmp_path / "a.jsonl", [json.dumps(GOOD), "{cut", '{"ts": "x", "agent": "b"}'])
    b = records_file(tmp_path / "b.jsonl", 1, bad=1)
    run("ingest", str(a), str(b), "--ledger", ledger)
    code, out = run("quarantine", "--ledger", ledger, "--json")
    body = json.loads(out)
    assert code == 0 and body["total"] == 3
    assert {(Path(r["source"]).name, r["line"]) for r in body["rows"]} == {
        ("a.jsonl", 2),
        ("a.jsonl", 3),
        ("b.jsonl", 2),
    }
    _, out = run("quarantine", "--ledger", ledger, "--source", "b.jsonl", "--json")
    assert json.loads(out)["total"] == 1
    _, out = run("quarantine", "--ledger", ledger, "--reason", "not valid json", "--json")
    assert [r["line"] for r in json.loads(out)["rows"]] == [2]
    code, out = run("quarantine", "--ledger", ledger)
    assert code == 0 and "3 refused rows" in out


def test_root_puts_the_ledger_in_the_default_layout(tmp_path: Path) -> None:
    path = records_file(tmp_path / "r.jsonl", 3)
    code, _ = run("ingest", str(path), "--root", str(tmp_path / "fleet"))
    assert code == 0
    assert LedgerStore(tmp_path / "fleet" / "meta_supervisor" / "ledger").records().height == 3


def test_allocate_reads_the_files_named_on_the_command_line_not_the_store(tmp_path: Path) -> None:
    stored = [json.dumps({**GOOD, "agent": "stored", "run_id": f"s{i}"}) for i in range(8)]
    code, _ = run("ingest", str(write(tmp_path / "s.jsonl", stored)), "--root", str(tmp_path))
    assert code == 0 and LedgerStore(tmp_path / "meta_supervisor" / "ledger").exists()
    named = [json.dumps({**GOOD, "agent": "named", "run_id": f"n{i}"}) for i in range(8)]
    path = write(tmp_path / "n.jsonl", named)
    as_of = "2026-01-02T06:00:00Z"
    common = ("--root", str(tmp_path), "--as-of", as_of, "--dry-run", "--json")
    code, out = run("allocate", *common)
    assert code == 0 and set(json.loads(out)["agents"]) == {"stored"}
    code, out = run("allocate", *common, "--records", str(path))
    assert code == 0 and set(json.loads(out)["agents"]) == {"named"}


def test_allocate_refuses_a_records_file_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "typo.jsonl"
    result = runner.invoke(app, ["allocate", "--root", str(tmp_path), "--records", str(missing)])
    assert result.exit_code == 2
    assert "--records" in result.stderr and "typo.jsonl" in result.stderr
    assert not (tmp_path / "meta_supervisor" / "state" / "history.jsonl").exists()


def test_missing_input_file_is_exit_2_naming_it_and_nothing_is_written(tmp_path: Path) -> None:
    good = records_file(tmp_path / "g.jsonl", 3)
    missing = tmp_path / "typo.jsonl"
    result = runner.invoke(
        app, ["ingest", str(good), str(missing), "--ledger", str(tmp_path / "L")]
    )
    assert result.exit_code == 2
    assert "error:" in result.stderr and "typo.jsonl: no such file" in result.stderr
    assert not LedgerStore(tmp_path / "L").exists(), "the good file was not ingested either"


def test_title_says_committed_nothing_new_or_dry_run(tmp_path: Path) -> None:
    path = records_file(tmp_path / "r.jsonl", 4)
    ledger = str(tmp_path / "L")
    assert (
        "(dry run: nothing written)" in run("ingest", str(path), "--ledger", ledger, "--dry-run")[1]
    )
    assert "(committed)" in run("ingest", str(path), "--ledger", ledger)[1]
    code, out = run("ingest", str(path), "--ledger", ledger)
    assert code == 0 and "(nothing new)" in out and "(committed)" not in out


def test_quarantine_without_a_store_says_so(tmp_path: Path) -> None:
    result = runner.invoke(app, ["quarantine", "--root", str(tmp_path)])
    assert result.exit_code == 1
    assert "no ledger store at" in result.stderr and str(tmp_path) in result.stderr
    assert "refused rows" not in result.stdout


@pytest.mark.parametrize("bad", ["unknown.csv", "truncated.parquet", "garbage.parquet"])
def test_a_bad_file_fails_the_whole_batch(tmp_path: Path, bad: str) -> None:
    """``ingest good.jsonl bad.csv`` used to commit the good file and exit 0 (issue #13); a
    truncated Parquet file ended in a traceback."""
    good = records_file(tmp_path / "g.jsonl", 3)
    path = tmp_path / bad
    if bad == "unknown.csv":
        path.write_text("a,b\n1,2\n")
    elif bad == "truncated.parquet":
        pl.read_ndjson(good).write_parquet(tmp_path / "whole.parquet")
        path.write_bytes((tmp_path / "whole.parquet").read_bytes()[:300])
    else:
        path.write_bytes(b"PAR1 not really")
    ledger = tmp_path / "L"
    result = CliRunner().invoke(app, ["ingest", str(good), str(path), "--ledger", str(ledger)])
    assert result.exit_code == 2, result.output
    assert f"error: {path}" in " ".join(result.output.split())
    assert "nothing was committed" in result.output
    assert not LedgerStore(ledger).exists()


def test_disk_full_during_ingest_is_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = records_file(tmp_path / "g.jsonl", 3)

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(store_module.os, "fsync", full)
    result = CliRunner().invoke(app, ["ingest", str(good), "--ledger", str(tmp_path / "L")])
    assert result.exit_code == 1
    assert "error:" in result.output and "No space left on device" in result.output
    assert not LedgerStore(tmp_path / "L").exists()


@pytest.mark.parametrize("option", ["--root", "--ledger"])
def test_the_hint_after_refused_rows_names_the_store_it_wrote(tmp_path: Path, option: str) -> None:
    """The hint said 'meta-supervisor quarantine' without the --root or --ledger the ingest
    was given, and that command, run as printed, found no store (newcomer walkthrough)."""
    target = tmp_path / "my fleet" if option == "--root" else tmp_path / "my ledger"
    a = write(tmp_path / "a.jsonl", [json.dumps(GOOD), "{cut"])
    code, out = run("ingest", str(a), option, str(target))
    assert code == 0
    hint = next(line for line in out.splitlines() if "List them with:" in line)
    args = shlex.split(hint.split("List them with:", 1)[1])
    assert args[:2] == ["meta-supervisor", "quarantine"]
    code, out = run(*args[1:], "--json")
    assert code == 0 and json.loads(out)["total"] == 1


def test_allocate_says_how_it_got_the_learned_rule_and_why_it_rebuilt_it(tmp_path: Path) -> None:
    """The learned value (select's rule) is kept between cycles in ``persistence.state``; the
    operator sees whether a cycle kept it, advanced it or rebuilt it from the ledger, and why
    it rebuilt it (a missing file, an edited one), as for the statistics' line."""
    rows = [
        json.dumps({**GOOD, "agent": a, "ts": f"2026-01-0{d}T00:00:00Z", "run_id": f"{a}{d}"})
        for a in "abc"
        for d in range(1, 6)
    ]
    code, _ = run("ingest", str(write(tmp_path / "r.jsonl", rows)), "--root", str(tmp_path))
    assert code == 0

    def allocate(as_of: str) -> str:
        result = runner.invoke(app, ["allocate", "--root", str(tmp_path), "--as-of", as_of])
        assert result.exit_code == 0, result.output
        return result.stdout + result.stderr

    first = allocate("2026-01-06T06:00:00Z")
    assert "learned rule: rebuilt from the ledger in" in first
    assert "(no saved learned value)" in first
    assert "learned rule: kept (same anchor, no late record)" in allocate("2026-01-06T07:00:00Z")
    state = tmp_path / "meta_supervisor" / "state" / "persistence.state"
    data = bytearray(state.read_bytes())
    data[data.index(b'"anchor_us": ') + len(b'"anchor_us": ') + 5] ^= 1  # an edited anchor
    state.write_bytes(bytes(data))
    edited = allocate("2026-01-07T06:00:00Z")
    assert "learned rule: rebuilt from the ledger in" in edited
    assert "does not match its hash (edited or corrupt)" in edited
    assert "learned rule: advanced (1 bucket(s) recomputed) in" in allocate("2026-01-08T06:00:00Z")
