"""The learned value kept between cycles: per-(agent, day) PnL sums in the state directory.

What a profile learns from the fleet's past, the evidence profile's tilt strength
(:mod:`meta_supervisor.signals.persistence`) or the select profile's rule
(:mod:`meta_supervisor.signals.selection`), is a function of per-(agent, bucket) cells
(:class:`~meta_supervisor.signals.daysums.DaySums`; a bucket is a day for the default policy)
of the records matured in the range ``(A − J·H − L, A]`` before its anchor ``A`` (the
profile's ``H`` and ``J``: :func:`~meta_supervisor.signals.daysums.lag_grid`). The state
directory keeps those cells, so a cycle only recomputes the buckets that changed since the
state was saved: the buckets after the kept anchor, and those that received a late record
(found in the store's segments committed since).
A bucket is always recomputed from *all* its records, so the kept cells are the same bytes as
cells rebuilt from the store, and the strength computed from them the same bits (issue #13: a
rebuild gives the same bytes as the incremental path).

File ``persistence.state`` (:attr:`meta_supervisor.config.Paths.persistence`), written
atomically in one piece (temp file, fsync, rename), so a kill at any point leaves the previous
file or the new one:

* line 1, a JSON header (sorted keys): ``format``; ``policy_fingerprint``, ``ledger`` (the
  store's resolved path), ``segments`` (the record segments the cells were built from),
  ``anchor_us`` (``A``, µs since the epoch); ``persistence`` (the value at ``A``,
  :meth:`Persistence.to_dict`); ``sums_bytes`` and ``sums_sha256``, the length and SHA-256 of
  what follows; ``sha256``, the SHA-256 of the canonical JSON of every other header field
  (sorted keys, no spaces);
* then :meth:`DaySums.to_bytes` (nothing when the range holds more than :data:`MAX_BUCKETS`
  buckets, below).

Each part is checked before it is used: the header's hash on every load; the cells' length and
hash (then their structure, :meth:`DaySums.from_bytes`) when a cycle advances them. A cycle
that keeps the value reads the header line only.

The file is used only when all of these hold: it parses, its hash matches, same format, same
policy, same ledger, every segment it was built from still named by the manifest, and ``A`` not
before its anchor. Otherwise the cells are **rebuilt** from the store and the reason returned
(:attr:`LearnedRun.reason`): an edited, truncated or other-policy file is never used. A rebuild
reads the range in time chunks of about :data:`CHUNK_ROWS` records, so its memory is bounded by
the chunk, not the ledger. A policy whose range holds more than :data:`MAX_BUCKETS` buckets (a
lookback that shares only a few µs with the step, e.g. 168.0000001 h) keeps no cells: the
value is kept while the anchor stays and no new record matured by it, else computed from the
range's records.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from meta_supervisor.ledger.store import LedgerStore, Manifest, Segment
from meta_supervisor.policy.model import Policy
from meta_supervisor.signals.daysums import SUMS_COLUMNS, DaySums, bucket_us
from meta_supervisor.signals.persistence import (
    Persistence,
    anchor,
    persistence,
    persistence_from_sums,
    sums_range,
)
from meta_supervisor.state.files import atomic_write_bytes
from meta_supervisor.units import epoch_us, from_epoch_us, instant

__all__ = ["CHUNK_ROWS", "FORMAT", "LearnedRun", "kept_persistence", "save_learned", "state_digest"]

#: Records read at once when the cells are rebuilt.
CHUNK_ROWS = 2_000_000
#: The most buckets whose cells a cycle lists: a bucket is gcd(H, L) µs wide, a few µs for a
#: lookback like 168.0000001 h (billions of buckets over the range); past this many the strength
#: is computed from the range's records and no cells are kept.
MAX_BUCKETS = 1_000_000
FORMAT = 3


@dataclass
class LearnedRun:
    """How one cycle obtained the learned value (for the operator and the benchmarks)."""

    value: Persistence
    recomputed: bool  # the value was computed now (False: the kept one, nothing changed)
    mode: str  # "kept" (file used as it was), "advanced" (buckets recomputed) or "rebuilt"
    reason: str = ""  # why the file was not used ("" unless rebuilt)
    buckets: int = 0  # buckets recomputed from the store
    late_records: int = 0  # records of new segments matured in the kept range
    saved: bool = False
    seconds: float = 0.0
    sums: DaySums | None = field(default=None, repr=False)  # the cells the value came from

    def describe(self) -> dict[str, Any]:
        """JSON-ready: how the value was obtained (the value itself is in the decision)."""
        return {
            "mode": self.mode,
            "reason": self.reason,
            "buckets": self.buckets,
            "late_records": self.late_records,
            "saved": self.saved,
            "seconds": round(self.seconds, 6),
        }

    def line(self, what: str) -> str:
        """One line for the operator: ``what`` (e.g. ``"learned rule"``) kept, advanced, or
        rebuilt from the ledger and why."""
        if self.mode == "kept":
            return f"{what}: kept (same anchor, no late record)"
        late = f", {self.late_records} late record(s)" if self.late_records else ""
        if self.mode == "advanced" and not self.buckets:  # past MAX_BUCKETS: no cells kept
            return (
                f"{what}: recomputed from the range's records (buckets too narrow to keep"
                f"{late}) in {self.seconds * 1e3:.0f} ms"
            )
        if self.mode == "advanced":
            return (
                f"{what}: advanced ({self.buckets} bucket(s) recomputed{late}) "
                f"in {self.seconds * 1e3:.0f} ms"
            )
        return f"{what}: rebuilt from the ledger in {self.seconds:.1f} s ({self.reason})"


@dataclass(frozen=True)
class _Kept:
    anchor_us: int
    segments: frozenset[str]
    value: Persistence
    sums_at: tuple[int, int, str]  # the cells' offset in the file, length and SHA-256


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def state_digest(header: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``header`` (every header field but ``sha256``)."""
    return hashlib.sha256(_canonical(header)).hexdigest()


#: The header line is small (names of segments, a few numbers): refuse a longer one.
_MAX_HEADER = 1 << 24


def _load(
    path: Path, store: LedgerStore, manifest: Manifest, at_us: int, policy: Policy
) -> tuple[_Kept | None, str]:
    """The kept state if it may be used for a cycle whose anchor is ``at_us``; else ``None``
    and the reason. The cells are not read here (:func:`_sums`)."""
    name = Path(path).name
    try:
        with open(path, "rb") as handle:
            line = handle.readline(_MAX_HEADER)
    except FileNotFoundError:
        return None, "no saved learned value"
    except OSError as err:
        return None, f"unreadable {name}: {err}"
    try:
        blob = json.loads(line)
        if not isinstance(blob, dict):
            raise TypeError("not a JSON object")
        header = {k: v for k, v in blob.items() if k != "sha256"}
        if blob.get("format") != FORMAT:
            return None, f"{name} format {blob.get('format')!r}"
        if blob.get("sha256") != state_digest(header):
            return None, f"{name} does not match its hash (edited or corrupt)"
        if header["policy_fingerprint"] != policy.fingerprint():
            return None, "the policy changed"
        if header["ledger"] != str(store.root.resolve()):
            return None, f"built on another ledger ({header['ledger']})"
        segments = frozenset(str(s) for s in header["segments"])
        anchor_us = int(header["anchor_us"])
        value = Persistence.from_dict(header["persistence"])
        sums_at = (len(line), int(header["sums_bytes"]), str(header["sums_sha256"]))
    except (ValueError, KeyError, TypeError) as err:
        return None, f"unreadable {name}: {type(err).__name__}: {err}"
    if not segments <= {s.path for s in manifest.of("records")}:
        return None, "the ledger lost segments the day sums were built from"
    if anchor_us > at_us:
        return None, "the anchor is before the kept one"
    return _Kept(anchor_us, segments, value, sums_at), ""


def _sums(path: Path, kept: _Kept, policy: Policy) -> tuple[DaySums | None, str]:
    """The kept cells, checked (length, hash, structure, horizon and bucket width); else
    ``None`` and the reason."""
    name = Path(path).name
    offset, size, digest = kept.sums_at
    if not size:  # saved under a policy of more than MAX_BUCKETS buckets: nothing to advance
        return None, f"{name} holds no day sums"
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read(size + 1)
    except OSError as err:
        return None, f"unreadable {name}: {err}"
    if len(data) != size or hashlib.sha256(data).hexdigest() != digest:
        return None, f"the day sums in {name} do not match their hash (edited or corrupt)"
    try:
        sums = DaySums.from_bytes(data)
    except (ValueError, KeyError, TypeError) as err:
        return None, f"unreadable day sums in {name}: {err}"
    if (sums.horizon_hours, sums.bucket_us) != (policy.horizon_hours, bucket_us(policy)):
        return None, "day sums of another horizon or bucket width"
    return sums, ""


def _save(
    path: Path,
    store: LedgerStore,
    manifest: Manifest,
    at_us: int,
    policy: Policy,
    value: Persistence,
    sums: DaySums | None,
) -> None:
    data = b"" if sums is None else sums.to_bytes()
    header: dict[str, Any] = {
        "format": FORMAT,
        "policy_fingerprint": policy.fingerprint(),
        "ledger": str(store.root.resolve()),
        "segments": sorted(s.path for s in manifest.of("records")),
        "anchor_us": at_us,
        "persistence": value.to_dict(),
        "sums_bytes": len(data),
        "sums_sha256": hashlib.sha256(data).hexdigest(),
    }
    header["sha256"] = state_digest(header)
    line = json.dumps(header, sort_keys=True, ensure_ascii=True).encode("ascii")
    atomic_write_bytes(Path(path), line + b"\n" + data)


def _runs(buckets: list[int]) -> list[tuple[int, int]]:
    """Sorted buckets as maximal runs ``(first, last)`` of consecutive ones."""
    runs: list[tuple[int, int]] = []
    for b in buckets:
        if runs and runs[-1][1] == b - 1:
            runs[-1] = (runs[-1][0], b)
        else:
            runs.append((b, b))
    return runs


def _bucket_cells(
    store: LedgerStore,
    manifest: Manifest,
    policy: Policy,
    buckets: list[int],
    chunk_rows: int,
) -> DaySums:
    """The cells of ``buckets`` from all their records in the store, read in runs of
    consecutive buckets cut to about ``chunk_rows`` records (estimated from the manifest)."""
    width = bucket_us(policy)
    sums = DaySums.empty(policy)
    for first, last in _runs(sorted(set(buckets))):
        low, high = first * width, (last + 1) * width
        overlapping = [s for s in manifest.of("records") if s.overlaps(low, high)]
        rows = sum(_rows_within(s, low, high) for s in overlapping)
        chunks = max(1, min(last - first + 1, math.ceil(rows / max(chunk_rows, 1))))
        size = math.ceil((last - first + 1) / chunks)
        for lo_b in range(first, last + 1, size):
            hi_b = min(last, lo_b + size - 1)
            lo_us, hi_us = lo_b * width, (hi_b + 1) * width
            start, end = from_epoch_us(lo_us), from_epoch_us(hi_us)
            lazy = store.scan("records", start, end, manifest).select(SUMS_COLUMNS)
            part = DaySums.from_records(lazy, policy, lo_us, hi_us)
            sums = sums.replaced(range(lo_b, hi_b + 1), part)
    return sums


def _rows_within(segment: Segment, low: int, high: int) -> float:
    """The segment's rows, scaled by the share of its time span inside ``(low, high]``."""
    if segment.lo is None or segment.hi is None or segment.hi <= segment.lo:
        return float(segment.rows)
    inside = min(high, segment.hi) - max(low, segment.lo)
    return segment.rows * max(0.0, min(1.0, inside / (segment.hi - segment.lo)))


def _late_buckets(
    store: LedgerStore, new: list[Segment], policy: Policy, low: int, high: int
) -> tuple[set[int], int]:
    """The buckets of the new segments' records at the horizon matured in ``(low, high]``,
    and how many such records."""
    touching = [s for s in new if s.overlaps(low, high)]
    if not touching or high <= low:
        return set(), 0
    width = bucket_us(policy)
    matured = (
        store.scan(
            "records", from_epoch_us(low), from_epoch_us(high), Manifest(segments=tuple(touching))
        )
        .filter(pl.col("horizon_hours") == policy.horizon_hours)
        .select(pl.col("matured_at").dt.epoch("us").alias("us"))
        .filter((pl.col("us") > low) & (pl.col("us") <= high))
        .collect()["us"]
    )
    return set(((matured - 1) // width).unique().to_list()), matured.len()


def kept_persistence(
    store: LedgerStore,
    manifest: Manifest,
    as_of: datetime,
    policy: Policy,
    path: Path,
    *,
    save: bool = True,
    chunk_rows: int | None = None,
) -> LearnedRun:
    """The learned value as of ``as_of`` from the store snapshot ``manifest``, through the
    cells kept in ``path`` (see the module docstring); with ``save`` (a recording cycle, under
    the state lock) a changed state is written back."""
    started = time.perf_counter()
    chunk = chunk_rows or CHUNK_ROWS
    at_us = epoch_us(anchor(as_of, policy))
    kept, reason = _load(path, store, manifest, at_us, policy)
    new = [] if kept is None else [s for s in manifest.of("records") if s.path not in kept.segments]
    run = _from_cells(store, manifest, as_of, policy, path, kept, reason, new, chunk)
    run.seconds = time.perf_counter() - started
    if save:
        save_learned(run, store, manifest, as_of, policy, path)
    return run


def save_learned(
    run: LearnedRun,
    store: LedgerStore,
    manifest: Manifest,
    as_of: datetime,
    policy: Policy,
    path: Path,
) -> None:
    """Write the state ``run`` computed (nothing when it kept the saved one) to ``path``, as
    :func:`kept_persistence` with ``save`` does: for a cycle that obtained ``run`` with
    ``save=False`` and saves it once the rest of its work succeeded (under the state lock)."""
    if not run.recomputed:
        return
    started = time.perf_counter()
    at_us = epoch_us(anchor(as_of, policy))
    _save(path, store, manifest, at_us, policy, run.value, run.sums)
    run.saved = True
    run.seconds += time.perf_counter() - started


def _range_records(
    store: LedgerStore, manifest: Manifest, policy: Policy, start: datetime, end: datetime
) -> pl.DataFrame:
    """The store's records at the policy horizon matured in ``(start, end]``."""
    return (
        store.scan("records", start, end, manifest)
        .filter(
            (pl.col("matured_at") > instant(start))
            & (pl.col("matured_at") <= instant(end))
            & (pl.col("horizon_hours") == policy.horizon_hours)
        )
        .select(SUMS_COLUMNS)
        .collect()
    )


def _from_cells(
    store: LedgerStore,
    manifest: Manifest,
    as_of: datetime,
    policy: Policy,
    path: Path,
    kept: _Kept | None,
    reason: str,
    new: list[Segment],
    chunk: int,
) -> LearnedRun:
    """The learned value from the kept cells, advanced to ``as_of``'s anchor (kept as it is
    while the anchor has not moved and no new record matured by it)."""
    width = bucket_us(policy)
    low, high = sums_range(as_of, policy)
    first, last = low // width, high // width - 1  # the buckets of the range
    late: set[int] = set()
    late_records = 0
    if kept is not None:
        # the buckets of the range a new record landed in, up to the kept anchor
        late, late_records = _late_buckets(store, new, policy, low, min(kept.anchor_us, high))
        if kept.anchor_us == high and not late:
            return LearnedRun(kept.value, False, "kept", late_records=late_records)
    if last - first + 1 > MAX_BUCKETS:  # tiny buckets: the records, not billions of cells
        records = _range_records(store, manifest, policy, from_epoch_us(low), from_epoch_us(high))
        mode = "rebuilt" if kept is None else "advanced"
        value = persistence(records, as_of, policy)
        return LearnedRun(value, True, mode, reason, late_records=late_records)
    if kept is not None:
        # buckets after the kept anchor are all new; before it, those a late record landed in
        dirty = set(range(max(first, kept.anchor_us // width), last + 1)) | late
        sums, reason = _sums(path, kept, policy)
        if sums is not None:
            fresh = _bucket_cells(store, manifest, policy, sorted(dirty), chunk)
            sums = sums.replaced(dirty, fresh).within(first, last)
            value = persistence_from_sums(sums, as_of, policy)
            return LearnedRun(value, True, "advanced", "", len(dirty), late_records, sums=sums)
    sums = _bucket_cells(store, manifest, policy, list(range(first, last + 1)), chunk)
    value = persistence_from_sums(sums, as_of, policy)
    return LearnedRun(value, True, "rebuilt", reason, last - first + 1, sums=sums)
