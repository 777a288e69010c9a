"""An engine state's change between two saves, as a small set of arrays (a journal entry).

The engine state (:meth:`~meta_supervisor.signals.incremental.IncrementalStats.state_arrays`)
is a dict of arrays; most of its bytes are the strategies' sorted tail buffers, of which a
cycle changes a few dozen values. An entry holds:

* for every other array that changed since the previous image: its changed rows (row ``i``
  of a 1-D array, or of a ``(size, k)`` one, compared bit for bit) with their new values and
  the new length, or the whole array when more than half of it changed (or its type, width
  or trailing shape did), under ``w.<name>`` / ``i.<name>``, ``v.<name>``, ``n.<name>``; the
  names of the new image (``keys``), so a name that is gone is dropped. An array whose
  written rows the engine tracked (the loss ring, 8 MB at 1,000 agents, of which a cycle
  writes a few thousand slots) is given by those rows instead of compared (:data:`Rows`);
* the tail buffers' changes in the order the engine made them
  (:meth:`~meta_supervisor.signals.incremental.IncrementalStats.take_tail_log`): ``insert``
  (sorted gaps merged in), ``remove`` (one occurrence of each sorted gap taken out), ``cut``
  (only the gaps at or below a threshold kept), ``set`` (the whole buffer).

:func:`apply` replays an entry on the previous image and buffers: the image becomes the new one
bit for bit (every array equal in type, shape and bytes), and each buffer the engine's buffer
(a sorted buffer is a function of the multiset of its gaps, which the operations reproduce:
``−0.0`` is stored as ``0.0`` and no NaN enters a buffer). Pure: bytes in, bytes out.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import numpy as np

__all__ = [
    "BUFFER_KEYS",
    "EntryError",
    "Rows",
    "apply",
    "apply_tail_ops",
    "decode",
    "delta",
    "encode",
    "remove_sorted",
    "split_buffers",
]

#: The state's arrays that hold the tail buffers (kept apart from the image).
BUFFER_KEYS = ("t_offsets", "t_buffer")
_OPS = ("insert", "remove", "cut", "set")
#: Arrays given by their written rows: ``{name: (rows, their values, the array's length)}``,
#: ``rows`` sorted and unique, covering every row that may differ from the previous image
#: (those past its old length included).
Rows = dict[str, tuple[np.ndarray, np.ndarray, int]]


class EntryError(ValueError):
    """A journal entry that cannot be applied to the image it follows."""


def _bits(values: np.ndarray) -> np.ndarray:
    """``values`` as raw bits per row, one row per first-axis entry (bit-for-bit comparison:
    NaN equals itself, −0.0 does not equal 0.0): a 1-D array of 8-byte numbers as one 64-bit
    integer per row (a 1M-slot ring compares in a millisecond), else its bytes."""
    if values.ndim == 1 and values.dtype.itemsize == 8 and values.dtype.kind in "fiu":
        return np.ascontiguousarray(values).view(np.uint64).reshape(-1, 1)
    rows = values.reshape(values.shape[0], -1) if values.ndim else values.reshape(1, -1)
    return np.ascontiguousarray(rows).view(np.uint8).reshape(rows.shape[0], -1)


def _same(old: np.ndarray | None, new: np.ndarray) -> bool:
    """``old`` and ``new`` are the same array bit for bit (type, shape and bytes)."""
    if old is None or old.dtype != new.dtype or old.shape != new.shape:
        return False
    return not new.size or bool(np.array_equal(_bits(old), _bits(new)))


def _rows_changed(old: np.ndarray, new: np.ndarray) -> np.ndarray | None:
    """Indices of the rows of ``new`` that differ from ``old`` (its new rows included), or
    ``None`` when ``new`` cannot be described by rows of ``old`` (type, width, trailing shape
    or a shorter first axis)."""
    if old.dtype != new.dtype or old.ndim != new.ndim or new.ndim not in (1, 2):
        return None
    if old.shape[1:] != new.shape[1:] or new.shape[0] < old.shape[0]:
        return None
    size = old.shape[0]
    if size:
        differs = (_bits(old) != _bits(new[:size])).any(axis=1)
        changed = np.flatnonzero(differs)
    else:
        changed = np.empty(0, dtype=np.int64)
    return np.concatenate([changed, np.arange(size, new.shape[0])]).astype(np.int64)


def delta(
    old: dict[str, np.ndarray],
    new: dict[str, np.ndarray],
    tail_log: list[tuple[str, str, Any]],
    written: Rows | None = None,
) -> dict[str, np.ndarray]:
    """The entry taking image ``old`` (a state's arrays without :data:`BUFFER_KEYS`) to
    ``new``, with the tail buffers' changes ``tail_log`` (see the module docstring) and the
    arrays given by their ``written`` rows (left out of ``new``)."""
    written = written or {}
    entry: dict[str, np.ndarray] = {"keys": np.array(sorted([*new, *written]), dtype=str)}
    for name, values in new.items():
        before = old.get(name)
        if _same(before, values):
            continue
        rows = None if before is None else _rows_changed(before, values)
        _put(entry, name, values, rows)
    for name, (rows, values, size) in written.items():  # as rows, however many
        entry[f"i.{name}"], entry[f"v.{name}"] = rows, values
        entry[f"n.{name}"] = np.array(size, dtype=np.int64)
    strategies = [s for s, _, _ in tail_log]
    entry["t.strategies"] = np.array(strategies, dtype=str)
    entry["t.ops"] = np.array([_OPS.index(op) for _, op, _ in tail_log], dtype=np.int8)
    cut = [float(v) if op == "cut" else 0.0 for _, op, v in tail_log]
    entry["t.cut"] = np.array(cut, dtype=np.float64)
    parts = [np.asarray(v, dtype=np.float64) for _, op, v in tail_log if op != "cut"]
    entry["t.lengths"] = np.array(
        [0 if op == "cut" else np.asarray(v).size for _, op, v in tail_log], dtype=np.int64
    )
    entry["t.values"] = np.concatenate(parts) if parts else np.empty(0)
    return entry


def _put(
    entry: dict[str, np.ndarray], name: str, values: np.ndarray, rows: np.ndarray | None
) -> None:
    """Array ``name`` into ``entry``: its changed ``rows`` with their values and its length,
    or the whole array when there are no rows to give or more than half of it changed."""
    if rows is not None and 2 * rows.size <= values.shape[0]:
        entry[f"i.{name}"], entry[f"v.{name}"] = rows, values[rows]
        entry[f"n.{name}"] = np.array(values.shape[0], dtype=np.int64)
    else:
        entry[f"w.{name}"] = values


def remove_sorted(buffer: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``buffer`` (sorted) without one occurrence of each of ``values`` (sorted)."""
    if not values.size:
        return buffer
    left = np.searchsorted(buffer, values, side="left")
    # the j-th repeat of a value removes the j-th equal element
    first = np.searchsorted(values, values, side="left")
    positions = left + (np.arange(values.size) - first)
    inside = positions < buffer.size
    positions, values = positions[inside], values[inside]
    return np.delete(buffer, positions[buffer[positions] == values])


def apply_tail_ops(buffer: np.ndarray, op: str, value: Any) -> np.ndarray:
    """``buffer`` (sorted) after one tail operation (see the module docstring)."""
    if op == "insert":
        return np.insert(buffer, np.searchsorted(buffer, value), value)
    if op == "remove":
        return remove_sorted(buffer, value)
    if op == "cut":
        return buffer[buffer <= value]
    if op == "set":
        return np.array(value, dtype=np.float64)
    raise EntryError(f"unknown tail operation {op!r}")


def apply(
    image: dict[str, np.ndarray], buffers: dict[str, np.ndarray], entry: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(image, buffers)`` after ``entry`` (new dicts; the arguments are not changed).
    Raises :class:`EntryError` when the entry does not fit the image."""
    try:
        keys = [str(k) for k in entry["keys"]]
        out: dict[str, np.ndarray] = {}
        for name in keys:
            if f"w.{name}" in entry:
                out[name] = entry[f"w.{name}"]
            elif f"i.{name}" in entry:
                before, rows = image[name], entry[f"i.{name}"]
                size = int(entry[f"n.{name}"])
                # every row past the old length is a changed row (delta): a length beyond
                # them is not one delta writes, and is never allocated
                if not before.shape[0] <= size <= before.shape[0] + rows.size:
                    raise EntryError(f"{name}: new length {size} does not fit its rows")
                values = np.zeros((size, *before.shape[1:]), dtype=before.dtype)
                values[: before.shape[0]] = before
                values[rows] = entry[f"v.{name}"]
                out[name] = values
            else:
                out[name] = image[name]
        strategies = [str(s) for s in entry["t.strategies"]]
        ops, cuts = entry["t.ops"], entry["t.cut"]
        ends = np.cumsum(entry["t.lengths"])
        values = entry["t.values"]
        if ops.size != len(strategies) or (ends.size and int(ends[-1]) != values.size):
            raise EntryError("tail operations do not match their values")
        tails = dict(buffers)
        for k, strategy in enumerate(strategies):
            op = _OPS[int(ops[k])]
            arg = (
                float(cuts[k]) if op == "cut" else values[ends[k] - entry["t.lengths"][k] : ends[k]]
            )
            tails[strategy] = apply_tail_ops(tails.get(strategy, np.empty(0)), op, arg)
    except (KeyError, IndexError, ValueError, TypeError) as err:
        if isinstance(err, EntryError):
            raise
        raise EntryError(f"entry does not fit its state ({type(err).__name__}: {err})") from err
    return out, tails


def split_buffers(
    arrays: dict[str, np.ndarray],
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A state's arrays as ``(image, buffers)``: the arrays without :data:`BUFFER_KEYS`, and
    each strategy's tail buffer by name (views)."""
    image = {k: v for k, v in arrays.items() if k not in BUFFER_KEYS}
    offsets, buffer = arrays["t_offsets"], arrays["t_buffer"]
    names = [str(s) for s in arrays["t_names"]]
    if offsets.shape != (len(names) + 1,) or int(offsets[-1]) != buffer.size:
        raise EntryError("tail buffer offsets do not match the buffer")
    return image, {s: buffer[int(offsets[i]) : int(offsets[i + 1])] for i, s in enumerate(names)}


def encode(entry: dict[str, np.ndarray], header: dict[str, Any] | None = None) -> bytes:
    """``entry`` as an uncompressed ``.npz`` (no pickle), with an optional JSON ``header``."""
    out = io.BytesIO()
    extra = {"meta": np.array(json.dumps(header or {}))}
    np.savez(out, allow_pickle=False, **entry, **extra)
    return out.getvalue()


def decode(data: bytes) -> dict[str, np.ndarray]:
    """The entry :func:`encode` wrote (``EntryError`` when it is not one)."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files if key != "meta"}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise EntryError(f"not a journal entry ({type(err).__name__})") from err
