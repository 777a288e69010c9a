"""SIGKILL a real cycle process at each step of the commit, restart, and check nothing is lost.

The kill points are the fault hook's (``META_SUPERVISOR_FAULT=kill:<point>``, see
:mod:`meta_supervisor.state.files`): the process kills itself at exactly that point, so the test is
deterministic. A last test kills at random moments chosen by polling for evidence (history
lines, temp files) instead. After every kill: each state file is the old version or the new
one, never partial; the history verifies; a restart ends byte-identical to a run that was never
killed, with no decision recorded twice. (The ingest kill is issue 4's test.)
"""

from __future__ import annotations

import json
import os
import random
import signal
import time

import pytest

from faultkit import (
    AS_OFS,
    EXPLANATIONS,
    committed_as_ofs,
    fresh_state,
    make_inputs,
    reference_at,
    run_reference,
    seed_state,
    spawn_cycles,
    state_bytes,
)
from meta_supervisor.allocate.decision import iso
from meta_supervisor.state.files import verify_history

#: SIGKILLs and real processes: seconds each (still part of the suite).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return make_inputs(tmp_path_factory.mktemp("fleet"))


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory):
    """State file bytes after each cycle of a run that is never killed."""
    root = tmp_path_factory.mktemp("ref")
    return run_reference(fresh_state(inputs, root / "state"), AS_OFS, root / "snapshots")


def _killed(proc) -> None:
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, stderr.decode()[-2000:]


def _finish(proc) -> None:
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr.decode()[-2000:]


def _old_or_new(files, reference, cycle):
    """Each state file is absent/old (as after ``cycle - 1``) or new (as after ``cycle``)."""
    assert set(files) <= set(reference), f"unexpected files {set(files) - set(reference)}"
    for name in files:
        old = reference[name][cycle - 1] if cycle > 0 else None
        new = reference[name][cycle]
        got = files[name]
        if name == "history.jsonl" and got is not None:
            got = got[: got.rfind(b"\n") + 1] or None  # a partial last line is not committed
        assert got in (old, new), f"{name} is neither the old nor the new version"
        if got is not None and name.endswith(".json"):
            json.loads(got)


# (kill point, state file versions expected right after the kill: "old" or "new"; "new.json"
# stands for the cycle's inputs file, from which its explanations are built, written before its
# history line)
POINTS = [
    (
        "before_rename:new.json",
        {"history.jsonl": "old", "decision.json": "old", "new.json": "old"},
    ),
    (
        "after_explanations",
        {"history.jsonl": "old", "decision.json": "old", "new.json": "new"},
    ),
    (
        "history_append",
        {
            "history.jsonl": "old",
            "decision.json": "old",
            "allocation.json": "old",
            "new.json": "new",
        },
    ),
    (
        "after_history_append",
        {"history.jsonl": "new", "decision.json": "old", "allocation.json": "old"},
    ),
    (
        "before_rename:decision.json",
        {"history.jsonl": "new", "decision.json": "old", "allocation.json": "old"},
    ),
    (
        "before_rename:allocation.json",
        {"history.jsonl": "new", "decision.json": "new", "allocation.json": "old"},
    ),
]


CASES = [(point, expected, 2) for point, expected in POINTS] + [
    (*POINTS[0], 0),
    (*POINTS[2], 0),
]


@pytest.mark.parametrize(
    ("point", "expected", "cycle"), CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES]
)
def test_kill_at_each_commit_step_then_restart(inputs, reference, tmp_path, point, expected, cycle):
    paths = fresh_state(inputs, tmp_path / "state")
    if cycle:
        seed_state(paths, reference, cycle - 1)
    new_file = EXPLANATIONS.format(seq=cycle + 1)
    point = point.replace("new.json", new_file.split("/")[1])
    _killed(spawn_cycles(paths, [AS_OFS[cycle]], fault=f"kill:{point}"))

    after_kill = state_bytes(paths.state_dir)
    _old_or_new(after_kill, reference, cycle)
    for key, version in expected.items():
        name = new_file if key == "new.json" else key
        got = after_kill.get(name)
        if name == "history.jsonl" and got is not None:
            if point == "history_append":  # half a line was written and fsync'd, never committed
                assert not got.endswith(b"\n")
            got = got[: got.rfind(b"\n") + 1] or None
        want = reference[name][cycle] if version == "new" else None
        if version == "old" and cycle > 0:
            want = reference[name][cycle - 1]
        assert got == want, f"{name} after kill at {point}"
    ok, message = verify_history(paths.history)
    assert ok, message
    if point.startswith("before_rename"):
        assert any(p.name.endswith(".tmp") for p in paths.state_dir.rglob("*"))

    # Restart: the same cycle again, in a fresh process.
    _finish(spawn_cycles(paths, [AS_OFS[cycle]]))
    assert state_bytes(paths.state_dir) == reference_at(reference, cycle)
    assert committed_as_ofs(paths.history) == [iso(a) for a in AS_OFS[: cycle + 1]]
    assert not [p for p in paths.state_dir.rglob("*") if p.name.endswith(".tmp")]
    ok, message = verify_history(paths.history)
    assert ok and "unterminated" not in message, message


def test_restart_moves_on_after_a_kill_between_history_and_files(inputs, reference, tmp_path):
    """The scheduler does not retry the killed cycle but runs the next one: still nothing lost."""
    paths = fresh_state(inputs, tmp_path / "state")
    seed_state(paths, reference, 0)
    _killed(spawn_cycles(paths, [AS_OFS[1]], fault="kill:after_history_append"))
    _finish(spawn_cycles(paths, [AS_OFS[2]]))
    assert state_bytes(paths.state_dir) == reference_at(reference, 2)


def test_a_kill_before_the_history_append_leaves_no_explanations_behind(
    inputs, reference, tmp_path
):
    """The explanations file of a cycle killed before its history line names no entry: verify
    ignores it, the next cycle (another instant) replaces it with its own."""
    paths = fresh_state(inputs, tmp_path / "state")
    seed_state(paths, reference, 0)
    _killed(spawn_cycles(paths, [AS_OFS[1]], fault="kill:after_explanations"))
    assert (paths.state_dir / EXPLANATIONS.format(seq=2)).exists()
    ok, message = verify_history(paths.history)
    assert ok and "no entry names yet" in message, message
    _finish(spawn_cycles(paths, [AS_OFS[2]]))
    ok, message = verify_history(paths.history)
    assert ok and "no entry names" not in message, message
    assert committed_as_ofs(paths.history) == [iso(AS_OFS[0]), iso(AS_OFS[2])]


def _poll_then_kill(proc, evidence, deadline_s: float = 60.0) -> bool:
    """SIGKILL ``proc`` as soon as ``evidence()`` holds; False if it exited first."""
    end = time.monotonic() + deadline_s
    while proc.poll() is None and time.monotonic() < end:
        if evidence():
            os.kill(proc.pid, signal.SIGKILL)
            proc.communicate()
            return True
    proc.communicate()
    return False


def test_random_kills_across_cycles_lose_nothing(inputs, reference, tmp_path):
    """Kill a process running six cycles at moments picked by evidence, resume, repeat."""
    paths = fresh_state(inputs, tmp_path / "state")
    rng = random.Random(7)
    history = paths.history
    kills = 0
    for _ in range(3):
        done = committed_as_ofs(history)
        start = len(done) - 1 if done else 0  # the last committed cycle is re-run (idempotent)
        todo = AS_OFS[start:]
        if len(todo) <= 1:
            break
        target = len(done) + rng.randint(1, 2)
        if rng.random() < 0.5:

            def evidence(target=target):
                return len(committed_as_ofs(history)) >= target
        else:

            def evidence():
                return any(p.name.endswith(".tmp") for p in paths.state_dir.rglob("*"))

        kills += _poll_then_kill(spawn_cycles(paths, todo), evidence)
        files = state_bytes(paths.state_dir)
        cycle = max(len(committed_as_ofs(history)) - 1, 0)
        _old_or_new(files, reference, cycle)
        ok, message = verify_history(history)
        assert ok, message
    assert kills >= 1
    done = committed_as_ofs(history)
    _finish(spawn_cycles(paths, AS_OFS[max(len(done) - 1, 0) :]))
    assert state_bytes(paths.state_dir) == reference_at(reference, len(AS_OFS) - 1)
    assert committed_as_ofs(history) == [iso(a) for a in AS_OFS]
