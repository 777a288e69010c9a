"""state: what a cycle leaves on disk. An edge: atomic files, the hash-chained history, the
lock, the operator's overrides.

============== ============================================================================
module         what it holds
============== ============================================================================
atomic         atomic writes (temp, fsync, rename), stale temps, the fault hook
explanations   each cycle's explanations, kept once in explanations/<seq>.json: written,
               referenced by SHA-256 from the history entry, read back and checked
files          the history (append, read, verify; atomic writes re-exported), the state lock
overrides      the overrides file: validated, written atomically
============== ============================================================================
"""

from meta_supervisor.state.files import (
    HistoryEntry,
    HistoryError,
    LockBusy,
    LockFileError,
    StateLock,
    append_history,
    atomic_write_bytes,
    atomic_write_text,
    read_history,
    verify_history,
)
from meta_supervisor.state.overrides import OverrideError, load_overrides

__all__ = [
    "HistoryEntry",
    "HistoryError",
    "LockBusy",
    "LockFileError",
    "OverrideError",
    "StateLock",
    "append_history",
    "atomic_write_bytes",
    "atomic_write_text",
    "load_overrides",
    "read_history",
    "verify_history",
]
