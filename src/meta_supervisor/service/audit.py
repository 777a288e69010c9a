"""The audit log: every write through the service, appended to ``state_dir/audit.jsonl``.

One JSON object a line: ``{"at", "who", "action", "target", "outcome", "detail"}``. Lines are
only ever appended (``O_APPEND``, one ``write`` per line, fsync'd), never rewritten; the log is
written after the action it records has committed: a refused request wrote nothing and is
answered (and logged), not audited; a request killed before its commit is not recorded.
"""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from meta_supervisor.allocate.decision import canonical_json, iso

__all__ = ["AuditLog"]


class AuditLog:
    """Append-only JSON lines, safe across this process's threads."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def record(
        self, who: str, action: str, target: str, outcome: str, detail: dict[str, Any]
    ) -> dict[str, Any]:
        """Append one entry (now, in UTC) and return it."""
        entry = {
            "at": iso(datetime.now(UTC)),
            "who": who,
            "action": action,
            "target": target,
            "outcome": outcome,
            "detail": detail,
        }
        line = (canonical_json(entry) + "\n").encode()
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        return entry
