"""State on disk: atomic files, the append-only hash-chained history, and the cycle lock.

* :func:`atomic_write_text`: temp file in the same directory, fsync, rename, fsync the
  directory. A kill at any point leaves the old file or the new one, never a mix.
* History (``history.jsonl``): one JSON object a line,
  ``{"seq", "prev_hash", "hash", "decision"}`` with
  ``hash = sha256(f"{seq}:{prev_hash}:" + canonical_json(decision))`` and ``prev_hash`` the
  previous entry's hash (64 zeros for the first). ``decision`` is the decision's *record*: its
  explanations are in the entry's explanations file, which the record names with its SHA-256
  (:mod:`meta_supervisor.state.explanations`; older entries hold them inline). The history
  is written *first*: it is the commit point. A kill mid-append leaves an unterminated last
  line that was never committed; the next append cuts it off. Editing, deleting or
  reordering any entry (or editing an explanations file) breaks the chain and
  :func:`verify_history` names the first entry at fault.
* :class:`StateLock`: an exclusive ``flock`` on the state directory itself, the holder's pid in
  ``state_dir/.lock``. The kernel drops it when the holder dies, so a stale lock from a dead
  process never blocks a restart; deleting ``.lock`` cannot let a second cycle in, and a
  ``.lock`` that is a symbolic or hard link is refused, never written through.
* Fault hook (tests only): ``META_SUPERVISOR_FAULT=kill:<point>`` makes the process SIGKILL
  itself at ``<point>``, ``stop:<point>`` SIGSTOPs it (the test resumes it with SIGCONT). Points:
  ``after_explanations`` (the cycle's explanations file written, its history line not yet),
  ``history_append`` (half the line written and fsync'd), ``after_history_append``,
  ``before_rename:<file name>`` (temp file complete, not yet renamed), ``locked`` (lock held).
  A kill at a named point is deterministic where a timed kill would be flaky.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import mmap
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from meta_supervisor.allocate.decision import Decision, canonical_json
from meta_supervisor.errors import Busy, ProblemFound
from meta_supervisor.state import explanations
from meta_supervisor.state.atomic import (
    FAULT_ENV,
    NotOwnFile,
    _fault_armed,
    atomic_write_bytes,
    atomic_write_text,
    fault_point,
    fsync_path,
    remove_stale_temps,
    write_own_file,
)

__all__ = [
    "FAULT_ENV",
    "GENESIS",
    "HistoryEntry",
    "HistoryError",
    "LockBusy",
    "LockFileError",
    "StateLock",
    "append_history",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_current",
    "check_tail",
    "entry_hash",
    "fault_point",
    "fsync_path",
    "history_tail",
    "read_history",
    "remove_stale_temps",
    "verify_history",
]

GENESIS = "0" * 64


def entry_hash(seq: int, prev_hash: str, decision: dict[str, Any]) -> str:
    """The chain hash of one history entry."""
    blob = f"{seq}:{prev_hash}:" + canonical_json(decision)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class HistoryEntry:
    """One committed decision in the history.

    ``record`` is what the line holds and the chain hash covers: the decision, with its
    explanations inline (entries written before they moved out) or a reference to its
    explanations file (:mod:`meta_supervisor.state.explanations`). ``decision`` is the decision
    as a plain dict with ``agents`` (the file read, and held against its SHA-256, on first
    access): the same dict for both kinds of entry.
    """

    seq: int
    prev_hash: str
    hash: str
    record: dict[str, Any]
    base: Path | None = field(default=None, compare=False, repr=False)
    """The state directory the reference's file name is relative to."""
    _decision: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def decision(self) -> dict[str, Any]:
        """The decision with its explanations (read on first access, then kept). Raises
        :class:`~meta_supervisor.state.explanations.ExplanationsError` when the file is
        missing or edited."""
        if self._decision is None:
            resolved = explanations.resolve(self.base or Path("."), self.record)
            object.__setattr__(self, "_decision", resolved)
            return resolved
        return self._decision


def _committed_lines(path: Path) -> tuple[list[bytes], int]:
    """Return the newline-terminated lines and the byte length they cover."""
    if not path.exists():
        return [], 0
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    return data[:end].splitlines(), end


def _committed_end(path: Path) -> int:
    """The byte length of the newline-terminated part of ``path`` (0 when absent)."""
    if not path.exists():
        return 0
    with open(path, "rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        block = 1 << 16
        position = size
        while position > 0:
            step = min(block, position)
            position -= step
            handle.seek(position)
            found = handle.read(step).rfind(b"\n")
            if found >= 0:
                return position + found + 1
    return 0


_AS_OF = re.compile(rb'"as_of":\s*"([^"]{1,64})"')


def _where(number: int, line: bytes, as_of: object = None) -> str:
    """Name an entry by its line and its as_of (read from the raw text when it will not parse)."""
    if as_of is None:
        found = _AS_OF.search(line)
        as_of = found.group(1).decode(errors="replace") if found else "unknown"
    return f"entry {number} (line {number}, as_of {as_of})"


def _parse_entry(path: Path, number: int, line: bytes) -> HistoryEntry:
    try:
        obj = orjson.loads(line)
        if not isinstance(obj, dict) or set(obj) != {"seq", "prev_hash", "hash", "decision"}:
            raise ValueError("keys must be exactly seq, prev_hash, hash, decision")
        if not isinstance(obj["decision"], dict):
            raise TypeError("decision is not an object")
        return HistoryEntry(
            seq=int(obj["seq"]),
            prev_hash=str(obj["prev_hash"]),
            hash=str(obj["hash"]),
            record=obj["decision"],
            base=path.parent,
        )
    except (ValueError, KeyError, TypeError) as err:
        where = _where(number, line)
        raise HistoryError(f"{path}: {where} is not a history entry: {err}") from None


def _entry_line(entry: HistoryEntry) -> bytes:
    """The one canonical byte form of an entry (what :func:`append_history` writes)."""
    body = {
        "seq": entry.seq,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
        "decision": entry.record,
    }
    return canonical_json(body).encode()


def read_history(path: Path) -> list[HistoryEntry]:
    """All committed entries (an unterminated last line, from a kill mid-append, is ignored).

    Raises ``ValueError`` naming the line and as_of when a committed line is not a valid entry.
    """
    path = Path(path)
    lines, _ = _committed_lines(path)
    return [_parse_entry(path, number, line) for number, line in enumerate(lines, start=1)]


def history_tail(
    path: Path, until: Callable[[HistoryEntry], bool] | None = None
) -> list[HistoryEntry]:
    """The newest committed entries, oldest first, read backwards from the end of the file.

    Reading stops at the first entry (from the end) for which ``until`` is true, that entry
    included; without ``until``, at the last entry. A cycle needs only the entries around its
    own instant, so its cost does not grow with the history (:func:`read_history` parses every
    line). Raises ``ValueError`` naming the line when a line read is not a valid entry.
    """
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return []
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        end = mm.rfind(b"\n") + 1  # an unterminated last line is not committed
        out: list[HistoryEntry] = []
        while end > 0:
            start = mm.rfind(b"\n", 0, end - 1) + 1
            line = mm[start : end - 1]
            if line:
                try:
                    entry = _parse_entry(path, 0, line)
                except ValueError:
                    number = mm[:start].count(b"\n") + 1
                    entry = _parse_entry(path, number, line)
                out.append(entry)
                if until is None or until(entry):
                    break
            end = start
    out.reverse()
    return out


def verify_history(path: Path) -> tuple[bool, str]:
    """Check the whole chain; return ``(ok, message)`` naming the first bad entry if any.

    An entry is bad when it will not parse, is not in the canonical form the writer produces
    (any byte edited), its ``seq`` is not its position (deleted, inserted or reordered), its
    ``prev_hash`` is not the hash of the entry before it, or its content does not match its hash.
    Only an external copy of the last hash can show that the newest entries were cut off.
    """
    path = Path(path)
    lines, committed = _committed_lines(path)
    prev = GENESIS
    for number, line in enumerate(lines, start=1):
        try:
            entry = _parse_entry(path, number, line)
        except ValueError as err:
            return False, str(err).removeprefix(f"{path}: ")
        where = _where(number, line, entry.record.get("as_of"))
        if entry.seq != number:
            return False, f"{where}: sequence {entry.seq}, expected {number} (deleted or reordered)"
        if entry.prev_hash != prev:
            return False, f"{where}: prev_hash does not match the entry before it"
        if entry_hash(entry.seq, entry.prev_hash, entry.record) != entry.hash:
            return False, f"{where}: content does not match its hash (edited)"
        if _entry_line(entry) != line:
            return False, f"{where}: not in canonical form (edited)"
        wrong = explanations.problem(path.parent, entry.record)
        if wrong is not None:
            return False, f"{where}: {wrong}"
        prev = entry.hash
    tail = ""
    if path.exists() and path.stat().st_size > committed:
        tail = "; an unterminated last line (interrupted append) is ignored"
    if any(
        (path.parent / explanations.file_name(len(lines) + 1, suffix)).exists()
        for suffix in (".json", explanations.INPUTS)
    ):
        tail += "; an explanations file no entry names yet (interrupted cycle) is ignored"
    return True, f"{len(lines)} entries, chain intact{tail}"


def _count_to(n: int) -> Callable[[HistoryEntry], bool]:
    """A :func:`history_tail` stop condition: true at the ``n``-th entry read."""
    seen = [0]

    def enough(_entry: HistoryEntry) -> bool:
        seen[0] += 1
        return seen[0] >= n

    return enough


def check_tail(path: Path, entries: list[HistoryEntry]) -> None:
    """Check the newest entries a cycle builds on (as :func:`history_tail` returned them):
    each one's content matches its hash, and each links to the one before it by ``seq`` and
    ``prev_hash``. Raises :class:`HistoryError` naming the entry; the cost does not grow with
    the history (``verify`` checks the whole chain)."""
    for index, entry in enumerate(entries):
        where = f"entry {entry.seq} (as_of {entry.record.get('as_of', 'unknown')})"
        if entry_hash(entry.seq, entry.prev_hash, entry.record) != entry.hash:
            raise HistoryError(f"{path}: {where}: content does not match its hash (edited)")
        wrong = explanations.check(Path(path).parent, entry.record)
        if wrong is not None:
            raise HistoryError(f"{path}: {where}: {wrong}")
        if index and (
            entry.seq != entries[index - 1].seq + 1 or entry.prev_hash != entries[index - 1].hash
        ):
            raise HistoryError(
                f"{path}: {where}: does not follow the entry before it (deleted, inserted or "
                "reordered)"
            )


def _current_json(path: Path) -> tuple[Any, str | None]:
    """The parsed content of a current-state file, or ``(None, problem)``."""
    try:
        return orjson.loads(path.read_bytes()), None
    except (OSError, ValueError) as err:
        return None, f"{path.name}: not readable JSON: {err}"


def check_current(
    history: Path, decision_file: Path, allocation_file: Path | None = None
) -> tuple[bool, str]:
    """Hold ``decision.json`` (and ``allocation.json``, when given) against the end of the
    history: the one check that sees the newest entries cut off (the chain itself cannot: a
    prefix of a chain is a valid chain).

    A cycle writes the history first, then ``decision.json``, then ``allocation.json``, so each
    file shows the last entry (its weights, for ``allocation.json``), or the one before it after
    a kill between the writes (the next cycle repairs that). Any other content means the
    history lost its newest entries, or the file was edited. A file may be missing (a kill
    before its first write; the next cycle writes it from the history), but a current file
    with no history at all is not a state a cycle leaves.
    """
    history, decision_file = Path(history), Path(decision_file)
    entries = history_tail(history, _count_to(2))
    notes = []
    for given, view in (
        (decision_file, lambda decision: decision),
        (allocation_file, lambda decision: decision.get("weights")),
    ):
        if given is None:
            continue
        path = Path(given)
        if not path.exists():
            notes.append(f"no {path.name}")
            continue
        content, problem = _current_json(path)
        if problem is not None:
            return False, problem
        current = canonical_json(content)
        shown = [canonical_json(view(e.record)) for e in entries]
        if shown and shown[-1] == current:
            notes.append(f"{path.name} is the last entry")
            continue
        if len(shown) == 2 and shown[0] == current:
            notes.append(
                f"{path.name} is one entry behind (interrupted cycle; the next one repairs it)"
            )
            continue
        as_of = content.get("as_of", "unknown") if isinstance(content, dict) else "unknown"
        last = entries[-1].record.get("as_of", "unknown") if entries else "no entry"
        what = f" (as_of {as_of})" if path == decision_file else ""
        return False, (
            f"{path.name}{what} is not the history's last entry ({last}): the newest entries "
            "were cut off, or the file was edited"
        )
    return True, "; ".join(notes)


def append_history(
    path: Path, decision: Decision | dict[str, Any], tail: list[HistoryEntry] | None = None
) -> HistoryEntry:
    """Append ``decision`` to the chain (fsync'd). Cuts off an uncommitted partial last line.

    A :class:`Decision`'s explanations are written first, once, to the entry's explanations
    file (:func:`meta_supervisor.state.explanations.write`), and the line holds its record
    (:func:`~meta_supervisor.state.explanations.record_of`); a dict is a record already (e.g.
    a superseding copy that names the restored entry's file) and is appended as it is.

    ``tail`` is what :func:`history_tail` returned to a caller that holds the lock and has just
    read it (``[]`` for an empty history); by default it is read here.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    last = history_tail(path) if tail is None else tail[-1:]
    committed = _committed_end(path)
    # seq is the line number: verify_history shows any entry deleted, inserted or reordered
    seq = last[-1].seq + 1 if last else 1
    prev = last[-1].hash if last else GENESIS
    if isinstance(decision, Decision) and decision.recipe is not None:
        ref = explanations.write_inputs(path.parent, seq, decision)
        fault_point("after_explanations")
        body = explanations.record_of(decision, ref)
    elif isinstance(decision, Decision):
        ref = explanations.write(path.parent, seq, decision.agents)
        fault_point("after_explanations")
        body = explanations.record_of(decision, ref)
    else:
        body = decision
    entry = HistoryEntry(
        seq=seq, prev_hash=prev, hash=entry_hash(seq, prev, body), record=body, base=path.parent
    )
    data = _entry_line(entry) + b"\n"
    # The fault hook stops half-way through the line; otherwise the line goes out in one write.
    half = len(data) // 2 if _fault_armed("history_append") else len(data)
    created = not path.exists()
    with open(path, "wb" if created else "r+b") as handle:
        handle.truncate(committed)
        handle.seek(committed)
        handle.write(data[:half])
        handle.flush()
        if half < len(data):  # the fault hook's half line, made durable before the kill
            os.fsync(handle.fileno())
            fault_point("history_append")
            handle.write(data[half:])
            handle.flush()
        os.fsync(handle.fileno())
    if created:
        fsync_path(path.parent)
    return entry


class HistoryError(ProblemFound, ValueError):
    """A history line is not a history entry (edited, truncated mid-line, not JSON)."""

    hint = "run 'meta-supervisor verify'"


class LockBusy(Busy):
    """Another cycle holds the state lock."""


class LockFileError(ProblemFound):
    """The lock file is not a plain file of its own (a symbolic link, a hard link, a directory):
    writing the holder's pid into it would write into whatever it points at."""


class StateLock:
    """Exclusive lock on a directory (``flock`` of the directory itself; released by the kernel
    on death), with the holder's pid written to ``path`` for the busy message.

    The lock is the directory, not the file: deleting or replacing ``path`` while a holder runs
    cannot let a second holder in (a lock on a file is lost with its inode). ``path`` is opened
    without following a symbolic link and must be a regular file with one link, so the pid is
    never written into (nor truncates) another file; otherwise :class:`LockFileError`.
    """

    def __init__(self, path: Path, timeout_s: float = 0.0) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s
        self._fd: int | None = None

    def _holder(self) -> str:
        """The pid recorded by the holder (``unknown`` when it cannot be read safely)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return "unknown"
        try:
            return os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        finally:
            os.close(fd)

    def _write_pid(self) -> None:
        try:
            write_own_file(self.path, str(os.getpid()).encode())
        except NotOwnFile as err:
            raise LockFileError(
                f"{self.path}: the lock file is not a plain file of its own "
                f"({err.links} links); remove it (nothing was written to it)"
            ) from None
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise LockFileError(
                    f"{self.path}: the lock file is a symbolic link; remove it (nothing was "
                    "written through it)"
                ) from None
            if err.errno == errno.EISDIR:
                raise LockFileError(f"{self.path}: the lock file is a directory") from None
            raise

    def __enter__(self) -> StateLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise LockBusy(
                        f"{self.path}: another cycle is running (pid {self._holder()}); "
                        "wait for it or retry with --wait"
                    ) from None
                time.sleep(0.05)
        try:
            self._write_pid()
        except BaseException:
            os.close(fd)
            raise
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
