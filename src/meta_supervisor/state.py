"""State on disk: atomic files, the append-only hash-chained history, and the cycle lock.

* :func:`atomic_write_text`: temp file in the same directory, fsync, rename, fsync the
  directory. A kill at any point leaves the old file or the new one, never a mix.
* History (``history.jsonl``): one JSON object a line,
  ``{"seq", "prev_hash", "hash", "decision"}`` with
  ``hash = sha256(f"{seq}:{prev_hash}:" + canonical_json(decision))`` and ``prev_hash`` the
  previous entry's hash (64 zeros for the first). The history is written *first*: it is the
  commit point. A kill mid-append leaves an unterminated last line that was never committed;
  the next append cuts it off. Editing, deleting or reordering any entry breaks the chain and
  :func:`verify_history` names the first entry at fault.
* :class:`StateLock`: an exclusive ``flock`` on ``state_dir/.lock``. The kernel drops it when the
  holder dies, so a stale lock from a dead process never blocks a restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meta_supervisor.decision import Decision, canonical_json

__all__ = [
    "GENESIS",
    "HistoryEntry",
    "LockBusy",
    "StateLock",
    "append_history",
    "atomic_write_text",
    "entry_hash",
    "read_history",
    "verify_history",
]

GENESIS = "0" * 64


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temp + fsync + rename + directory fsync)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def entry_hash(seq: int, prev_hash: str, decision: dict[str, Any]) -> str:
    """The chain hash of one history entry."""
    blob = f"{seq}:{prev_hash}:" + canonical_json(decision)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class HistoryEntry:
    """One committed decision in the history."""

    seq: int
    prev_hash: str
    hash: str
    decision: dict[str, Any]


def _committed_lines(path: Path) -> tuple[list[bytes], int]:
    """Return the newline-terminated lines and the byte length they cover."""
    if not path.exists():
        return [], 0
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    return data[:end].splitlines(), end


def read_history(path: Path) -> list[HistoryEntry]:
    """All committed entries (an unterminated last line, from a kill mid-append, is ignored).

    Raises ``ValueError`` naming the line when a committed line is not a valid entry.
    """
    entries = []
    lines, _ = _committed_lines(Path(path))
    for number, line in enumerate(lines, start=1):
        try:
            obj = json.loads(line)
            entries.append(
                HistoryEntry(
                    seq=int(obj["seq"]),
                    prev_hash=str(obj["prev_hash"]),
                    hash=str(obj["hash"]),
                    decision=obj["decision"],
                )
            )
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path}: line {number} is not a history entry: {err}") from None
    return entries


def verify_history(path: Path) -> tuple[bool, str]:
    """Check the whole chain; return ``(ok, message)`` naming the first bad entry if any."""
    path = Path(path)
    try:
        entries = read_history(path)
    except ValueError as err:
        return False, str(err)
    prev = GENESIS
    for index, entry in enumerate(entries, start=1):
        where = f"entry {index} (line {index}, as_of {entry.decision.get('as_of')})"
        if entry.seq != index:
            return False, f"{where}: sequence {entry.seq}, expected {index} (deleted or reordered)"
        if entry.prev_hash != prev:
            return False, f"{where}: prev_hash does not match the entry before it"
        if entry_hash(entry.seq, entry.prev_hash, entry.decision) != entry.hash:
            return False, f"{where}: content does not match its hash (edited)"
        prev = entry.hash
    tail = ""
    if path.exists() and path.stat().st_size > _committed_lines(path)[1]:
        tail = "; an unterminated last line (interrupted append) is ignored"
    return True, f"{len(entries)} entries, chain intact{tail}"


def append_history(path: Path, decision: Decision) -> HistoryEntry:
    """Append ``decision`` to the chain (fsync'd). Cuts off an uncommitted partial last line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = read_history(path)
    _, committed = _committed_lines(path)
    seq = len(entries) + 1
    prev = entries[-1].hash if entries else GENESIS
    body = decision.to_dict()
    entry = HistoryEntry(seq=seq, prev_hash=prev, hash=entry_hash(seq, prev, body), decision=body)
    line = canonical_json(
        {"seq": entry.seq, "prev_hash": entry.prev_hash, "hash": entry.hash, "decision": body}
    )
    with open(path, "ab") as handle:
        if handle.tell() > committed:
            handle.truncate(committed)
        handle.seek(committed)
        handle.write(line.encode() + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    return entry


class LockBusy(RuntimeError):
    """Another cycle holds the state lock."""


class StateLock:
    """Exclusive lock on the state directory (``flock``; released by the kernel on death)."""

    def __init__(self, path: Path, timeout_s: float = 0.0) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s
        self._fd: int | None = None

    def __enter__(self) -> StateLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                    os.close(fd)
                    raise LockBusy(
                        f"{self.path}: another cycle is running (pid {holder}); "
                        "wait for it or retry with --wait"
                    ) from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


@contextlib.contextmanager
def locked(path: Path, timeout_s: float = 0.0) -> Iterator[None]:
    """``with locked(paths.lock): ...`` convenience wrapper around :class:`StateLock`."""
    with StateLock(path, timeout_s):
        yield
