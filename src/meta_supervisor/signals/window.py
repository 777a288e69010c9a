"""The stats window's records kept in memory, so that agents which lost records from it are
computed again without reading the ledger.

An agent's window sums and drawdown are single passes from its window's first record
(:mod:`meta_supervisor.signals.incremental`): a record leaving the front changes them all, so
such an agent is computed again from the records it still has in the window. Under the
policy's 7-day stats window every agent that trades loses records every hour; reading their
window from the store, numbering and ordering it took about half of that work (33 + 18 of
90 ms a cycle at the 10M benchmark). The window's columns are kept here instead, in record
order: what leaves is dropped from the front, what enters is appended at the back (records
enter in time order; a late one inside the window, matured before the previous cycle, makes
the owner drop it and read the ledger again).

Pure: arrays in, arrays out; no file, no clock.
"""

from __future__ import annotations

import numpy as np

from meta_supervisor.typing import FloatArray, IntArray

__all__ = ["MAX_ROWS", "RecordWindow"]

#: The most records kept (about 32 bytes each); a longer window is read from the ledger.
MAX_ROWS = 4_000_000


class RecordWindow:
    """Records in record order as columns: agent numbers, ``realized_pnl_bps``, ``gap_bps``
    and ``matured_at`` (µs, ascending). Backed by arrays with room at the back, so dropping
    the front and appending cost the rows moved, not the window (the live part is moved to
    the front when the room runs out)."""

    def __init__(self) -> None:
        self._codes = np.zeros(0, dtype=np.int64)
        self._pnl = np.zeros(0)
        self._gap = np.zeros(0)
        self._matured = np.zeros(0, dtype=np.int64)
        self._start = 0
        self._end = 0

    def __len__(self) -> int:
        return self._end - self._start

    def columns(self) -> tuple[IntArray, FloatArray, FloatArray]:
        """``(agent numbers, pnl, gap)`` of the records held, in record order (views)."""
        live = slice(self._start, self._end)
        return self._codes[live], self._pnl[live], self._gap[live]

    def drop_through(self, moment_us: int) -> None:
        """Drop the records matured at or before ``moment_us`` (the front)."""
        live = self._matured[self._start : self._end]
        self._start += int(np.searchsorted(live, moment_us, side="right"))

    def append(self, codes: IntArray, pnl: FloatArray, gap: FloatArray, matured: IntArray) -> None:
        """Append records that come after every record held, in record order. Raises
        ``ValueError`` when one matured before the last held (the caller drops the window)."""
        if not codes.size:
            return
        if self._end > self._start and matured[0] < self._matured[self._end - 1]:
            raise ValueError("records appended out of order")
        if bool((matured[1:] < matured[:-1]).any()):
            raise ValueError("records appended out of order")
        need = len(self) + codes.size
        if self._end + codes.size > self._codes.size:
            self._make_room(need)
        end = self._end + codes.size
        self._codes[self._end : end] = codes
        self._pnl[self._end : end] = pnl
        self._gap[self._end : end] = gap
        self._matured[self._end : end] = matured
        self._end = end

    def _make_room(self, need: int) -> None:
        """Move the live part to the front of arrays of at least ``need`` rows (with half
        as much again of room)."""
        capacity = max(need + need // 2, 1024)
        live = slice(self._start, self._end)
        for name in ("_codes", "_pnl", "_gap", "_matured"):
            old = getattr(self, name)
            new = np.empty(capacity, dtype=old.dtype)
            new[: len(self)] = old[live]
            setattr(self, name, new)
        self._end -= self._start
        self._start = 0
