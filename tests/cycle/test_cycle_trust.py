"""Issue #13: a cycle checks every file it builds on and refuses, naming the problem, rather
than acting on or overwriting something that does not verify."""

from __future__ import annotations

import errno
import json
import os
import shutil
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from faultkit import AS_OFS, STATE_FILES, fresh_state, make_inputs
from meta_supervisor.allocate.decision import canonical_json
from meta_supervisor.cli.main import app
from meta_supervisor.config import Paths
from meta_supervisor.cycle import run
from meta_supervisor.cycle.run import run_cycle
from meta_supervisor.ingest.batch import ingest
from meta_supervisor.ingest.records import empty_quarantine, empty_records
from meta_supervisor.ingest.sources import read_records, read_telemetry
from meta_supervisor.ledger.store import LedgerError, LedgerStore
from meta_supervisor.state import files
from meta_supervisor.state.files import HistoryError
from meta_supervisor.state.overrides import OverrideError


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Paths:
    """Three recorded cycles over the demo fleet's raw files (no store)."""
    root = tmp_path_factory.mktemp("trust")
    paths = replace(fresh_state(make_inputs(root), root / "state"), ledger=None)
    for as_of in AS_OFS[:3]:
        run_cycle(paths, as_of)
    return paths


@pytest.fixture
def state(recorded: Paths, tmp_path: Path) -> Paths:
    """A private copy of the recorded state directory."""
    target = tmp_path / "state"
    shutil.copytree(recorded.state_dir, target)
    return replace(recorded, state_dir=target)


def _snapshot(paths: Paths) -> dict[str, bytes]:
    return {name: (paths.state_dir / name).read_bytes() for name in STATE_FILES}


def _verify(paths: Paths) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["verify", "--state-dir", str(paths.state_dir)])
    return result.exit_code, " ".join(result.output.split())


def _refused(paths: Paths, match: str) -> None:
    """The next cycle refuses naming ``match`` and leaves every state file as it was."""
    before = _snapshot(paths)
    with pytest.raises(HistoryError, match=match) as caught:
        run_cycle(paths, AS_OFS[3])
    assert caught.value.exit_code == 1
    assert _snapshot(paths) == before


def test_cycle_refuses_an_edited_decision_json(state: Paths) -> None:
    """An edited decision.json used to be overwritten by the next cycle; verify then passed."""
    decision = json.loads(state.decision.read_text())
    first = sorted(decision["weights"])[0]
    decision["weights"][first] = 0.2
    state.decision.write_text(canonical_json(decision, indent=2))
    _refused(state, "decision.json .* is not the history's last entry")
    assert _verify(state)[0] == 1


def test_cycle_refuses_a_history_cut_short(state: Paths) -> None:
    """A history with its newest entry cut off used to be built on (and the evidence erased)."""
    lines = state.history.read_bytes().splitlines(keepends=True)
    state.history.write_bytes(b"".join(lines[:-1]))
    _refused(state, "cut off, or the file was edited")
    code, output = _verify(state)
    assert code == 1 and "cut off" in output


def test_cycle_refuses_an_edited_base_entry(state: Paths) -> None:
    """The entry a cycle smooths against is checked against its hash."""
    lines = state.history.read_bytes().splitlines(keepends=True)
    entry = json.loads(lines[-1])
    name = sorted(entry["decision"]["weights"])[0]
    entry["decision"]["weights"][name] = 0.25
    lines[-1] = canonical_json(entry).encode() + b"\n"
    state.history.write_bytes(b"".join(lines))
    state.decision.write_text(canonical_json(entry["decision"], indent=2))
    _refused(state, "entry 3 .*content does not match its hash")


def test_cycle_refuses_decision_json_without_a_history(state: Paths) -> None:
    """A deleted history used to start a new chain over the old decision files."""
    state.history.unlink()
    before = state.decision.read_bytes()
    with pytest.raises(HistoryError, match="no entry"):
        run_cycle(state, AS_OFS[3])
    assert state.decision.read_bytes() == before
    assert not state.history.exists()


def test_cycle_repairs_an_interrupted_cycle(state: Paths) -> None:
    """decision.json one entry behind (a kill between the writes) is repaired, not refused."""
    lines = state.history.read_bytes().splitlines(keepends=True)
    previous = json.loads(lines[-2])["decision"]
    state.decision.write_text(canonical_json(previous, indent=2))
    decision, _ = run_cycle(state, AS_OFS[3])
    assert json.loads(state.decision.read_text())["as_of"] == decision.as_of
    assert _verify(state)[0] == 0


def test_verify_checks_allocation_json(state: Paths) -> None:
    """verify used to check decision.json only."""
    assert _verify(state)[0] == 0
    weights = json.loads(state.allocation.read_text())
    name = sorted(weights)[0]
    weights[name] = 0.99
    state.allocation.write_text(canonical_json(weights, indent=2))
    code, output = _verify(state)
    assert code == 1 and "allocation.json" in output


def test_verify_without_a_history_is_a_problem(tmp_path: Path) -> None:
    """verify on a missing history (a mistyped --root) used to say ok."""
    code, output = _verify(replace(Paths.under(tmp_path), state_dir=tmp_path / "nothing"))
    assert code == 1 and "no history" in output and str(tmp_path / "nothing") in output


def test_a_year_9999_record_is_quarantined_and_cycles_go_on(
    recorded: Paths, tmp_path: Path
) -> None:
    """It used to be accepted and then crash every raw-file cycle."""
    records = tmp_path / "records.jsonl"
    lines = recorded.records.read_text().splitlines()
    bad = json.loads(lines[0]) | {"ts": "9999-12-31T23:00:00Z", "run_id": "far-future"}
    records.write_text("\n".join([*lines, json.dumps(bad)]) + "\n")
    paths = replace(recorded, records=records, state_dir=tmp_path / "state")
    for as_of in AS_OFS[:2]:
        _, ledger = run_cycle(paths, as_of)
        assert ledger.quarantine.filter(ledger.quarantine["field"] == "ts").height == 1


def _cli(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, " ".join(result.output.split())


def test_mistyped_root_is_an_error_naming_the_paths(tmp_path: Path) -> None:
    """A mistyped --root used to record an all-cash allocation and exit 0."""
    root = tmp_path / "typo"
    code, output = _cli("allocate", "--root", root, "--as-of", AS_OFS[0].isoformat())
    assert code == 2
    assert str(root / "meta_supervisor" / "ledger") in output
    assert str(root / "alpha" / "reconciled.jsonl") in output
    assert not (root / "meta_supervisor" / "state" / "history.jsonl").exists()
    code, _ = _cli("allocate", "--root", root, "--as-of", AS_OFS[0].isoformat(), "--allow-empty")
    assert code == 0


def test_records_file_with_nothing_valid_is_an_error(recorded: Paths, tmp_path: Path) -> None:
    records = tmp_path / "records.jsonl"
    records.write_text('{"ts": "2026-01-10", "agent": "a"}\n')
    paths = replace(recorded, records=records, state_dir=tmp_path / "state")
    with pytest.raises(run.NoInputs, match=r"records.jsonl: no valid record \(1 rows refused\)"):
        run_cycle(paths, AS_OFS[0])
    assert not paths.history.exists()


def test_store_without_records_is_an_error(recorded: Paths, tmp_path: Path) -> None:
    """A store that holds telemetry only is "nothing found" too."""
    store = LedgerStore(tmp_path / "ledger")
    telemetry = read_telemetry(recorded.telemetry).records
    with store.writer() as writer:
        writer.append(empty_records(), telemetry, empty_quarantine())
    assert store.exists()
    paths = replace(recorded, ledger=tmp_path / "ledger", state_dir=tmp_path / "state")
    with pytest.raises(run.NoInputs, match="holds no records"):
        run_cycle(paths, AS_OFS[0])


@pytest.mark.parametrize("as_of", ["0001-01-01T00:00:00Z", "2200-01-01T00:00:00Z"])
def test_as_of_outside_the_supported_instants_is_one_error_line(state: Paths, as_of: str) -> None:
    """--as-of 0001-01-01T00:00:00Z ended in a traceback (OverflowError)."""
    code, output = _cli(
        "allocate",
        "--state-dir",
        state.state_dir,
        "--records",
        state.records,
        "--telemetry",
        state.telemetry,
        "--as-of",
        as_of,
        "--allow-future",
    )
    assert code == 2 and output.startswith("error: --as-of") and "outside" in output


def test_far_future_as_of_is_refused_unless_allowed(state: Paths) -> None:
    """A future --as-of typo used to be recorded, then block every later cycle."""
    now = AS_OFS[3]
    before = _snapshot(state)
    with pytest.raises(run.FutureAsOf, match="after the clock"):
        run_cycle(state, now + timedelta(days=365), now=now)
    assert _snapshot(state) == before
    run_cycle(state, now + timedelta(days=365), now=now, write=False)  # a dry run may look ahead
    run_cycle(state, now + run.FUTURE_TOLERANCE, now=now)  # a scheduler starting early is fine
    far = now + timedelta(days=2)
    decision, _ = run_cycle(state, far, now=now, allow_future=True)
    assert decision.as_of == far.isoformat().replace("+00:00", "Z")


def test_an_emptied_overrides_file_is_refused_not_a_lifted_exclusion(state: Paths) -> None:
    """An empty overrides.json used to lift every exclusion (the demo's hydra got capital)."""
    assert "hydra" in state.overrides.read_text()
    state.overrides.write_text("")
    before = _snapshot(state)
    with pytest.raises(OverrideError, match="overrides file is empty"):
        run_cycle(state, AS_OFS[3])
    assert _snapshot(state) == before


def test_an_override_for_an_unknown_agent_is_loud(state: Paths) -> None:
    """An active override naming no agent used to be ignored silently."""
    items = json.loads(state.overrides.read_text())
    items[0] = items[0] | {"agent": "hydr"}  # a typo of hydra, the demo's excluded agent
    state.overrides.write_text(json.dumps(items))
    code, output = _cli(
        "allocate",
        "--state-dir",
        state.state_dir,
        "--records",
        state.records,
        "--telemetry",
        state.telemetry,
        "--as-of",
        AS_OFS[3].isoformat(),
    )
    assert code == 0
    assert "override for 'hydr' names no agent of this decision" in output
    assert "did you mean 'hydra'?" in output


def test_conflicting_duplicate_on_raw_files_is_reported(recorded: Paths, tmp_path: Path) -> None:
    """Two rows with the same run_id and different PnL were resolved silently on raw files."""
    records = tmp_path / "records.jsonl"
    lines = recorded.records.read_text().splitlines()
    twin = json.loads(lines[0])
    twin["realized_pnl_bps"] = float(twin["realized_pnl_bps"]) + 100.0
    records.write_text("\n".join([*lines, json.dumps(twin)]) + "\n")
    paths = replace(recorded, records=records, state_dir=tmp_path / "state")
    _, ledger = run_cycle(paths, AS_OFS[0], write=False)
    conflicts = ledger.quarantine.filter(pl.col("field") == "record_id")
    assert conflicts.height == 1
    assert "conflicting duplicate" in conflicts["reason"][0]
    assert str(records) == conflicts["source"][0]


def _allocate(paths: Paths, as_of: datetime) -> tuple[int, str]:
    return _cli(
        "allocate",
        "--state-dir",
        paths.state_dir,
        "--records",
        paths.records,
        "--telemetry",
        paths.telemetry,
        "--as-of",
        as_of.isoformat(),
    )


def test_disk_full_is_one_error_line(state: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk (ENOSPC at fsync) ended in a traceback."""
    real_fsync = os.fsync

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "fsync", full)
    code, output = _allocate(state, AS_OFS[3])
    monkeypatch.setattr(files.os, "fsync", real_fsync)
    assert code == 1, output
    assert output.startswith("error:") and "No space left on device" in output
    assert "Traceback" not in output
    run_cycle(state, AS_OFS[3])  # the next cycle, disk freed, completes
    assert _verify(state)[0] == 0


def test_read_only_state_dir_is_one_error_line(
    state: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only state directory ended in a traceback (simulated: tests run as root)."""
    real_open = os.open

    def read_only(path: object, flags: int, *args: object) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(files.os, "open", read_only)
    code, output = _allocate(state, AS_OFS[3])
    assert code == 1, output
    assert output.startswith(f"error: {state.lock}") and "Read-only file system" in output


@pytest.mark.parametrize("kind", ["records", "telemetry"])
def test_truncated_store_segment_is_one_error_line(
    recorded: Paths, tmp_path: Path, kind: str
) -> None:
    """A truncated Parquet segment ended in a traceback. The telemetry is read on the pool
    beside the engine's advance: its error is the cycle's, and nothing is saved."""
    ledger = tmp_path / "ledger"
    ingest([recorded.records, recorded.telemetry], ledger)
    segment = sorted((ledger / kind).glob("*.parquet"))[-1]
    segment.write_bytes(segment.read_bytes()[: segment.stat().st_size // 2])
    paths = replace(recorded, ledger=ledger, state_dir=tmp_path / "state")
    with pytest.raises(LedgerError, match="a segment of the ledger store cannot be read"):
        run_cycle(paths, AS_OFS[0])
    assert not paths.history.exists()
    assert not paths.engine.exists() and not paths.persistence.exists()


def test_truncated_parquet_records_file_is_one_error_line(recorded: Paths, tmp_path: Path) -> None:
    whole = tmp_path / "whole.parquet"
    read_records(recorded.records).records.write_parquet(whole)
    truncated = tmp_path / "records.parquet"
    truncated.write_bytes(whole.read_bytes()[:300])
    code, output = _allocate(
        replace(recorded, records=truncated, state_dir=tmp_path / "s"), AS_OFS[0]
    )
    assert code == 2 and output.startswith(f"error: {truncated}: not a readable Parquet file")


def test_override_add_on_a_mistyped_root_is_an_error(tmp_path: Path) -> None:
    """With no decision to check against, the override went silently where no cycle reads it."""
    root = tmp_path / "typo"
    args = ["override", "add", "hydra", "--exclude", "--reason", "r", "--for", "1d"]
    code, output = _cli(*args, "--root", root)
    assert code == 2 and "no decision yet" in output
    assert str(root / "meta_supervisor" / "state" / "decision.json") in output
    assert not (root / "meta_supervisor" / "state" / "overrides.json").exists()
    assert _cli(*args, "--root", root, "--allow-unknown")[0] == 0
