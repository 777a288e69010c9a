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

* ``engine.state``: the incremental state (format: :meth:`IncrementalStats.save`);
* ``engine.json``: what it was built from: the policy fingerprint, the ledger directory, the
  record segments already consumed, and the SHA-256 of ``engine.state``; it is the commit
  point of a save (the new state is written first as ``.engine.state.next``, renamed after), so
  a kill during a save leaves a pair that loads and never forces a rebuild.

The state is used only when all of these still hold: same policy, same ledger, every consumed
segment still named by the manifest (the store is append-only), the hash matches, and ``as_of``
is not before the state's. Otherwise it is **rebuilt** from the store (and the reason recorded):
a state lost, corrupted, killed between the two writes or built for another policy costs one
rebuild, never a wrong decision. A rebuild reads only the longest window, in time chunks of
about ``chunk_rows`` records, so its peak memory is bounded by the chunk, not the ledger.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from meta_supervisor.ledger.store import LedgerStore, Manifest, Segment
from meta_supervisor.policy.model import Policy
from meta_supervisor.signals.incremental import CHUNK_ROWS, IncrementalStats
from meta_supervisor.signals.persistence import Persistence
from meta_supervisor.state.files import atomic_write_bytes, atomic_write_text, fault_point

__all__ = [
    "CHUNK_ROWS",
    "EngineRun",
    "describe",
    "meta_path",
    "store_frames",
    "store_persistence",
]

_FORMAT = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

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
    persistence_recomputed: bool | None = None  # evidence profile: learned strength recomputed


def meta_path(state_path: Path) -> Path:
    """``engine.json`` next to ``engine.state``."""
    return Path(state_path).with_suffix(".json")


def _us(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _window_hours(policy: Policy) -> float:
    return max(policy.lookback_hours, policy.cvar_lookback_hours, policy.confidence_lookback_hours)


def _load(
    state_path: Path, store: LedgerStore, manifest: Manifest, as_of: datetime, policy: Policy
) -> tuple[IncrementalStats | None, set[str], str]:
    """The saved state if it is still valid for this cycle, with its consumed segments; else
    ``None`` and the reason it cannot be used."""
    meta_file = meta_path(state_path)
    if not (state_path.exists() or next_path(state_path).exists()) or not meta_file.exists():
        return None, set(), "no saved state"
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        consumed = set(meta["segments"])
        if meta.get("format") != _FORMAT:
            return None, set(), f"engine.json format {meta.get('format')!r}"
        if meta["policy_fingerprint"] != policy.fingerprint():
            return None, set(), "the policy changed"
        if meta["ledger"] != str(store.root.resolve()):
            return None, set(), f"built on another ledger ({meta['ledger']})"
        data = _state_bytes(state_path, meta["sha256"])
        if meta["sha256"] != hashlib.sha256(data).hexdigest():
            return None, set(), "engine.state does not match engine.json (interrupted save?)"
    except (OSError, ValueError, KeyError, TypeError) as err:
        return None, set(), f"unreadable engine.json: {err}"
    named = {s.path for s in manifest.of("records")}
    if not consumed <= named:
        return None, set(), "the ledger lost segments the state was built from"
    try:
        engine = IncrementalStats.from_bytes(data, policy, state_path)
    except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile) as err:
        # an unreadable state is rebuilt and the reason kept (a bug elsewhere still raises)
        return None, set(), f"unreadable engine.state: {type(err).__name__}: {err}"
    if engine.as_of_us is None or engine.as_of_us > _us(as_of):
        return None, set(), "as_of is before the saved state's"
    return engine, consumed, ""


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
    start_us, as_of_us = _us(start), _us(as_of)
    window = store.scan("records", start, as_of, manifest).filter(
        (pl.col("matured_at") > start) & (pl.col("matured_at") <= as_of)
    )
    seen = store.agents_after(start, as_of, manifest)
    if seen is None:
        seen = set(window.select(pl.col("agent").unique()).collect()["agent"].to_list())
    stale = store.latest_before(start, seen, manifest)
    view = pl.concat([stale.lazy(), window]) if stale.height else window
    overlapping = [s for s in manifest.of("records") if s.overlaps(start_us, as_of_us)]
    rows = sum(s.rows for s in overlapping)
    first_us = min((s.lo for s in overlapping if s.lo is not None), default=as_of_us)
    first_us = max(first_us, start_us)
    chunks = max(1, math.ceil(rows / max(chunk_rows, 1)))
    engine = IncrementalStats(policy)
    for i in range(1, chunks + 1):
        step_us = as_of_us if i == chunks else first_us + (as_of_us - first_us) * i // chunks
        engine.advance(view, _EPOCH + timedelta(microseconds=step_us))
    return engine, chunks


def next_path(state_path: Path) -> Path:
    """``.engine.state.next``: the new state, written before ``engine.json`` names it."""
    state_path = Path(state_path)
    return state_path.with_name(f".{state_path.name}.next")


def _save(
    engine: IncrementalStats, state_path: Path, store: LedgerStore, manifest: Manifest
) -> None:
    """The new state to ``.engine.state.next``, then ``engine.json`` naming its hash (the
    commit point), then the rename to ``engine.state``. A kill at any point leaves a pair that
    loads (the old one, or the new one found by its hash, see :func:`_state_bytes`), so a kill
    never costs a rebuild (a rebuild would decide the same bits, but reads the whole window)."""
    data = engine.to_bytes()
    pending = next_path(state_path)
    atomic_write_bytes(pending, data)
    fault_point("engine_between_writes")
    meta = {
        "format": _FORMAT,
        "policy_fingerprint": engine.policy.fingerprint(),
        "ledger": str(store.root.resolve()),
        "segments": sorted(s.path for s in manifest.of("records")),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    atomic_write_text(meta_path(state_path), json.dumps(meta, indent=1) + "\n")
    fault_point("engine_after_meta")
    os.replace(pending, state_path)


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
    With ``save`` (a recording cycle, under the state lock) the advanced state is written back;
    a dry run leaves the files as they were. ``telemetry`` is the stats window's runs;
    ``chunk_rows`` defaults to :data:`CHUNK_ROWS`.
    """
    clock = time.perf_counter
    t0 = clock()
    engine, consumed, reason = _load(state_path, store, manifest, as_of, policy)
    t1 = clock()
    if engine is None:
        engine, chunks = _rebuild(store, manifest, as_of, policy, chunk_rows or CHUNK_ROWS)
        run = EngineRun("rebuilt", reason, chunks=chunks)
    else:
        new: list[Segment] = [s for s in manifest.of("records") if s.path not in consumed]
        prev = _EPOCH + timedelta(microseconds=engine.as_of_us or 0)
        late = None
        if new:
            late = (
                store.scan("records", None, prev, Manifest(segments=tuple(new)))
                .filter(pl.col("matured_at") <= prev)
                .collect()
            )
        ledger = store.scan("records", manifest=manifest)
        engine.advance(ledger, as_of, late=late if late is not None and late.height else None)
        run = EngineRun("warm", "", len(new), 0 if late is None else late.height)
    t2 = clock()
    stats, conf, tails = engine.frames(telemetry)
    frames = (engine.with_expected_records(stats), conf, tails)
    t3 = clock()
    if save:
        _save(engine, state_path, store, manifest)
        run.saved = True
    run.seconds = {"load": t1 - t0, "advance": t2 - t1, "frames": t3 - t2, "save": clock() - t3}
    return frames, run


def describe(run: EngineRun) -> dict[str, Any]:
    """A JSON-ready summary of ``run``."""
    return {
        "mode": run.mode,
        "reason": run.reason,
        "new_segments": run.new_segments,
        "late_records": run.late_records,
        "chunks": run.chunks,
        "saved": run.saved,
        "persistence_recomputed": run.persistence_recomputed,
        "seconds": {k: round(v, 6) for k, v in run.seconds.items()},
    }


def store_persistence(
    store: LedgerStore,
    manifest: Manifest,
    as_of: datetime,
    policy: Policy,
    cache_path: Path,
    *,
    save: bool = True,
) -> tuple[Persistence, bool]:
    """The evidence profile's learned strength as of ``as_of``, and whether it was recomputed.

    Kept incrementally in ``cache_path`` as per-(agent, day) PnL sums
    (:func:`meta_supervisor.cycle.learned.kept_persistence`, which also says why a kept file
    was not used): the same value as :func:`meta_supervisor.signals.persistence.persistence`
    on the store's records, to the last bit.
    """
    from meta_supervisor.cycle.learned import kept_persistence

    run = kept_persistence(store, manifest, as_of, policy, cache_path, save=save)
    return run.value, run.recomputed
