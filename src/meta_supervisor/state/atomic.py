"""Atomic files and the fault hook: the primitives every state writer uses.

* :func:`atomic_write_bytes`: temp file in the same directory, fsync, rename, fsync the
  directory. A kill at any point leaves the old file or the new one, never a mix.
* :func:`remove_stale_temps`: temps (``.<name>.<pid>.tmp``) of writers that died.
* :func:`write_own_file`, :func:`is_own_file`: a file written in place only when it is a
  plain file of its own, never through a link into another file (the lock's pid, a ledger
  segment's bounds file).
* Fault hook (tests only): ``META_SUPERVISOR_FAULT=kill:<point>`` makes the process SIGKILL
  itself at ``<point>``, ``stop:<point>`` SIGSTOPs it (the points are listed in
  :mod:`meta_supervisor.state.files`).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import stat
from pathlib import Path

__all__ = [
    "FAULT_ENV",
    "NotOwnFile",
    "atomic_write_bytes",
    "atomic_write_text",
    "fault_point",
    "fsync_path",
    "is_own_file",
    "remove_stale_temps",
    "write_own_file",
]

FAULT_ENV = "META_SUPERVISOR_FAULT"
_TEMP = re.compile(r"^\..+\.(\d+)\.tmp$")


def _fault_armed(point: str) -> bool:
    action, _, name = os.environ.get(FAULT_ENV, "").partition(":")
    return action in {"kill", "stop"} and name == point


def fault_point(point: str) -> None:
    """Test hook: die (``kill:``) or stop (``stop:``) here when ``META_SUPERVISOR_FAULT`` names
    ``point``. A no-op otherwise (one environment lookup)."""
    if _fault_armed(point):
        action = os.environ[FAULT_ENV].partition(":")[0]
        os.kill(os.getpid(), signal.SIGKILL if action == "kill" else signal.SIGSTOP)


def atomic_write_bytes(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (temp + fsync + rename + directory fsync).

    ``durable=False`` skips the directory fsync: after a power loss the rename may be undone
    (the old file is back, whole), never half done. For the current files, which the history
    (durable, the commit point) repairs: a ``decision.json`` one entry behind is what a kill
    between the writes leaves too, and the next cycle rewrites it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    fault_point(f"before_rename:{path.name}")
    os.replace(tmp, path)
    if durable:
        fsync_path(path.parent)


def atomic_write_text(path: Path, text: str, *, durable: bool = True) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically, as :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"), durable=durable)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(directory: Path) -> list[Path]:
    """Delete temp files (``.<name>.<pid>.tmp``) left by writers that died; return them.

    Only temps of dead processes are removed: a live writer's temp is its own business.
    """
    removed: list[Path] = []
    directory = Path(directory)
    if not directory.is_dir():
        return removed
    for candidate in directory.iterdir():
        match = _TEMP.match(candidate.name)
        if match and not _pid_alive(int(match.group(1))):
            with contextlib.suppress(FileNotFoundError):
                candidate.unlink()
                removed.append(candidate)
    return removed


def fsync_path(path: Path) -> None:
    """``fsync`` a file or a directory by path (a directory's fsync makes a rename durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class NotOwnFile(OSError):
    """A path that is not a plain file of its own: ``links`` links to it (another file's
    name), or not a regular file."""

    def __init__(self, path: Path, links: int) -> None:
        super().__init__(f"{path}: not a plain file of its own ({links} links)")
        self.links = links


def write_own_file(path: Path, data: bytes, *, sync: bool = False) -> None:
    """Write ``data`` as the whole of ``path`` (created if absent), in place, without following
    a symbolic link and only when it is a regular file with one link: never into, nor
    truncating, another file. ``sync``: fsync'd before returning. Raises ``OSError``
    (``ELOOP`` for a symbolic link, ``EISDIR`` for a directory) or :class:`NotOwnFile`, having
    written nothing."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            raise NotOwnFile(path, info.st_nlink)
        os.ftruncate(fd, 0)
        view = memoryview(data)
        while view:
            view = view[os.pwrite(fd, view, len(data) - len(view)) :]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def is_own_file(path: Path) -> bool:
    """Whether ``path`` is a regular file with one link (not followed when a link)."""
    try:
        info = path.lstat()
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_nlink == 1
