"""engine state files: base + journal, resident engine; what a cycle decides never depends on them.

With the journal on (``JOURNAL_MIN_BYTES = 0``), the state a cycle saves is an entry appended to
``engine.journal``; the reference is the same cycles with every state written whole (the format
before the journal), and the same cycles in fresh processes (no engine kept in memory): every
history byte must be the same. A journal that was edited, cut or half-written is detected: the
cycle rebuilds, names the reason, and still records the reference's bytes.
"""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_engine import T0, _append, _records, _store_paths, op_st, policy_st

from faultkit import child_env, paths_spec
from meta_supervisor.config import Paths
from meta_supervisor.cycle import engine as engine_module
from meta_supervisor.cycle.engine import forget_resident, journal_path, meta_path
from meta_supervisor.cycle.run import run_cycle
from meta_supervisor.ledger.store import LedgerStore
from meta_supervisor.policy.model import Policy, Profile
from meta_supervisor.signals import broken


@pytest.fixture(autouse=True)
def _clean_memory():
    forget_resident()
    yield
    forget_resident()


def _journal_on(monkeypatch: pytest.MonkeyPatch, bound: int = 1 << 30) -> None:
    monkeypatch.setattr(engine_module, "JOURNAL_MIN_BYTES", 0)
    monkeypatch.setattr(engine_module, "journal_bound", lambda size: bound)


def _arrays(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def _canonical(arrays: dict[str, np.ndarray]) -> dict[str, bytes]:
    """A state's arrays with agents and strategies in name order (the engine numbers them in
    the order it first sees them, which a polars ``unique`` does not fix), as bytes."""
    agents = np.argsort(arrays["names"], kind="stable")
    strategies = np.argsort(arrays["t_names"], kind="stable")
    offsets = arrays["t_offsets"]
    out = {}
    for name, values in arrays.items():
        if name in ("t_offsets", "t_buffer"):
            continue
        if name == "header" or name.endswith("_levels"):
            out[name] = values.tobytes()
            continue
        order = agents if name == "names" or name.startswith(("a_", "c_", "r_")) else strategies
        grid = values.T if name.endswith("_digits") else values
        if name == "r_ring":  # the loss tails: one block of slots per agent
            grid = values.reshape(agents.size, -1)
        out[name] = str(grid.dtype).encode() + grid[order].tobytes()
    for i in strategies:
        buffer = arrays["t_buffer"][int(offsets[i]) : int(offsets[i + 1])]
        out[f"buffer {arrays['t_names'][i]}"] = buffer.tobytes()
    return out


def _same_arrays(mine: dict[str, np.ndarray], theirs: dict[str, np.ndarray]) -> None:
    assert _canonical(mine) == _canonical(theirs)


def _store(root: Path, hours: list[int]) -> None:
    """Records for agents a..e matured around each of ``hours`` (some late on purpose)."""
    index = 0
    for h in hours:
        items = [
            (agent, "s1" if k % 2 else "s2", -k % 5 - 1, (k * 7 % 23 - 11) / 10, float(k % 9 - 4))
            for k, agent in enumerate("abcdeabcde")
        ]
        _append(_store_paths(root), _records(items, index, T0 + timedelta(hours=h)))
        index += len(items)


HOURS = [0, 1, 2, 5, 6, 9, 12]


def _reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """The history of :data:`HOURS` with every state written whole, in fresh processes."""
    monkeypatch.setattr(engine_module, "JOURNAL_MIN_BYTES", 1 << 60)
    paths = _store_paths(tmp_path)
    state = tmp_path / "reference"
    reference = Paths(
        records=paths.records, telemetry=paths.telemetry, state_dir=state, ledger=paths.ledger
    )
    for h in HOURS:
        forget_resident()
        run_cycle(reference, T0 + timedelta(hours=h), Policy())
    monkeypatch.undo()
    forget_resident()
    return reference.history.read_bytes()


def _cycle_all(paths: Paths, *, fresh: bool, hours: list[int] = HOURS) -> list:
    runs = []
    for h in hours:
        if fresh:
            forget_resident()
        _, ledger = run_cycle(paths, T0 + timedelta(hours=h), Policy())
        runs.append(ledger.engine)
    return runs


def _paths(tmp_path: Path, name: str) -> Paths:
    paths = _store_paths(tmp_path)
    return Paths(
        records=paths.records,
        telemetry=paths.telemetry,
        state_dir=tmp_path / name,
        ledger=paths.ledger,
    )


@pytest.mark.parametrize("fresh", [False, True])
def test_journaled_cycles_record_the_bytes_of_whole_states(tmp_path, monkeypatch, fresh):
    _store(tmp_path, HOURS)
    reference = _reference(tmp_path, monkeypatch)
    _journal_on(monkeypatch)
    paths = _paths(tmp_path, "journal")
    runs = _cycle_all(paths, fresh=fresh)
    assert [r.written for r in runs] == ["full"] + ["journal"] * (len(HOURS) - 1)
    assert [r.loaded for r in runs[1:]] == ["files" if fresh else "memory"] * (len(HOURS) - 1)
    assert paths.history.read_bytes() == reference
    meta = json.loads(meta_path(paths.engine).read_text())
    assert meta["format"] == 2 and meta["journal"]["entries"] == len(HOURS) - 1


def test_compaction_writes_the_state_a_fresh_save_writes(tmp_path, monkeypatch):
    """With a journal bound of one entry, every other cycle compacts: its base holds the
    arrays of a state saved whole by the same cycles, and the journal is gone."""
    _store(tmp_path, HOURS)
    reference = _reference(tmp_path, monkeypatch)
    ref_state = _arrays((tmp_path / "reference" / "engine.state").read_bytes())
    _journal_on(monkeypatch, bound=1)  # no entry fits: each save after the first compacts
    paths = _paths(tmp_path, "compacted")
    runs = _cycle_all(paths, fresh=False)
    assert {r.written for r in runs} == {"full"}
    assert not journal_path(paths.engine).exists()
    assert json.loads(meta_path(paths.engine).read_text())["format"] == 1
    _same_arrays(_arrays(paths.engine.read_bytes()), ref_state)
    assert paths.history.read_bytes() == reference


def _damage_after(tmp_path, monkeypatch, damage) -> tuple[Paths, bytes, list]:
    """Cycles up to the fourth hour with the journal on, ``damage(paths)``, then the rest in
    fresh processes; returns the paths, the reference history and the runs after the damage."""
    _store(tmp_path, HOURS)
    reference = _reference(tmp_path, monkeypatch)
    _journal_on(monkeypatch)
    paths = _paths(tmp_path, "damaged")
    _cycle_all(paths, fresh=False, hours=HOURS[:4])
    damage(paths)
    runs = _cycle_all(paths, fresh=True, hours=HOURS[4:])
    assert paths.history.read_bytes() == reference
    return paths, reference, runs


def _flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda p: _flip(journal_path(p.engine), -3), "does not match its hash chain"),
        (lambda p: _flip(journal_path(p.engine), 60), "does not match its hash chain"),
        (
            lambda p: journal_path(p.engine).write_bytes(journal_path(p.engine).read_bytes()[:-7]),
            "truncated",
        ),
        (lambda p: journal_path(p.engine).write_bytes(b""), "truncated"),
        (lambda p: journal_path(p.engine).unlink(), "engine.journal is missing"),
        (lambda p: _flip(p.engine, 200), "engine.state does not match"),
    ],
)
def test_an_edited_or_cut_journal_is_rebuilt_naming_why(tmp_path, monkeypatch, damage, reason):
    """Issue #13's rule: nothing is decided on a state that does not verify; the rebuild
    records the bytes the undamaged cycles record."""
    _, _, runs = _damage_after(tmp_path, monkeypatch, damage)
    assert runs[0].mode == "rebuilt" and reason in runs[0].reason, runs[0].reason
    assert [r.mode for r in runs[1:]] == ["warm"] * (len(runs) - 1)


def test_a_resident_engine_sees_its_files_replaced(tmp_path, monkeypatch):
    """The engine kept in memory is used only while the files are the ones it wrote: an
    edited journal is read (and rebuilt) even by the process that wrote it."""
    _store(tmp_path, HOURS)
    _journal_on(monkeypatch)
    paths = _paths(tmp_path, "resident")
    _cycle_all(paths, fresh=False, hours=HOURS[:3])
    _flip(journal_path(paths.engine), -3)
    _, ledger = run_cycle(paths, T0 + timedelta(hours=HOURS[3]), Policy())
    assert ledger.engine is not None and ledger.engine.mode == "rebuilt"
    assert "hash chain" in ledger.engine.reason


def test_a_journal_write_cut_short_leaves_the_old_state(tmp_path, monkeypatch):
    """A crash in the middle of an append (simulated: part of a frame after the committed
    bytes, engine.json not updated) leaves the committed state: the next cycle loads it warm,
    cuts the partial frame off and records the reference's bytes."""

    def half_append(paths: Paths) -> None:
        data = journal_path(paths.engine).read_bytes()
        with open(journal_path(paths.engine), "ab") as handle:
            handle.write(data[: len(data) // 3])  # a frame's start: magic, length, hash, part

    paths, _, runs = _damage_after(tmp_path, monkeypatch, half_append)
    assert [r.mode for r in runs] == ["warm"] * len(runs)
    assert runs[0].loaded == "files"
    meta = json.loads(meta_path(paths.engine).read_text())
    assert journal_path(paths.engine).stat().st_size == meta["journal"]["bytes"]


def replay_journaled(store: Paths, ops: list, bound: int) -> Iterator[tuple[str, Any, Any]]:
    """Ingest into ``store`` as ``ops`` say (one first record, then each ``("ingest",
    records)``), with the journal on and compacted past ``bound`` times the base, no engine
    kept in memory before or after; yields ``(kind, arg, as_of)`` for every other op (``as_of``
    moved by a ``("cycle", hours)``) for the caller to act on."""
    patch = pytest.MonkeyPatch()
    patch.setattr(engine_module, "JOURNAL_MIN_BYTES", 0)
    patch.setattr(engine_module, "journal_bound", lambda size: bound * size)
    forget_resident()
    try:
        as_of, index = T0, 0
        for kind, arg in [("ingest", [("a", "s1", -1, 5.0, 1.0)]), *ops]:
            if kind == "ingest":
                _append(store, _records(arg, index, as_of))
                index += len(arg)
                continue
            if kind == "cycle":
                as_of += timedelta(hours=arg)
            yield kind, arg, as_of
    finally:
        patch.undo()
        forget_resident()


@given(policy=policy_st, ops=st.lists(op_st, min_size=2, max_size=10))
@settings(max_examples=15, deadline=None)
def test_a_resident_engine_records_what_fresh_processes_record(policy, ops, tmp_path_factory):
    """The same ingests and cycles, one state kept in memory and one loaded from its files
    each cycle (journal on, compacting every few entries): the same history bytes and the same
    saved state."""
    root = tmp_path_factory.mktemp("resident")
    store = _store_paths(root)
    dirs = {
        name: Paths(store.records, store.telemetry, state_dir=root / name, ledger=store.ledger)
        for name in ("kept", "fresh")
    }
    for kind, _, as_of in replay_journaled(store, ops, bound=3):
        if kind == "cycle":
            kept = engine_module._RESIDENT.pop(dirs["fresh"].engine.resolve(), None)
            _, fresh = run_cycle(dirs["fresh"], as_of, policy)
            engine_module._RESIDENT.pop(dirs["fresh"].engine.resolve(), None)
            assert kept is None
            _, mine = run_cycle(dirs["kept"], as_of, policy)
            assert fresh.engine is not None and mine.engine is not None
            assert fresh.engine.loaded in ("files", "")
            assert mine.engine.mode == fresh.engine.mode
    if dirs["kept"].history.exists():
        assert dirs["kept"].history.read_bytes() == dirs["fresh"].history.read_bytes()
        _same_arrays(_saved(dirs["kept"], policy), _saved(dirs["fresh"], policy))


files_policy_st = st.builds(
    Policy,
    profile=st.just(Profile.SELECT),
    lookback_hours=st.just(6.0),
    # a short cadence history lays a tail again from fewer records than its ring held
    cadence_history_hours=st.sampled_from([10.0, 30.0, 400.0]),
    broken_memory_records=st.integers(1, 3),
    broken_consecutive=st.integers(1, 2),
    min_records=st.just(1),
    cvar_min_samples=st.just(2),
)


def _burst(agents: list[str], count: int, first: int, seed: int) -> list[tuple]:
    """``count`` hourly records of each of ``agents``, the first ``first`` hours from the
    current as_of (late, tied with earlier ones, or ahead), t(4)-like PnL in tenths of a bps."""
    rng = np.random.default_rng(seed)
    pnl = np.round(rng.standard_t(4, (len(agents), count)) * 100) / 10
    return [
        (agent, "s1" if agent < "c" else "s2", first + i, float(pnl[k, i]), 1.0)
        for k, agent in enumerate(agents)
        for i in range(count)
    ]


# bursts long enough to fill (and wrap) rings, and records far before the cadence history
burst_op_st = st.tuples(
    st.just("ingest"),
    st.builds(
        _burst,
        st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), min_size=1, max_size=3, unique=True),
        st.integers(1, 25),
        st.integers(-60, 3),
        st.integers(0, 2**16),
    ),
)


@given(
    policy=files_policy_st,
    ops=st.lists(st.one_of(op_st, burst_op_st), min_size=2, max_size=12),
    bound=st.sampled_from([1, 3]),
)
@example(  # a late record lays agent a's tail again from a 10 h history: 13 slots held, 10 kept
    policy=Policy(
        profile=Profile.SELECT,
        lookback_hours=6.0,
        cadence_history_hours=10.0,
        broken_memory_records=1,
        broken_consecutive=1,
        min_records=1,
        cvar_min_samples=2,
    ),
    ops=[
        ("ingest", _burst(["a", "b"], 25, -30, 1)),
        ("cycle", 1),
        ("ingest", _burst(["a"], 1, -10, 2)),
        ("cycle", 1),
        ("cycle", 2),
    ],
    bound=3,
)
@settings(max_examples=20, deadline=None)
def test_a_resident_engines_files_hold_its_state(policy, ops, bound, tmp_path_factory):
    """After every saving cycle, what the files hold (the base and its journal, as a fresh
    process loads them) is the resident engine's state, bit for bit: every array, the loss
    ring's slots included (written, zeroed when a tail is laid again after a late record, or
    added by a new agent), entry after entry, and across compactions. (The resident engine
    and a fresh process compared with each other share any slot the journal leaves out.)"""
    root = tmp_path_factory.mktemp("files")
    store = _store_paths(root)
    ledger = LedgerStore(store.ledger)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(broken, "MAX_SCALE_RECORDS", 12)  # rings of 12 + R + r - 1 slots wrap
        for kind, _, as_of in replay_journaled(store, ops, bound=bound):
            if kind != "cycle":
                continue
            run_cycle(store, as_of, policy)
            kept = engine_module._RESIDENT.get(store.engine.resolve())
            if kept is None:
                continue
            loaded, _, why = engine_module._load(
                store.engine, ledger, ledger.manifest(), as_of, policy
            )
            assert loaded is not None, why
            live, files = kept.engine.state_arrays(), loaded.state_arrays()
            assert sorted(live) == sorted(files)
            for name, values in live.items():
                assert files[name].dtype == values.dtype, name
                assert files[name].tobytes() == values.tobytes(), name


def _saved(paths: Paths, policy: Policy) -> dict[str, np.ndarray]:
    meta = json.loads(meta_path(paths.engine).read_text())
    payloads = (
        engine_module._read_journal(journal_path(paths.engine), meta, meta["journal"])
        if meta["format"] == 2
        else []
    )
    state, image = engine_module._restore(paths.engine.read_bytes(), payloads, policy, paths.engine)
    # the image a load keeps for the next journal entry is the files' own (not taken again from
    # the restored engine): it must be the engine's image, array by array, bit for bit
    taken = state.state_arrays(buffers=False)
    assert sorted(image) == sorted(taken)
    for name, values in taken.items():
        assert image[name].dtype == values.dtype and image[name].shape == values.shape, name
        assert image[name].tobytes() == values.tobytes(), name
    return state.state_arrays()


def test_preload_keeps_the_saved_state_for_the_next_cycle(tmp_path, monkeypatch):
    """What the service does at start: the state is loaded (checked) once and the next
    recording cycle starts from memory, recording the bytes a fresh process records."""
    _store(tmp_path, HOURS)
    reference = _reference(tmp_path, monkeypatch)
    _journal_on(monkeypatch)
    paths = _paths(tmp_path, "preloaded")
    _cycle_all(paths, fresh=True, hours=HOURS[:3])
    forget_resident()
    store = engine_module.LedgerStore(paths.ledger)
    assert engine_module.preload(paths.engine, store, Policy()) == ""
    runs = _cycle_all(paths, fresh=False, hours=HOURS[3:])
    assert [r.loaded for r in runs] == ["memory"] * len(runs)
    assert paths.history.read_bytes() == reference
    forget_resident()
    assert "no saved state" in engine_module.preload(
        tmp_path / "none" / "engine.state", store, Policy()
    )


_KILLED_CHILD = """
import json, sys
from datetime import datetime
from meta_supervisor.config import Paths
from meta_supervisor.cycle import engine
from meta_supervisor.cycle.run import run_cycle
from meta_supervisor.ledger.store import LedgerStore
from meta_supervisor.policy.model import Policy, Profile
from meta_supervisor.signals import broken
engine.JOURNAL_MIN_BYTES = 0
engine.journal_bound = lambda size: 1 << 30
spec = json.loads(sys.argv[1])
paths = Paths(**{k: __import__("pathlib").Path(v) for k, v in spec["paths"].items()})
run_cycle(paths, datetime.fromisoformat(spec["as_of"]), Policy())
"""


def test_a_kill_between_the_journal_append_and_engine_json_leaves_the_old_state(
    tmp_path, monkeypatch
):
    """SIGKILL after the entry is appended and fsynced, before engine.json names it: the
    entry is not committed; the next cycle loads the previous state warm, cuts the entry off,
    and every cycle records the bytes of the cycles without the kill."""
    _store(tmp_path, HOURS)
    reference = _reference(tmp_path, monkeypatch)
    _journal_on(monkeypatch)
    paths = _paths(tmp_path, "killed")
    _cycle_all(paths, fresh=False, hours=HOURS[:3])
    committed = json.loads(meta_path(paths.engine).read_text())["journal"]["bytes"]
    spec = {
        "paths": paths_spec(paths),
        "as_of": (T0 + timedelta(hours=HOURS[3])).isoformat(),
    }
    done = subprocess.run(
        [sys.executable, "-c", _KILLED_CHILD, json.dumps(spec)],
        env=child_env("kill:engine_journal_appended"),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    assert journal_path(paths.engine).stat().st_size > committed  # appended, not committed
    assert json.loads(meta_path(paths.engine).read_text())["journal"]["bytes"] == committed
    runs = _cycle_all(paths, fresh=True, hours=HOURS[3:])
    assert [(r.mode, r.loaded, r.written) for r in runs] == [("warm", "files", "journal")] * len(
        runs
    )
    assert paths.history.read_bytes() == reference
