"""The live cycle's statistics from the store, kept between cycles: a cycle costs what changed.

A cycle on an ingested store does not recompute its statistics from the window. It loads the
:class:`~meta_supervisor.signals.incremental.IncrementalStats` the previous cycle saved in the state
directory, reads what the store committed since (the new segments' records that matured at or
before the previous cycle are *late* arrivals; everything else is found by time range), advances
the state to ``as_of`` and saves it again. The frames it produces are, bit for bit, the ones
:func:`meta_supervisor.cycle.run.cycle_frames` computes from every record at once (the same
engine built in one go, :func:`meta_supervisor.signals.incremental.frames_at`; property tests
hold the two equal and the engine to the plain polars formulas).

Files (state directory):

* ``engine.state``: the *base*, a whole incremental state (format:
  :meth:`IncrementalStats.to_bytes`, ~10 MB at 1,000 agents and 10M records, most of it the
  strategies' sorted tail buffers);
* ``engine.journal``: the cycles since the base, one *entry* each
  (:mod:`meta_supervisor.signals.journal`: the rows of the state that changed, and the tail
  buffers' insertions, removals and cuts, not the buffers), each framed as ``MSJ1``, its
  length, and ``h_i = SHA-256(h_{i−1} ‖ entry)`` with ``h_0`` the base's SHA-256: an entry
  edited, dropped, reordered or taken from another base breaks the chain;
* ``engine.json``: what it was built from: the policy fingerprint, the ledger directory, the
  record segments already consumed, the base's SHA-256 and (format 2) the journal's committed
  entries, length and head ``h_n``. It is the **commit point** of every save.

A save is either an entry appended to the journal (after the committed bytes: a tail left by
a crash is cut off), fsynced, then ``engine.json`` naming the new length and head; or, when the
journal would pass :func:`journal_bound` (half the base) or the state is small
(:data:`JOURNAL_MIN_BYTES`), a *compaction*: the whole state to ``.engine.state.next``, then
``engine.json`` naming its hash and no journal (format 1, the file a state without a journal
always had), then the rename, then the old journal removed. A kill at any point leaves the old
state or the new one, never a mix: bytes after the committed length are ignored, a pending
base is found by its hash, and a journal ``engine.json`` does not name is not read.

The state is used only when all of these still hold: same policy, same ledger, every consumed
segment still named by the manifest (the store is append-only), the base's hash and the
journal's chain match ``engine.json``, and ``as_of`` is not before the state's. Otherwise it
is **rebuilt** from the store and the reason recorded (issue #13: nothing is decided on a state
that does not verify): a state lost, corrupted, a journal edited or cut short, or built for
another policy costs one rebuild, never a wrong decision. A rebuild reads only the longest
window, in time chunks of about ``chunk_rows`` records, so its peak memory is bounded by the
chunk, not the ledger.

**Resident engine.** A process that records cycles (the service's scheduler) keeps the state
it saved in memory, with the identity of the files it wrote (inode, size, mtime and ctime of
each: any write or replacement changes the ctime, which no user call can set back). The next
recording cycle uses it when the files are still those, without reading or hashing them, and
otherwise loads them as a fresh process does. A dry run always reads the files. An edit the
identity misses (a kernel whose timestamps are coarser than the time between the save and the
edit) decides nothing either: the state in memory is the one this process computed, and its
next save writes ``engine.json`` naming its own base and chain (an edited base or journal then
fails it and is rebuilt by the next load from the files; an edited ``engine.json`` is replaced).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

# polars imports numpy.ma the first time it builds a Series from an array (every cycle does),
# and so does np.unique: ~20-30 ms. Imported with this module, it is paid at start-up with
# the other imports (a command pays it either way), not inside a cycle's latency.
import numpy.ma
import polars as pl

from meta_supervisor.allocate.profiles import method_for
from meta_supervisor.cycle.learned import LearnedRun
from meta_supervisor.ledger.store import LedgerStore, Manifest, Segment
from meta_supervisor.policy.model import Policy
from meta_supervisor.signals import journal, threads
from meta_supervisor.signals.broken import records_read
from meta_supervisor.signals.cadence import cadence_hours
from meta_supervisor.signals.incremental import (
    CHUNK_ROWS,
    IncrementalStats,
    buffer_arrays,
    npz_bytes,
    read_npz,
    read_state,
)
from meta_supervisor.state.files import (
    atomic_write_bytes,
    atomic_write_text,
    fault_point,
    fsync_path,
)
from meta_supervisor.units import epoch_us, from_epoch_us, instant

__all__ = [
    "CHUNK_ROWS",
    "JOURNAL_MIN_BYTES",
    "MAX_LOSS_TAIL",
    "EngineRun",
    "JournalProblem",
    "advanced_frames",
    "describe",
    "forget_resident",
    "journal_bound",
    "journal_path",
    "keeps_loss_tails",
    "meta_path",
    "preload",
    "store_frames",
]

_FORMAT = 1  # engine.json of a state without a journal
_FORMAT_JOURNAL = 2  # engine.json naming a journal (an older reader rebuilds)
_MAGIC = b"MSJ1"
_HEADER = 4 + 8 + 32  # magic, payload length, chained SHA-256
#: A state smaller than this (bytes) is always written whole: a journal would save nothing.
JOURNAL_MIN_BYTES = 1 << 20
_LAST_INSTANT = datetime(9999, 1, 1, tzinfo=UTC)

Frames = tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]


@dataclass
class EngineRun:
    """How one cycle's statistics were obtained (for the operator and the benchmarks)."""

    mode: str  # "warm" (state advanced) or "rebuilt"
    reason: str  # why it was rebuilt ("" when warm)
    new_segments: int = 0
    late_records: int = 0
    chunks: int = 0
    saved: bool = False
    seconds: dict[str, float] = field(default_factory=dict)
    learned: LearnedRun | None = field(default=None, repr=False)  # select, evidence: how, why
    loaded: str = ""  # warm: "memory" (kept by this process) or "files"
    written: str = ""  # saved: "journal" (one entry appended) or "full" (a new base)

    @property
    def persistence_recomputed(self) -> bool | None:
        """Whether the learned value was computed now (``None``: the profile learns none)."""
        return None if self.learned is None else self.learned.recomputed


def meta_path(state_path: Path) -> Path:
    """``engine.json`` next to ``engine.state``."""
    return Path(state_path).with_suffix(".json")


def _window_hours(policy: Policy) -> float:
    return max(
        policy.lookback_hours,
        policy.cvar_lookback_hours,
        policy.confidence_lookback_hours,
        cadence_hours(policy),
    )


#: The most records per agent the engine keeps for the broken cut (a policy whose cut reads
#: more, ``broken_memory_records`` in the thousands, has its cadence history read each cycle).
MAX_LOSS_TAIL = 8192


def keeps_loss_tails(policy: Policy) -> bool:
    """The engine keeps each agent's latest records for the broken cut (its loss tails,
    :meth:`~meta_supervisor.signals.incremental.IncrementalStats._push_tails`): the profile
    reads ``recent_loss_z`` (select), cadence is on and the cut reads at most
    :data:`MAX_LOSS_TAIL` records per agent. Then a cycle does not read the cadence history."""
    return (
        "recent_loss_z" in method_for(policy.profile).keys
        and cadence_hours(policy) > 0
        and 0 < records_read(policy) <= MAX_LOSS_TAIL
    )


@dataclass
class _Persisted:
    """What the state files hold after a load or a save: the base (its SHA-256 and size), the
    journal's committed part (entries, bytes, head of the hash chain), the consumed segments,
    and the state's *image* (its arrays without the tail buffers; without the loss ring after
    a journal entry, which gives the ring by its written slots) that the next journal entry is
    taken against."""

    base_sha: str
    base_size: int
    segments: set[str]
    image: dict[str, np.ndarray]
    entries: int = 0
    journal_bytes: int = 0
    head: str = ""

    def meta(self, policy: Policy, store: LedgerStore) -> dict[str, Any]:
        """``engine.json`` naming this state: format 1 without a journal (the file a state
        without one always had), format 2 with its ``journal``."""
        meta: dict[str, Any] = {
            "format": _FORMAT if not self.entries else _FORMAT_JOURNAL,
            "policy_fingerprint": policy.fingerprint(),
            "ledger": str(store.root.resolve()),
            "segments": sorted(self.segments),
            "sha256": self.base_sha,
        }
        if self.entries:
            meta["journal"] = {
                "entries": self.entries,
                "bytes": self.journal_bytes,
                "head": self.head,
            }
        return meta


def _load(
    state_path: Path, store: LedgerStore, manifest: Manifest, as_of: datetime, policy: Policy
) -> tuple[IncrementalStats | None, _Persisted | None, str]:
    """The saved state if it is still valid for this cycle, with what the files hold; else
    ``None`` and the reason it cannot be used."""
    meta_file = meta_path(state_path)
    if not (state_path.exists() or next_path(state_path).exists()) or not meta_file.exists():
        return None, None, "no saved state"
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        consumed = set(meta["segments"])
        if meta.get("format") not in (_FORMAT, _FORMAT_JOURNAL):
            return None, None, f"engine.json format {meta.get('format')!r}"
        problem = _unusable(meta["policy_fingerprint"], meta["ledger"], policy, store)
        if problem:
            return None, None, problem
        data = _state_bytes(state_path, meta["sha256"])
        info = meta.get("journal") if meta["format"] == _FORMAT_JOURNAL else None
    except (OSError, ValueError, KeyError, TypeError) as err:
        return None, None, f"unreadable engine.json: {err}"
    # the base is hashed in a thread (hashlib lets go of the GIL) while it is parsed; nothing
    # parsed is used unless the hash matches
    hashing = _Digest(data)
    engine: IncrementalStats | None = None
    image: dict[str, np.ndarray] = {}
    problem = ""
    failure: Exception | None = None
    payloads: list[bytes] = []
    try:
        payloads = [] if info is None else _read_journal(journal_path(state_path), meta, info)
        if not consumed <= {s.path for s in manifest.of("records")}:
            problem = "the ledger lost segments the state was built from"
        else:
            engine, image = _restore(data, payloads, policy, state_path)
    except JournalProblem as err:
        problem = str(err)
    except Exception as err:  # judged below, once the base's hash is known
        failure = err
    # bytes that do not match their hash are never used, whatever parsing them raised
    if hashing.hexdigest() != meta["sha256"]:
        return None, None, "engine.state does not match engine.json (interrupted save?)"
    if failure is not None:
        if not isinstance(failure, _UNREADABLE):
            raise failure  # a bug, not the bytes
        # an unreadable state is rebuilt and the reason kept
        where = "engine.journal" if isinstance(failure, journal.EntryError) else "engine.state"
        problem = f"unreadable {where}: {type(failure).__name__}: {failure}"
    if engine is None:
        return None, None, problem
    if engine.as_of_us is None or engine.as_of_us > epoch_us(as_of):
        return None, None, "as_of is before the saved state's"
    persisted = _Persisted(
        meta["sha256"],
        len(data),
        consumed,
        image,
        len(payloads),
        0 if info is None else int(info["bytes"]),
        "" if info is None else str(info["head"]),
    )
    engine.track_tails()
    return engine, persisted, ""


#: What state bytes that do not parse raise (a state is rebuilt); anything else is a bug.
_UNREADABLE = (ValueError, KeyError, TypeError, OSError, EOFError, zipfile.BadZipFile)


class _Digest:
    """The SHA-256 of ``data``, computed in a thread started at once."""

    def __init__(self, data: bytes) -> None:
        self._hex = ""
        self._thread = threading.Thread(target=self._run, args=(data,), daemon=True)
        self._thread.start()

    def _run(self, data: bytes) -> None:
        self._hex = hashlib.sha256(data).hexdigest()

    def hexdigest(self) -> str:
        """The hex digest (waits for the thread)."""
        self._thread.join()
        return self._hex


def _unusable(fingerprint: str, ledger: str, policy: Policy, store: LedgerStore) -> str:
    """Why a state built for ``fingerprint`` on ``ledger`` cannot serve this cycle ("" if it
    can)."""
    if fingerprint != policy.fingerprint():
        return "the policy changed"
    if ledger != str(store.root.resolve()):
        return f"built on another ledger ({ledger})"
    return ""


def _restore(
    data: bytes, payloads: list[bytes], policy: Policy, source: Path
) -> tuple[IncrementalStats, dict[str, np.ndarray]]:
    """The state of the base ``data`` with the journal entries ``payloads`` replayed, and its
    image as the files hold it (the arrays without the tail buffers: views of ``data``, or the
    image the entries' replay made; what the next entry is a change of; :func:`journal.apply`
    of it gives the new image bit for bit, so it need not be taken again from the restored
    engine, a copy of every array, ~9 ms at 10M under select)."""
    loss_tails = keeps_loss_tails(policy)
    if not payloads:
        arrays = read_state(data, source, verified=True)
        engine = IncrementalStats.from_arrays(arrays, policy, source, loss_tails=loss_tails)
        return engine, {k: v for k, v in arrays.items() if k not in journal.BUFFER_KEYS}
    image, buffers = journal.split_buffers(read_npz(data, check=False))
    for payload in payloads:
        image, buffers = journal.apply(image, buffers, journal.decode(payload))
    names = [str(s) for s in image["t_names"]]
    laid = buffer_arrays([buffers.get(s, np.empty(0)) for s in names])
    engine = IncrementalStats.from_arrays({**image, **laid}, policy, source, loss_tails=loss_tails)
    return engine, image


class JournalProblem(ValueError):
    """``engine.journal`` does not hold what ``engine.json`` names (the reason, for a rebuild)."""


def journal_path(state_path: Path) -> Path:
    """``engine.journal`` next to ``engine.state``."""
    return Path(state_path).with_suffix(".journal")


def _frame(prev_head: bytes, payload: bytes) -> tuple[bytes, bytes]:
    """One journal frame (magic, length, chained SHA-256, payload) and its hash."""
    digest = hashlib.sha256(prev_head + payload).digest()
    return _MAGIC + struct.pack("<Q", len(payload)) + digest + payload, digest


def _read_journal(path: Path, meta: dict[str, Any], info: dict[str, Any]) -> list[bytes]:
    """The committed entries' payloads, each checked against the hash chain that starts at the
    base's SHA-256 and ends at ``info['head']``; :class:`JournalProblem` says what is wrong.
    Bytes after the committed length are an append that was never committed (ignored)."""
    entries, committed = int(info["entries"]), int(info["bytes"])
    if not path.exists():
        raise JournalProblem(f"engine.journal is missing (engine.json names {entries} entries)")
    data = path.read_bytes()
    if len(data) < committed:
        raise JournalProblem(
            f"engine.journal is truncated ({len(data)} bytes, engine.json commits {committed})"
        )
    head, at = bytes.fromhex(meta["sha256"]), 0
    payloads: list[bytes] = []
    while at < committed:
        start = at + _HEADER
        if data[at : at + 4] != _MAGIC or start > committed:
            raise JournalProblem(f"engine.journal entry {len(payloads) + 1} is malformed")
        (size,) = struct.unpack("<Q", data[at + 4 : at + 12])
        payload = data[start : start + size]
        if start + size > committed:
            raise JournalProblem(f"engine.journal entry {len(payloads) + 1} is malformed")
        head = hashlib.sha256(head + payload).digest()
        if head != data[at + 12 : start]:
            raise JournalProblem(
                f"engine.journal entry {len(payloads) + 1} does not match its hash chain "
                "(edited, or written for another base)"
            )
        payloads.append(payload)
        at = start + size
    if len(payloads) != entries or head.hex() != info["head"]:
        raise JournalProblem("engine.journal does not end where engine.json says (edited?)")
    return payloads


def _rebuild(
    store: LedgerStore, manifest: Manifest, as_of: datetime, policy: Policy, chunk_rows: int
) -> tuple[IncrementalStats, int]:
    """A state for ``as_of`` from the store, advanced in time chunks over the longest window.

    The view holds the records matured in ``(as_of − W, as_of]`` (``W`` the longest lookback)
    plus the latest earlier record of every agent with none in it (so stale agents stay in the
    universe). Other records before the window are invisible to every chunk, entering and
    leaving alike; the stale agents' records may enter an early chunk's windows and leave them
    again by ``as_of``. So the state at ``as_of`` sees exactly what a full recompute sees.
    """
    start = as_of - timedelta(hours=_window_hours(policy))
    start_us, as_of_us = epoch_us(start), epoch_us(as_of)
    window = store.scan("records", start, as_of, manifest).filter(
        (pl.col("matured_at") > instant(start)) & (pl.col("matured_at") <= instant(as_of))
    )
    seen = store.agents_after(start, as_of, manifest)
    stale = store.latest_before(start, seen, manifest)
    view = pl.concat([stale.lazy(), window]) if stale.height else window
    overlapping = [s for s in manifest.of("records") if s.overlaps(start_us, as_of_us)]
    rows = sum(s.rows for s in overlapping)
    first_us = min((s.lo for s in overlapping if s.lo is not None), default=as_of_us)
    first_us = max(first_us, start_us)
    chunks = max(1, math.ceil(rows / max(chunk_rows, 1)))
    engine = IncrementalStats(policy, loss_tails=keeps_loss_tails(policy))
    for i in range(1, chunks + 1):
        step_us = as_of_us if i == chunks else first_us + (as_of_us - first_us) * i // chunks
        engine.advance(view, from_epoch_us(step_us), keep_window=False)
    return engine, chunks


def next_path(state_path: Path) -> Path:
    """``.engine.state.next``: the new state, written before ``engine.json`` names it."""
    state_path = Path(state_path)
    return state_path.with_name(f".{state_path.name}.next")


def _save(
    engine: IncrementalStats,
    state_path: Path,
    store: LedgerStore,
    manifest: Manifest,
    prior: _Persisted | None,
) -> tuple[_Persisted, str]:
    """Write the state and return what the files now hold, and how (``"journal"`` or
    ``"full"``).

    **Journal** (the state files' size is proportional to what changed): when the previous
    state's files are known (``prior``), the base is at least :data:`JOURNAL_MIN_BYTES` and
    the journal stays within :func:`journal_bound`, one entry
    (:func:`meta_supervisor.signals.journal.delta` of the image, the tail log and the loss
    ring's written slots) is appended
    to ``engine.journal`` (after the committed bytes: an uncommitted tail is cut), fsynced,
    then ``engine.json`` names the new length and head (the commit point). A kill before it
    leaves the old state (the extra bytes are ignored).

    **Full** (a compaction, or a small or new state): the state to ``.engine.state.next``,
    then ``engine.json`` naming its hash (format 1, no journal: the commit point), then the
    rename to ``engine.state`` and the old journal removed. A kill at any point leaves a pair
    that loads (the old one, or the new one found by its hash, see :func:`_state_bytes`), so a
    kill never costs a rebuild (a rebuild would decide the same bits, but reads the window)."""
    segments = {s.path for s in manifest.of("records")}
    log = engine.take_tail_log()
    if prior is not None and log is not None and prior.base_size >= JOURNAL_MIN_BYTES:
        # the loss ring by its written slots (tracked with the log), not copied and compared;
        # whole (8 bytes a slot, not 16) when more than half of it was written
        slots = engine.take_ring_writes()
        whole = slots is None or 2 * slots.size > len(engine.names) * engine.loss_k
        image = engine.state_arrays(buffers=False, ring=whole)
        written = None if whole or slots is None else engine.ring_rows(slots)
        payload = journal.encode(journal.delta(prior.image, image, log, written))
        frame, head = _frame(bytes.fromhex(prior.head or prior.base_sha), payload)
        size = prior.journal_bytes + len(frame)
        if size <= journal_bound(prior.base_size):
            _append_journal(journal_path(state_path), prior.journal_bytes, frame)
            fault_point("engine_journal_appended")
            saved = _Persisted(
                prior.base_sha,
                prior.base_size,
                segments,
                image,
                prior.entries + 1,
                size,
                head.hex(),
            )
            # no directory fsync: a power loss that undoes this rename leaves the previous
            # engine.json, whose shorter journal is the previous state, whole (a cache: the
            # next cycle advances it to the same bits)
            atomic_write_text(
                meta_path(state_path),
                json.dumps(saved.meta(engine.policy, store), indent=1) + "\n",
                durable=False,
            )
            return saved, "journal"
    arrays = engine.state_arrays()
    data = npz_bytes(arrays)
    pending = next_path(state_path)
    atomic_write_bytes(pending, data)
    fault_point("engine_between_writes")
    image = {k: v for k, v in arrays.items() if k not in journal.BUFFER_KEYS}
    saved = _Persisted(hashlib.sha256(data).hexdigest(), len(data), segments, image)
    atomic_write_text(
        meta_path(state_path), json.dumps(saved.meta(engine.policy, store), indent=1) + "\n"
    )
    fault_point("engine_after_meta")
    os.replace(pending, state_path)
    journal_path(state_path).unlink(missing_ok=True)  # engine.json (format 1) names none
    engine.track_tails()
    return saved, "full"


def _append_journal(path: Path, committed: int, frame: bytes) -> None:
    """``frame`` after the first ``committed`` bytes of ``path`` (what follows them was never
    committed), fsynced."""
    created = not path.exists()
    with open(path, "wb" if created else "r+b") as handle:
        handle.truncate(committed)
        handle.seek(committed)
        handle.write(frame)
        handle.flush()
        os.fsync(handle.fileno())
    if created:
        fsync_path(path.parent)


def journal_bound(base_size: int) -> int:
    """The journal's largest size (bytes) before the state is compacted into a new base:
    half the base and at least :data:`JOURNAL_MIN_BYTES` (a fresh load then reads at most
    1.5x a base, or a base and :data:`JOURNAL_MIN_BYTES`)."""
    return max(JOURNAL_MIN_BYTES, base_size // 2)


def _state_bytes(state_path: Path, sha256: str) -> bytes:
    """The state ``engine.json`` names: ``engine.state``, or the pending one when a kill came
    between ``engine.json`` and the rename (finished here)."""
    pending = next_path(state_path)
    if pending.exists():
        data = pending.read_bytes()
        if hashlib.sha256(data).hexdigest() == sha256:
            os.replace(pending, state_path)
            return data
    return Path(state_path).read_bytes()


class _StoreRanges:
    """The store's records as :class:`~meta_supervisor.signals.incremental.RangeScans`: each
    time range the engine reads scans only the segments whose ``matured_at`` bounds overlap
    it (a store appended hourly holds thousands of segments; the row groups of those it scans
    are skipped by their statistics)."""

    def __init__(self, store: LedgerStore, manifest: Manifest) -> None:
        self.store, self.manifest = store, manifest

    def scan(self, low_us: int | None, high_us: int | None) -> pl.LazyFrame:
        start = None if low_us is None else from_epoch_us(low_us)
        end = None if high_us is None else from_epoch_us(high_us)
        return self.store.scan("records", start, end, self.manifest)


@dataclass
class _Resident:
    """A state kept in memory by a process that saved it (the live service's scheduler), with
    the identity of the files it wrote: valid while they are exactly those files."""

    engine: IncrementalStats
    persisted: _Persisted
    identity: tuple[Any, ...]


#: States this process saved, by resolved state path (see :func:`store_frames`), the most
#: recent :data:`RESIDENT_STATES` only.
_RESIDENT: dict[Path, _Resident] = {}
RESIDENT_STATES = 4
#: Held while :data:`_RESIDENT` is read or changed: cycles of several state directories run at
#: once in one process (the service's requests), and a save keeps its state from a pool thread.
_RESIDENT_LOCK = threading.Lock()


def _keep(state_path: Path, kept: _Resident) -> None:
    """Keep ``kept`` as the state at ``state_path`` (dropping the oldest beyond the bound)."""
    key = state_path.resolve()
    with _RESIDENT_LOCK:
        _RESIDENT.pop(key, None)
        _RESIDENT[key] = kept
        while len(_RESIDENT) > RESIDENT_STATES:
            _RESIDENT.pop(next(iter(_RESIDENT)))


def _identity(state_path: Path) -> tuple[Any, ...]:
    """The state files' identity: ``(inode, size, mtime, ctime)`` (ns) of ``engine.json``,
    ``engine.state``, ``engine.journal`` and ``.engine.state.next`` (``None``: absent). Any
    write, rename or replacement of one of them changes its ctime, which no user call sets
    (at the kernel's timestamp granularity; see the module docstring)."""
    out: list[Any] = []
    for path in (
        meta_path(state_path),
        state_path,
        journal_path(state_path),
        next_path(state_path),
    ):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            out.append(None)
            continue
        out.append((st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(out)


def _resident(
    state_path: Path, store: LedgerStore, manifest: Manifest, as_of: datetime, policy: Policy
) -> tuple[IncrementalStats, _Persisted] | None:
    """The state this process saved last at ``state_path`` when the files are still the ones
    it wrote and it can serve this cycle (the checks of :func:`_load`, without reading or
    hashing the state); taken out of the cache (put back by the next save)."""
    with _RESIDENT_LOCK:
        kept = _RESIDENT.pop(state_path.resolve(), None)
    if kept is None or _identity(state_path) != kept.identity:
        return None
    engine, persisted = kept.engine, kept.persisted
    if _unusable(engine.policy.fingerprint(), str(store.root.resolve()), policy, store):
        return None
    if not persisted.segments <= {s.path for s in manifest.of("records")}:
        return None
    if engine.as_of_us is None or engine.as_of_us > epoch_us(as_of):
        return None
    return engine, persisted


def preload(state_path: Path, store: LedgerStore, policy: Policy) -> str:
    """Load the saved state at ``state_path`` (checked as a cycle checks it: hashes, journal
    chain) and keep it in memory, as a recording cycle of this process leaves it: what a
    resident process (the live service) does once at start. Returns why it could not (""
    when kept)."""
    manifest = store.manifest()
    # no lock is held: a cycle of another process may save meanwhile, so the files must be
    # the same before and after the load for the identity to name what was loaded
    before = _identity(state_path)
    engine, persisted, reason = _load(state_path, store, manifest, _LAST_INSTANT, policy)
    if engine is None or persisted is None:
        return reason
    if _identity(state_path) != before:
        return "the state files changed while they were read"
    engine.judge_losses()  # the broken cut's medians, as a cycle of this process leaves them
    _keep(state_path, _Resident(engine, persisted, before))
    return ""


def forget_resident() -> None:
    """Drop every state kept in memory (the next cycles load from the files)."""
    with _RESIDENT_LOCK:
        _RESIDENT.clear()


def store_frames(
    store: LedgerStore,
    manifest: Manifest,
    as_of: datetime,
    policy: Policy,
    state_path: Path,
    telemetry: pl.DataFrame,
    *,
    save: bool = True,
    chunk_rows: int | None = None,
) -> tuple[Frames, EngineRun]:
    """``(stats, confidence, tails)`` as of ``as_of`` from the store snapshot ``manifest``.

    Advances the saved state when it is valid (see the module docstring), else rebuilds it.
    With ``save`` (a recording cycle, under the state lock) the advanced state is written back
    (a journal entry, or a full state, see :func:`_save`) and kept in memory: the next
    recording cycle of this process starts from it when the state files are still the ones it
    wrote (:func:`_identity`), without reading or hashing them. A dry run loads from the files
    and leaves them as they were. ``telemetry`` is the stats window's runs; ``chunk_rows``
    defaults to :data:`CHUNK_ROWS`. :func:`advanced_frames` then its save, one after the other.
    """
    frames, run, write = advanced_frames(
        store, manifest, as_of, policy, state_path, telemetry, save=save, chunk_rows=chunk_rows
    )
    write()
    return frames, run


def advanced_frames(
    store: LedgerStore,
    manifest: Manifest,
    as_of: datetime,
    policy: Policy,
    state_path: Path,
    telemetry: pl.DataFrame | Callable[[], pl.DataFrame],
    *,
    save: bool = True,
    chunk_rows: int | None = None,
) -> tuple[Frames, EngineRun, Callable[[], None]]:
    """:func:`store_frames` with the state's save left to the caller: the frames, how they
    were obtained, and ``write()``, which saves the advanced state and keeps it in memory
    (nothing unless ``save``). The frames are the caller's own (polars frames, immutable) and
    ``write`` reads only the engine, so a recording cycle decides on the frames while the state
    is written (the write waits on the disk), and calls ``write`` exactly once, before it
    commits a decision (a cycle whose save failed records nothing); a second call raises
    ``RuntimeError`` (it would append a journal entry over the first one's). ``telemetry``
    may be a call that gives it, made once the state is advanced (a read started beside the
    advance; the ``frames`` seconds include any wait for it)."""
    clock = time.perf_counter
    t0 = clock()
    kept = _resident(state_path, store, manifest, as_of, policy) if save else None
    engine: IncrementalStats | None
    prior: _Persisted | None
    if kept is not None:
        (engine, prior), reason, source = kept, "", "memory"
    else:
        engine, prior, reason = _load(state_path, store, manifest, as_of, policy)
        source = "files"
    t1 = clock()
    if engine is None:
        engine, chunks = _rebuild(store, manifest, as_of, policy, chunk_rows or CHUNK_ROWS)
        run = EngineRun("rebuilt", reason, chunks=chunks)
    else:
        consumed = prior.segments if prior is not None else set()
        new: list[Segment] = [s for s in manifest.of("records") if s.path not in consumed]
        prev = from_epoch_us(engine.as_of_us or 0)
        late = None
        if new:
            late = (
                store.scan("records", None, prev, Manifest(segments=tuple(new)))
                .filter(pl.col("matured_at") <= instant(prev))
                .collect()
            )
        ranges = _StoreRanges(store, manifest)
        engine.advance(ranges, as_of, late=late if late is not None and late.height else None)
        run = EngineRun("warm", "", len(new), 0 if late is None else late.height, loaded=source)
    t2 = clock()
    # the broken cut's medians (NumPy sorts of its kept copies, without the GIL) beside the
    # frames; here, as they split over the pool themselves (work on the pool never waits for
    # the pool)
    runs = telemetry() if callable(telemetry) else telemetry
    _, (stats, conf, tails) = threads.beside(engine.judge_losses, lambda: engine.frames(runs))
    frames = (engine.with_expected_records(stats), conf, tails)
    run.seconds = {"load": t1 - t0, "advance": t2 - t1, "frames": clock() - t2, "save": 0.0}
    state = engine
    written: list[bool] = []

    def write() -> None:
        if written:
            raise RuntimeError(f"{state_path}: this cycle's state was saved already")
        written.append(True)
        if not save:
            return
        started = clock()
        saved, run.written = _save(state, state_path, store, manifest, prior)
        run.saved = True
        _keep(state_path, _Resident(state, saved, _identity(state_path)))
        run.seconds["save"] = clock() - started

    return frames, run, write


def describe(run: EngineRun) -> dict[str, Any]:
    """A JSON-ready summary of ``run``."""
    return {
        "mode": run.mode,
        "reason": run.reason,
        "new_segments": run.new_segments,
        "late_records": run.late_records,
        "chunks": run.chunks,
        "saved": run.saved,
        "loaded": run.loaded,
        "written": run.written,
        "persistence_recomputed": run.persistence_recomputed,
        "seconds": {k: round(v, 6) for k, v in run.seconds.items()},
        **({"learned": run.learned.describe()} if run.learned is not None else {}),
    }
