"""Two cycles at once: one waits or refuses naming the lock and its holder; never interleaved.

Processes are real (the CLI); the holder is frozen inside the lock with the fault hook
``stop:locked`` (SIGSTOP) and the test waits for the stop with ``waitpid(WUNTRACED)``, so the
overlap is certain, not a race won by sleeping.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from faultkit import AS_OFS, committed_as_ofs, fresh_state, make_inputs, spawn_cli, spawn_cycles
from meta_supervisor.allocate.decision import iso
from meta_supervisor.cycle.run import run_cycle
from meta_supervisor.state.files import LockBusy, StateLock, verify_history

#: SIGKILLs and real processes: seconds each (still part of the suite).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_inputs(tmp_path_factory.mktemp("fleet"))


def _stopped_holder(paths, as_of):
    """A CLI cycle frozen while it holds the state lock."""
    holder = spawn_cli(paths, "allocate", "--as-of", iso(as_of), "--json", fault="stop:locked")
    _, status = os.waitpid(holder.pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status), "the holder did not reach the lock"
    return holder


def _entries(paths):
    return [json.loads(line) for line in paths.history.read_text().splitlines()]


def test_second_cycle_refuses_naming_lock_and_holder_pid(inputs, tmp_path):
    paths = fresh_state(inputs, tmp_path / "state")
    holder = _stopped_holder(paths, AS_OFS[0])
    try:
        second = spawn_cli(paths, "allocate", "--as-of", iso(AS_OFS[0]))
        _, err = second.communicate(timeout=60)
        assert second.returncode == 3, err
        flat = " ".join(err.split())
        assert str(paths.lock) in flat.replace(" ", "") or ".lock" in flat
        assert f"pid {holder.pid}" in flat
        assert not paths.history.exists()  # the refused cycle wrote nothing
    finally:
        os.kill(holder.pid, signal.SIGCONT)
    _, err = holder.communicate(timeout=60)
    assert holder.returncode == 0, err
    assert committed_as_ofs(paths.history) == [iso(AS_OFS[0])]
    assert verify_history(paths.history)[0]


def test_waiting_cycle_runs_after_the_holder_and_chains_on_its_decision(inputs, tmp_path):
    paths = fresh_state(inputs, tmp_path / "state")
    holder = _stopped_holder(paths, AS_OFS[0])
    waiter = spawn_cli(paths, "allocate", "--as-of", iso(AS_OFS[1]), "--wait", "120", "--json")
    os.kill(holder.pid, signal.SIGCONT)
    for proc in (holder, waiter):
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    entries = _entries(paths)
    assert [e["decision"]["as_of"] for e in entries] == [iso(AS_OFS[0]), iso(AS_OFS[1])]
    # The waiter read the state only after the holder committed: it smoothed against it.
    assert entries[1]["decision"]["provenance"]["previous_decision_hash"] == entries[0]["hash"]
    assert verify_history(paths.history)[0]


def test_cycles_started_together_serialise(inputs, tmp_path):
    """Three processes at once on the same as_of and one on the next: one entry per as_of."""
    paths = fresh_state(inputs, tmp_path / "state")
    procs = [spawn_cycles(paths, [AS_OFS[0]], wait=120) for _ in range(3)]
    procs.append(spawn_cycles(paths, [AS_OFS[0], AS_OFS[1]], wait=120))
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()[-2000:]
    ok, message = verify_history(paths.history)
    assert ok, message
    assert committed_as_ofs(paths.history) == [iso(AS_OFS[0]), iso(AS_OFS[1])]


def test_same_as_of_without_waiting_refuses_or_replays(inputs, tmp_path):
    paths = fresh_state(inputs, tmp_path / "state")
    procs = [spawn_cli(paths, "allocate", "--as-of", iso(AS_OFS[0])) for _ in range(2)]
    codes = []
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        codes.append(proc.returncode)
        assert proc.returncode in (0, 3), err
        if proc.returncode == 3:
            assert "another cycle is running (pid" in " ".join(err.split())
    assert 0 in codes
    assert committed_as_ofs(paths.history) == [iso(AS_OFS[0])]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_lock_file_of_a_dead_process_is_recovered(inputs, tmp_path):
    paths = fresh_state(inputs, tmp_path / "state")
    dead = _dead_pid()
    paths.lock.write_text(str(dead))
    run_cycle(paths, AS_OFS[0])  # no wait: a stale file must not block
    assert paths.lock.read_text() == str(os.getpid())
    assert committed_as_ofs(paths.history) == [iso(AS_OFS[0])]


def test_lock_of_a_killed_holder_is_released_by_the_kernel(inputs, tmp_path):
    paths = fresh_state(inputs, tmp_path / "state")
    holder = _stopped_holder(paths, AS_OFS[0])
    with pytest.raises(LockBusy, match=f"pid {holder.pid}"), StateLock(paths.lock):
        pass
    os.kill(holder.pid, signal.SIGKILL)
    holder.communicate(timeout=60)
    assert paths.lock.read_text() == str(holder.pid)  # the file still names the dead holder
    with StateLock(paths.lock):  # ... but the flock died with it
        assert paths.lock.read_text() == str(os.getpid())
    assert not paths.history.exists()


def test_late_duplicate_run_records_nothing_and_keeps_the_newer_files(inputs, tmp_path):
    """A queued job for an instant already decided, after later cycles, is a no-op."""
    paths = fresh_state(inputs, tmp_path / "state")
    run_cycle(paths, AS_OFS[0])
    run_cycle(paths, AS_OFS[1])
    before = {p: p.read_bytes() for p in paths.state_dir.rglob("*") if p.is_file()}
    decision, _ = run_cycle(paths, AS_OFS[0])
    assert decision.as_of == iso(AS_OFS[0])
    assert {p: p.read_bytes() for p in paths.state_dir.rglob("*") if p.is_file()} == before
