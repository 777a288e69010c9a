"""Attacks on the engine's state files (base, journal, engine.json) and its resident copy.

Issue #13's rule: nothing is decided on a state that does not verify. A state edited, cut,
reordered, swapped, half-written or rolled back is either refused (rebuilt, the reason named)
or is a true earlier state of the same ledger (advanced warm); either way every recorded
decision is the bytes a cycle recomputing from all the records records.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import zipfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_engine import T0, _append, _records, _store_paths, policy_st, record_st
from test_engine_journal import (
    _KILLED_CHILD,
    HOURS,
    _cycle_all,
    _damage_after,
    _flip,
    _journal_on,
    _paths,
    _reference,
    _store,
    replay_journaled,
)

from faultkit import child_env, paths_spec
from meta_supervisor.config import Paths
from meta_supervisor.cycle import engine as engine_module
from meta_supervisor.cycle.engine import forget_resident, journal_path, meta_path, next_path
from meta_supervisor.cycle.run import run_cycle
from meta_supervisor.ledger.store import LedgerStore
from meta_supervisor.policy.model import Policy
from meta_supervisor.signals import journal as jr
from meta_supervisor.signals.incremental import read_npz


@pytest.fixture(autouse=True)
def _clean_memory():
    forget_resident()
    yield
    forget_resident()


def _files(paths: Paths) -> list[Path]:
    engine = paths.engine
    return [meta_path(engine), engine, journal_path(engine), next_path(engine)]


def _copy_files(paths: Paths, to: Path) -> None:
    to.mkdir(parents=True, exist_ok=True)
    for path in _files(paths):
        if path.exists():
            shutil.copy2(path, to / path.name)


def _restore_files(paths: Paths, source: Path) -> None:
    """The state files as they were in ``source`` (absent there: removed)."""
    for path in _files(paths):
        saved = source / path.name
        if saved.exists():
            shutil.copy2(saved, path.with_name(path.name + ".tmp"))
            os.replace(path.with_name(path.name + ".tmp"), path)
        else:
            path.unlink(missing_ok=True)


def _load(paths: Paths) -> tuple[object, str]:
    store = LedgerStore(paths.ledger)
    engine, _, reason = engine_module._load(
        paths.engine, store, store.manifest(), T0 + timedelta(hours=99), Policy()
    )
    return engine, reason


# ---------------------------------------------------------------- read_npz: hostile headers


def _npz_with_header(header: bytes) -> bytes:
    """An .npz of two members whose first member's .npy header dict is ``header`` (padded
    to the original length, so every zip offset still holds)."""
    out = io.BytesIO()
    np.savez(out, first=np.arange(5.0), second=np.array(["ab", "c"]))
    data = out.getvalue()
    i = data.index(b"{'descr': '<f8'")
    j = data.index(b"\n", i)
    assert len(header) <= j - i
    return data[:i] + header.ljust(j - i) + data[j:]


@pytest.mark.parametrize(
    "header",
    [
        # found: tokenize.TokenError escaped (not a ValueError: a cycle crashed)
        b"{'descr': '<f8', 'fortran_order': False, 'shape': (5,), ",
        # found: a negative dimension read the whole rest of the file as the member
        b"{'descr': '|u1', 'fortran_order': False, 'shape': (-1,), }",
        # found: an empty type with a huge shape passed the size check, then OverflowError
        b"{'descr': '|V0', 'fortran_order': False, 'shape': (10000000000, 10000000000), }",
        b"{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000000000,), }",
        b"{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904, 4), }",
        b"{'descr': '|O', 'fortran_order': False, 'shape': (5,), }",
        b"{'descr': [('a', '|O')], 'fortran_order': False, 'shape': (5,), }",
        b"{'descr': __import__('os'), 'fortran_order': False, 'shape': (5,), }",
        b"{'descr': '<q9', 'fortran_order': False, 'shape': (5,), }",
    ],
)
def test_the_unchecked_npz_reader_refuses_hostile_headers(header):
    """No allocation from a claimed size, no pickle, no code: a ValueError, whatever the
    header of a member claims."""
    with pytest.raises(ValueError):
        read_npz(_npz_with_header(header), check=False)


# ---------------------------------------------------------------- the base, edited


@pytest.fixture(scope="module")
def journaled(tmp_path_factory) -> Paths:
    """A store and a state after four cycles with the journal on (three entries)."""
    root = tmp_path_factory.mktemp("journaled")
    patch = pytest.MonkeyPatch()
    patch.setattr(engine_module, "JOURNAL_MIN_BYTES", 0)
    patch.setattr(engine_module, "journal_bound", lambda size: 1 << 30)
    try:
        _store(root, HOURS)
        paths = _paths(root, "state")
        _cycle_all(paths, fresh=False, hours=HOURS[:4])
    finally:
        patch.undo()
        forget_resident()
    return paths


def _member_data(data: bytes, name: str) -> int:
    """Where member ``name``'s array bytes start in the .npz ``data``."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo(f"{name}.npy")
    at = info.header_offset
    start = at + 30 + int.from_bytes(data[at + 26 : at + 28], "little")
    start += int.from_bytes(data[at + 28 : at + 30], "little")
    return data.index(b"\n", start) + 1


def _edits(data: bytes) -> list[tuple[str, bytes]]:
    """Edits of a base that each raised something else than ValueError while parsed (before
    its hash was checked), and random byte flips."""
    out = []
    # the central directory's compression method of the first member: NotImplementedError
    cd = data.index(b"PK\x01\x02")
    edited = bytearray(data)
    edited[cd + 10 : cd + 12] = (99).to_bytes(2, "little")
    out.append(("compression", bytes(edited)))
    # an .npy header dict cut open: tokenize.TokenError
    i = data.index(b"'fortran_order': False, 'shape': (")
    j = data.index(b"}", i)
    out.append(("header", data[:j] + b" " + data[j + 1 :]))
    # an agent name that is no code point: SystemError from numpy's str
    at = _member_data(data, "names")
    out.append(("code point", data[:at] + b"\xff\xff\xff\xff" + data[at + 4 :]))
    rng = random.Random(13)
    for _ in range(30):
        edited = bytearray(data)
        edited[rng.randrange(len(data))] ^= rng.randrange(1, 256)
        out.append(("flip", bytes(edited)))
    return out


def test_an_edited_base_is_refused_by_its_hash_whatever_parsing_it_raises(journaled):
    """Found: the base is parsed while its hash is computed, and only ValueError-like
    failures were caught: an edit that made numpy, zipfile or str raise anything else crashed
    the cycle instead of the rebuild the hash mismatch calls for."""
    original = journaled.engine.read_bytes()
    try:
        for what, data in _edits(original):
            journaled.engine.write_bytes(data)
            engine, reason = _load(journaled)
            assert engine is None, what
            assert "engine.state does not match engine.json" in reason, (what, reason)
    finally:
        journaled.engine.write_bytes(original)
    engine, reason = _load(journaled)
    assert engine is not None and reason == ""


def test_a_cycle_after_an_edited_base_rebuilds_and_records_the_same_bytes(tmp_path, monkeypatch):
    def damage(paths: Paths) -> None:
        data = paths.engine.read_bytes()
        cd = data.index(b"PK\x01\x02")
        paths.engine.write_bytes(data[: cd + 10] + b"\x63\x00" + data[cd + 12 :])

    _, _, runs = _damage_after(tmp_path, monkeypatch, damage)
    assert runs[0].mode == "rebuilt" and "does not match engine.json" in runs[0].reason


# ---------------------------------------------------------------- the journal, rearranged


def _frames(data: bytes) -> list[bytes]:
    out, at = [], 0
    while at < len(data):
        size = int.from_bytes(data[at + 4 : at + 12], "little")
        out.append(data[at : at + 44 + size])
        at += 44 + size
    return out


def test_journal_rearranged_swapped_or_replaced_is_refused(journaled, tmp_path):
    """Entries reordered, duplicated, dropped or appended over the committed length; the
    journal of another fleet, an older journal of the same fleet; another base under the same
    engine.json: each is refused with its reason (or, bytes after the commit, ignored)."""
    saved = tmp_path / "saved"
    _copy_files(journaled, saved)
    journal = journal_path(journaled.engine)
    frames = _frames(journal.read_bytes())
    assert len(frames) == 3
    # another fleet: same agents, other records, same cycles
    other_root = tmp_path / "other"
    patch = pytest.MonkeyPatch()
    patch.setattr(engine_module, "JOURNAL_MIN_BYTES", 0)
    patch.setattr(engine_module, "journal_bound", lambda size: 1 << 30)
    try:
        _store(other_root, [h + 1 for h in HOURS])
        other = _paths(other_root, "state")
        _cycle_all(other, fresh=True, hours=HOURS[:4])
    finally:
        patch.undo()
        forget_resident()
    other_journal = journal_path(other.engine).read_bytes()
    cases = {
        "reordered": (b"".join([frames[0], frames[2], frames[1]]), "hash chain"),
        "duplicated": (b"".join([frames[0], frames[0], frames[1], frames[2]]), "hash chain"),
        "dropped": (b"".join([frames[0], frames[2]]), "truncated"),
        "older": (b"".join(frames[:2]), "truncated"),
        "another fleet": (other_journal + bytes(4096), "hash chain"),
    }
    try:
        for what, (data, reason) in cases.items():
            journal.write_bytes(data)
            engine, why = _load(journaled)
            assert engine is None and reason in why, (what, why)
        # an entry appended after the committed ones is never committed: ignored
        journal.write_bytes(b"".join([*frames, frames[2]]))
        assert _load(journaled)[0] is not None
        _restore_files(journaled, saved)
        journaled.engine.write_bytes(other.engine.read_bytes())
        engine, why = _load(journaled)
        assert engine is None and "does not match engine.json" in why
        # engine.json of the other fleet: its ledger is another directory
        _restore_files(journaled, saved)
        meta_path(journaled.engine).write_bytes(meta_path(other.engine).read_bytes())
        engine, why = _load(journaled)
        assert engine is None and "another ledger" in why
    finally:
        _restore_files(journaled, saved)


# ---------------------------------------------------------------- rollback, resident engine


@pytest.mark.parametrize("resident", [False, True])
def test_a_rollback_to_an_earlier_consistent_state_is_advanced_to_the_same_bytes(
    tmp_path, monkeypatch, resident
):
    """All four files put back as they were two cycles earlier: a true earlier state of the
    same ledger (no hash can tell it from a kill before two saves). It is loaded from the
    files (the resident engine sees its files replaced) and advanced warm; the history is the
    reference's, byte for byte."""
    _store(tmp_path, HOURS)
    reference = _reference(tmp_path, monkeypatch)
    _journal_on(monkeypatch)
    paths = _paths(tmp_path, "rolled")
    _cycle_all(paths, fresh=False, hours=HOURS[:2])
    _copy_files(paths, tmp_path / "earlier")
    _cycle_all(paths, fresh=False, hours=HOURS[2:4])
    _restore_files(paths, tmp_path / "earlier")
    runs = _cycle_all(paths, fresh=not resident, hours=HOURS[4:])
    later = "memory" if resident else "files"
    assert [(r.mode, r.loaded) for r in runs] == [("warm", "files")] + [("warm", later)] * (
        len(runs) - 1
    )
    assert paths.history.read_bytes() == reference


def test_a_same_size_edit_with_its_mtime_set_back_is_seen_by_the_resident_engine(
    tmp_path, monkeypatch
):
    """The resident engine's identity check: an edit in place keeps inode and size and the
    mtime is put back, but the ctime moves (no user call sets it): the files are read, the
    edit is found, the state rebuilt."""
    _store(tmp_path, HOURS)
    reference = _reference(tmp_path, monkeypatch)
    _journal_on(monkeypatch)
    paths = _paths(tmp_path, "resident")
    _cycle_all(paths, fresh=False, hours=HOURS[:4])
    journal = journal_path(paths.engine)
    before = journal.stat()
    data = bytearray(journal.read_bytes())
    data[-5] ^= 0x10
    with open(journal, "r+b") as handle:
        handle.write(bytes(data))
    os.utime(journal, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = journal.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    assert after.st_ctime_ns != before.st_ctime_ns
    runs = _cycle_all(paths, fresh=False, hours=HOURS[4:])
    assert runs[0].mode == "rebuilt" and "hash chain" in runs[0].reason
    assert [(r.mode, r.loaded) for r in runs[1:]] == [("warm", "memory")] * (len(runs) - 1)
    assert paths.history.read_bytes() == reference


def test_a_late_record_between_resident_cycles_is_counted(tmp_path, monkeypatch):
    """Records matured before the resident engine's as_of, appended between two cycles: the
    engine kept in memory takes them as a fresh process does (same history as cycles that
    rebuild every time)."""
    _journal_on(monkeypatch)
    stores = {}
    for name in ("kept", "rebuilt"):
        root = tmp_path / name
        _store(root, HOURS[:3])
        stores[name] = _paths(root, "state")
    for name, paths in stores.items():
        for h in HOURS[2:6]:
            if name == "rebuilt":
                forget_resident()
                for path in _files(paths):
                    path.unlink(missing_ok=True)
            items = [("a", "s1", -30, 4.5, 2.0), ("f", "s2", -1, -3.0, -6.0)]
            _append(_store_paths(paths.state_dir.parent), _records(items, 900 + h * 2, T0))
            _, ledger = run_cycle(paths, T0 + timedelta(hours=h), Policy())
            assert ledger.engine is not None
            if name == "kept" and h != HOURS[2]:
                assert (ledger.engine.loaded, ledger.engine.late_records) == ("memory", 2)
            if name == "rebuilt":
                assert ledger.engine.mode == "rebuilt"
    assert stores["kept"].history.read_bytes() == stores["rebuilt"].history.read_bytes()


# ---------------------------------------------------------------- crashes in a compaction


@pytest.mark.parametrize("point", ["engine_between_writes", "engine_after_meta"])
def test_a_kill_inside_a_compaction_after_journal_entries_costs_no_rebuild(
    tmp_path, monkeypatch, point
):
    """SIGKILL at each write point of a compaction that replaces a base with three journal
    entries: the next cycle loads (the old base and its journal, or the new base found by its
    hash), warm, and the history is the reference's."""
    _store(tmp_path, HOURS)
    reference = _reference(tmp_path, monkeypatch)
    _journal_on(monkeypatch)
    paths = _paths(tmp_path, "killed")
    _cycle_all(paths, fresh=False, hours=HOURS[:4])
    spec = {
        "paths": paths_spec(paths),
        "as_of": (T0 + timedelta(hours=HOURS[4])).isoformat(),
    }
    child = _KILLED_CHILD.replace("1 << 30", "1")  # the bound: this cycle compacts
    done = subprocess.run(
        [sys.executable, "-c", child, json.dumps(spec)],
        env=child_env(f"kill:{point}"),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    assert next_path(paths.engine).exists() and journal_path(paths.engine).exists()
    runs = _cycle_all(paths, fresh=True, hours=HOURS[4:])
    assert [(r.mode, r.loaded) for r in runs] == [("warm", "files")] * len(runs)
    assert paths.history.read_bytes() == reference


# ---------------------------------------------------------------- property


def _tamper(paths: Paths, kind: str, seed: int, snapshot: Path) -> None:
    engine = paths.engine
    targets = {
        "flip journal": journal_path(engine),
        "flip base": engine,
        "flip meta": meta_path(engine),
    }
    if kind in targets:
        path = targets[kind]
        if path.exists() and path.stat().st_size:
            _flip(path, seed % path.stat().st_size)
    elif kind == "cut journal" and journal_path(engine).exists():
        data = journal_path(engine).read_bytes()
        journal_path(engine).write_bytes(data[: seed % (len(data) + 1)])
    elif kind == "lose meta":
        meta_path(engine).unlink(missing_ok=True)
    elif kind == "rollback" and snapshot.exists():
        _restore_files(paths, snapshot)
    elif kind == "snapshot":
        shutil.rmtree(snapshot, ignore_errors=True)
        _copy_files(paths, snapshot)


tamper_st = st.tuples(
    st.just("tamper"),
    st.tuples(
        st.sampled_from(
            ["flip journal", "flip base", "flip meta", "cut journal", "lose meta", "rollback"]
            + ["snapshot"] * 2
        ),
        st.integers(0, 1 << 20),
    ),
)
attack_op_st = st.one_of(
    st.tuples(st.just("ingest"), st.lists(record_st, min_size=1, max_size=6)),
    st.tuples(st.just("cycle"), st.integers(0, 7)),
    st.tuples(st.just("restart"), st.just(0)),
    tamper_st,
)


@given(policy=policy_st, ops=st.lists(attack_op_st, min_size=3, max_size=14))
@settings(max_examples=20, deadline=None)
def test_any_tampering_records_the_decisions_of_a_full_rebuild(policy, ops, tmp_path_factory):
    """Ingests (late ones included), cycles, restarts and tamperings of the journaled state
    (compacting every few entries, kept in memory between restarts): the history is byte for
    byte the one of the same cycles that each rebuild the state from every record."""
    root = tmp_path_factory.mktemp("attack")
    store = _store_paths(root)
    attacked = Paths(store.records, store.telemetry, state_dir=root / "a", ledger=store.ledger)
    rebuilt = Paths(store.records, store.telemetry, state_dir=root / "r", ledger=store.ledger)
    for kind, arg, as_of in replay_journaled(store, ops, bound=2):
        if kind == "restart":
            forget_resident()
        elif kind == "tamper":
            _tamper(attacked, arg[0], arg[1], root / "snapshot")
        else:
            for path in _files(rebuilt):
                path.unlink(missing_ok=True)
            engine_module._RESIDENT.pop(rebuilt.engine.resolve(), None)
            _, reference = run_cycle(rebuilt, as_of, policy)
            engine_module._RESIDENT.pop(rebuilt.engine.resolve(), None)
            assert reference.engine is not None and reference.engine.mode == "rebuilt"
            run_cycle(attacked, as_of, policy)
    if rebuilt.history.exists():
        assert attacked.history.read_bytes() == rebuilt.history.read_bytes()


def test_a_rechained_journal_claiming_a_huge_array_is_refused_not_allocated(journaled, tmp_path):
    """Found: an entry's new length (``n.<name>``) was allocated as claimed. A journal whose
    chain and engine.json were recomputed (no hash tells it from ours) that claims 10^13 rows
    raised MemoryError out of the cycle; it is now an entry that does not fit its state."""
    saved = tmp_path / "saved"
    _copy_files(journaled, saved)
    meta = json.loads(meta_path(journaled.engine).read_text())
    frames = _frames(journal_path(journaled.engine).read_bytes())
    entry = jr.decode(frames[0][44:])
    name = next(k for k in entry if k.startswith("n."))
    entry[name] = np.array(10**13, dtype=np.int64)
    payloads = [jr.encode(entry), *(f[44:] for f in frames[1:])]
    head, data = bytes.fromhex(meta["sha256"]), b""
    for payload in payloads:
        frame, head = engine_module._frame(head, payload)
        data += frame
    journal_path(journaled.engine).write_bytes(data)
    meta["journal"].update(bytes=len(data), head=head.hex())
    meta_path(journaled.engine).write_text(json.dumps(meta))
    try:
        engine, reason = _load(journaled)
        assert engine is None and "unreadable engine.journal" in reason, reason
    finally:
        _restore_files(journaled, saved)
