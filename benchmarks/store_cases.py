"""Benchmark cases of the live cycle on the store, as `meta-supervisor allocate` runs it.

Both time :func:`meta_supervisor.cycle.run.run_cycle` itself (lock, history, decision files, engine
state and all) on an ingested store under ``bench-data/store-<key>-<policy>-s<version>/``:

* ``store_cycle``: a cycle with no saved state, so the engine rebuilds its statistics from the
  store in time chunks (the full-cycle case, reading from the store included);
* ``store_append``: the cycle one hour later, after 10,000 records were appended as a new batch,
  from the state the previous cycle saved (the "cycle after appending 10k" case).

Setup (untimed, cached): the base ledger is committed to the store, a cycle at ``AS_OF`` writes a
state directory that is kept as a snapshot, then the 10,000 records are committed as a second
batch. Each run copies the snapshot into a fresh state directory.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl

from benchmarks.data import AS_OF, DATA_DIR, LedgerSpec, appended_records, ensure_ledger
from meta_supervisor.config import Paths
from meta_supervisor.cycle.engine import describe
from meta_supervisor.cycle.run import run_cycle
from meta_supervisor.ingest.records import RECORD_SCHEMA, TELEMETRY_SCHEMA, empty_quarantine
from meta_supervisor.ingest.records import empty_telemetry as no_telemetry
from meta_supervisor.ledger.store import LedgerStore
from meta_supervisor.policy.model import Profile
from meta_supervisor.signals.incremental import STATE_VERSION

__all__ = ["STORE_CASES"]

APPEND_N = 10_000
_READY = "READY"


def _full(frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """``frame`` with the store's whole schema (the generator writes only what the cycle reads)."""
    missing = [pl.lit(None, dtype=t).alias(c) for c, t in schema.items() if c not in frame.columns]
    return frame.with_columns(missing).select([pl.col(c).cast(t) for c, t in schema.items()])


def _paths(store: Path, state_dir: Path) -> Paths:
    absent = state_dir / "no-raw-files"
    return Paths(records=absent, telemetry=absent, state_dir=state_dir, ledger=store)


def ensure_store(spec: LedgerSpec, policy: Any) -> tuple[Path, Path]:
    """The store (base + the appended batch) and the state snapshot after the cycle at AS_OF."""
    # the snapshot's saved state is valid for one policy and one engine state version only
    # (another one is rebuilt, and an append case would time a rebuild)
    root = DATA_DIR / f"store-{spec.key()}-{policy.fingerprint()[:8]}-s{STATE_VERSION}"
    store_dir, snapshot = root / "ledger", root / "state-at-as-of"
    if (root / _READY).exists():
        return store_dir, snapshot
    shutil.rmtree(root, ignore_errors=True)
    records_path, telemetry_path = ensure_ledger(spec)
    store = LedgerStore(store_dir)
    with store.writer():
        store.append(
            _full(pl.read_parquet(records_path), RECORD_SCHEMA),
            _full(pl.read_parquet(telemetry_path), TELEMETRY_SCHEMA),
            empty_quarantine(),
        )
    snapshot.mkdir(parents=True)
    run_cycle(_paths(store_dir, snapshot), AS_OF, policy)
    batch = _full(appended_records(spec, APPEND_N, AS_OF, 1.0), RECORD_SCHEMA)
    with store.writer():
        store.append(batch, no_telemetry(), empty_quarantine())
    (root / _READY).write_text("ok\n")
    return store_dir, snapshot


def _timed_cycle(
    store: Path, state_dir: Path, as_of: Any, policy: Any, *, warm: bool = False
) -> dict[str, Any]:
    start = time.perf_counter()
    decision, ledger = run_cycle(_paths(store, state_dir), as_of, policy)
    seconds = time.perf_counter() - start
    engine = describe(ledger.engine) if ledger.engine is not None else {}
    if warm and engine.get("mode") != "warm":
        raise SystemExit(
            f"the snapshot's engine state was not used ({engine.get('mode')}: "
            f"{engine.get('reason')}); remove {store.parent} to rebuild it"
        )
    return {
        "seconds": seconds,
        **{f"engine_{k}": v for k, v in engine.get("seconds", {}).items()},
        "note": f"{engine.get('mode')}, {engine.get('chunks')} chunk(s), "
        f"{len(decision.weights)} agents, gross {decision.gross:.1%}",
    }


def case_store_cycle(spec: LedgerSpec, options: dict[str, Any]) -> dict[str, Any]:
    """A cycle at AS_OF with no saved state: the engine rebuilds from the store in chunks."""
    from benchmarks.cases import bench_policy

    policy = bench_policy(spec)
    store, _ = ensure_store(spec, policy)
    with tempfile.TemporaryDirectory(dir=DATA_DIR) as tmp:
        return _timed_cycle(store, Path(tmp), AS_OF, policy)


def _append_cycle(spec: LedgerSpec, profile: Profile, cadence: bool = True) -> dict[str, Any]:
    """The cycle one hour after the snapshot's, after 10k records were appended, from the
    state the snapshot's cycle saved (copied into a fresh state directory). ``cadence=False``:
    the policy's ``cadence_history_hours = 0`` (no cadence index is read from the store)."""
    from datetime import timedelta

    from benchmarks.cases import bench_policy

    policy = bench_policy(spec, profile)
    if not cadence:
        policy = policy.model_copy(update={"cadence_history_hours": 0.0})
    store, snapshot = ensure_store(spec, policy)
    with tempfile.TemporaryDirectory(dir=DATA_DIR) as tmp:
        state_dir = Path(tmp) / "state"
        shutil.copytree(snapshot, state_dir)
        return _timed_cycle(store, state_dir, AS_OF + timedelta(hours=1), policy, warm=True)


def case_store_append(spec: LedgerSpec, options: dict[str, Any]) -> dict[str, Any]:
    """The cycle one hour later, after 10k records were appended, from the saved state."""
    return _append_cycle(spec, Profile.SEED)


def case_store_append_nocadence(spec: LedgerSpec, options: dict[str, Any]) -> dict[str, Any]:
    """``store_append`` with cadence off: the cycle without the cadence index, which reads the
    records of the cadence history (here the whole ledger: ``C = max(4 weeks, L)`` and the
    benchmark's ``L`` is 91 days) from the store and sorts them, every cycle."""
    return _append_cycle(spec, Profile.SEED, cadence=False)


def case_store_append_resident(spec: LedgerSpec, options: dict[str, Any]) -> dict[str, Any]:
    """``store_append_nocadence`` in a resident process, as the live service's scheduler runs
    it: the same cycle is run once untimed in another fresh state directory first (imports,
    polars' thread pool and the page cache warm), then timed."""
    _append_cycle(spec, Profile.SEED, cadence=False)
    return _append_cycle(spec, Profile.SEED, cadence=False)


def case_store_append_evidence(spec: LedgerSpec, options: dict[str, Any]) -> dict[str, Any]:
    """``store_append`` under the evidence profile: the learned strength the previous cycle
    kept (same anchor) is reused, so the cycle still reads only what was committed since."""
    return _append_cycle(spec, Profile.EVIDENCE)


def case_persistence(spec: LedgerSpec, options: dict[str, Any]) -> dict[str, Any]:
    """The evidence profile's learned strength recomputed from the store (once per anchor)."""
    from benchmarks.cases import bench_policy
    from meta_supervisor.cycle.engine import store_persistence

    policy = bench_policy(spec, Profile.EVIDENCE)
    store_dir, _ = ensure_store(spec, policy)
    store = LedgerStore(store_dir)
    with tempfile.TemporaryDirectory(dir=DATA_DIR) as tmp:
        start = time.perf_counter()
        value, _ = store_persistence(
            store, store.manifest(), AS_OF, policy, Path(tmp) / "p.json", save=False
        )
        return {"seconds": time.perf_counter() - start, "note": f"strength {value.strength:.2f}"}


def case_store_setup(spec: LedgerSpec, options: dict[str, Any]) -> dict[str, Any]:
    """Not a measurement: build the cached store and snapshot (run once, in its own process,
    so that neither the parent's nor a measured child's peak memory includes the ingest)."""
    from benchmarks.cases import bench_policy

    start = time.perf_counter()
    for profile in (Profile.SEED, Profile.EVIDENCE):
        ensure_store(spec, bench_policy(spec, profile))
    ensure_store(spec, bench_policy(spec).model_copy(update={"cadence_history_hours": 0.0}))
    return {"seconds": time.perf_counter() - start}


STORE_CASES = {
    "store_setup": case_store_setup,
    "store_cycle": case_store_cycle,
    "store_append": case_store_append,
    "store_append_evidence": case_store_append_evidence,
    "store_append_nocadence": case_store_append_nocadence,
    "store_append_resident": case_store_append_resident,
    "persistence": case_persistence,
}
