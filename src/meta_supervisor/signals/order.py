"""Record order (DESIGN.md "Order", normative): by ``matured_at``, then ``ts``, then ``record_id``.

A ledger is appended in time, so its rows nearly always arrive in ``(matured_at, ts)`` order and
exact ties of both timestamps are rare (a few in ten million records). Sorting on the string
``record_id`` costs about ten times a sort on the two timestamps, so :func:`in_record_order`
does the least that gives the same order as a full sort on the three keys:

1. one NumPy pass over the two µs columns checks whether the rows are in ``(matured_at, ts)``
   order already; when they are not, they are sorted on the two timestamps (numbers);
2. the rows that tie on both timestamps, if any, form short runs of consecutive rows; only
   those runs are reordered by ``record_id`` (nulls first, as polars sorts them).

The order of a key without repeats is unique, so this is the full sort's result row for row.
Pure: a frame in, a frame out.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from meta_supervisor.units import column_us

__all__ = ["ORDER", "in_record_order"]

ORDER = ["matured_at", "ts", "record_id"]


def _tied_runs(matured: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Positions ``i`` (rows in timestamp order) whose row ``i + 1`` has the same
    ``(matured_at, ts)``."""
    return np.flatnonzero((matured[1:] == matured[:-1]) & (ts[1:] == ts[:-1]))


def _break_ties(frame: pl.DataFrame, tied: np.ndarray) -> pl.DataFrame:
    """``frame`` (in timestamp order) with each run of tied rows ordered by ``record_id``."""
    rows = np.union1d(tied, tied + 1)
    # a tied row opens a run unless it ties with the row before it
    opens = ~np.isin(rows - 1, tied)
    run = np.cumsum(opens)
    ids = frame["record_id"].gather(rows).to_list()
    ranked = sorted(range(rows.size), key=lambda i: (run[i], ids[i] is not None, ids[i] or ""))
    if ranked == list(range(rows.size)):
        return frame
    new_rows = rows[np.asarray(ranked)]
    moved = np.flatnonzero(new_rows != rows)
    if moved.size > 1024:
        order = np.arange(frame.height)
        order[rows] = new_rows
        return frame[order]
    # few rows move: the frame's untouched stretches are zero-copy slices between them
    pieces, at = [], 0
    for position in moved.tolist():
        row = int(rows[position])
        pieces.append(frame.slice(at, row - at))
        pieces.append(frame.slice(int(new_rows[position]), 1))
        at = row + 1
    pieces.append(frame.slice(at, frame.height - at))
    return pl.concat(pieces, rechunk=False)


def in_record_order(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` in record order (``ORDER``), the same rows as ``frame.sort(ORDER)``.

    ``frame`` holds ``matured_at`` and ``ts`` (µs datetimes) and, when two rows may tie on
    both, ``record_id``. Rows with a null timestamp are left to polars' sort (nulls first).
    """
    if frame.height < 2:
        return frame
    m_col, t_col = frame["matured_at"], frame["ts"]
    if m_col.null_count() or t_col.null_count():
        return frame.sort(ORDER)
    m, t = column_us(m_col), column_us(t_col)
    step_m, step_t = m[1:] - m[:-1], t[1:] - t[:-1]
    if not bool(((step_m > 0) | ((step_m == 0) & (step_t >= 0))).all()):
        frame = frame.sort(["matured_at", "ts"])
        m, t = column_us(frame["matured_at"]), column_us(frame["ts"])
    tied = _tied_runs(m, t)
    return _break_ties(frame, tied) if tied.size else frame
