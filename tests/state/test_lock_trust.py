"""Issue #13: the state and ledger locks trust nothing on disk (symlinks, deleted lock files)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from meta_supervisor.ledger.store import LedgerBusy, LedgerStore
from meta_supervisor.state import files
from meta_supervisor.state.files import LockBusy, StateLock


def test_lock_does_not_follow_a_symlink_nor_truncate_its_target(tmp_path: Path) -> None:
    """The lock used to follow a symlink and truncate its target."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    state = tmp_path / "state"
    state.mkdir()
    (state / ".lock").symlink_to(victim)
    with pytest.raises(files.LockFileError, match="symbolic link"), StateLock(state / ".lock"):
        pass
    assert victim.read_text() == "precious\n"


def test_lock_refuses_a_hard_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    state = tmp_path / "state"
    state.mkdir()
    os.link(victim, state / ".lock")
    with pytest.raises(files.LockFileError, match="not a plain file"), StateLock(state / ".lock"):
        pass
    assert victim.read_text() == "precious\n"


def test_ledger_lock_does_not_follow_a_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    store = LedgerStore(tmp_path / "L")
    store.root.mkdir()
    store.lock_path.symlink_to(victim)
    with pytest.raises(files.LockFileError), store.writer():
        pass
    assert victim.read_text() == "precious\n"


def test_deleting_the_lock_file_does_not_let_a_second_holder_in(tmp_path: Path) -> None:
    """Deleting .lock while a cycle held it let a second cycle run at once."""
    lock = tmp_path / "state" / ".lock"
    with StateLock(lock):
        lock.unlink()
        with pytest.raises(LockBusy, match="another cycle is running"), StateLock(lock):
            pass
        lock.write_text("")  # a new file in its place
        with pytest.raises(LockBusy), StateLock(lock):
            pass
    with StateLock(lock):  # released on exit
        pass


def test_deleting_the_ledger_lock_does_not_let_a_second_writer_in(tmp_path: Path) -> None:
    store = LedgerStore(tmp_path / "L")
    with store.writer():
        store.lock_path.unlink()
        with pytest.raises(LedgerBusy), LedgerStore(tmp_path / "L").writer():
            pass
