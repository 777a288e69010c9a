"""Benchmark cases of the live cycle on the store, as `meta-supervisor allocate` runs it.

Both time :func:`meta_supervisor.cycle.run.run_cycle` itself (lock, history, decision files, engine
state and all) on an ingested store under
``bench-data/store-<key>-<policy>-s<version>-p<format>-m<manifest format>/``:

* ``store_cycle``: a cycle with no saved state, so the engine rebuilds its statistics from the
  store in time chunks (the full-cycle case, reading from the store included);
* ``store_append``: the cycle one hour later, after 10,000 records were appended as a new batch,
  from the state the previous cycle saved (the "cycle after appending 10k" case).

``persistence`` and ``persistence_rebuild`` time the evidence profile's learned strength
(:func:`meta_supervisor.cycle.learned.kept_persistence`) at ``AS_OF``: advanced from the day
sums a cycle kept the day before (cached next to the store), and rebuilt with none;
``persistence_select`` and ``persistence_select_rebuild`` the select profile's learned rule,
the same two ways.

Setup (untimed, cached): the base ledger is committed to the store, a cycle at ``AS_OF`` writes a
state directory that is kept as a snapshot, then the 10,000 records are committed as a second
batch. Each run copies the snapshot into a fresh state directory.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl

from benchmarks.data import AS_OF, DATA_DIR, LedgerSpec, appended_records, ensure_ledger
from meta_supervisor.config import Paths
from meta_supervisor.cycle.engine import describe
from meta_supervisor.cycle.learned import FORMAT as LEARNED_FORMAT
from meta_supervisor.cycle.run import run_cycle
from meta_supervisor.ingest.records import RECORD_SCHEMA, TELEMETRY_SCHEMA, empty_quarantine
from meta_supervisor.ingest.records import empty_telemetry as no_telemetry
from meta_supervisor.ledger.store import FORMAT as STORE_FORMAT
from meta_supervisor.ledger.store import MANIFEST, LedgerStore
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
    # the snapshot's saved state is valid for one policy, one engine state version and one
    # learned-strength file format only (another one is rebuilt, and an append case would
    # time a rebuild); the store is written in the current manifest format
    version = f"s{STATE_VERSION}-p{LEARNED_FORMAT}-m{STORE_FORMAT}"
    root = DATA_DIR / f"store-{spec.key()}-{policy.fingerprint()[:8]}-{version}"
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


class _PartTimer:
    """Seconds spent in a few parts of ``run_cycle`` that the engine does not time itself:
    the explanations built (``Decision.agents``; a cycle whose decision keeps its inputs builds
    none), the explanations or inputs file written, the history line appended (that file
    included) and the decision files written."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def wrap(self, owner: Any, name: str, part: str) -> None:
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[part] = self.seconds.get(part, 0.0) + time.perf_counter() - start

        setattr(owner, name, timed)

    def __enter__(self) -> _PartTimer:
        from meta_supervisor.allocate import decision
        from meta_supervisor.cycle import run
        from meta_supervisor.state import explanations

        self._agents = decision.Decision.agents
        getter = self._agents.fget
        assert getter is not None

        def agents(this: Any) -> Any:
            start = time.perf_counter()
            try:
                return getter(this)
            finally:
                spent = time.perf_counter() - start
                self.seconds["explain_build"] = self.seconds.get("explain_build", 0.0) + spent

        decision.Decision.agents = property(agents)  # type: ignore[method-assign,assignment]
        self._saved = [
            (run, "append_history", run.append_history),
            (explanations, "write", explanations.write),
            (explanations, "write_inputs", explanations.write_inputs),
            (run, "_write_current", run._write_current),
            (run, "_store_ledger", run._store_ledger),
        ]
        self.wrap(run, "append_history", "history")
        self.wrap(explanations, "write", "explain_file")
        self.wrap(explanations, "write_inputs", "inputs_file")
        self.wrap(run, "_write_current", "decision_files")
        self.wrap(run, "_store_ledger", "store_read")
        return self

    def __exit__(self, *exc: object) -> None:
        from meta_supervisor.allocate import decision

        decision.Decision.agents = self._agents  # type: ignore[method-assign]
        for owner, name, original in self._saved:
            setattr(owner, name, original)


def _timed_cycle(
    store: Path, state_dir: Path, as_of: Any, policy: Any, *, warm: bool = False
) -> dict[str, Any]:
    with _PartTimer() as parts:
        start, cpu = time.perf_counter(), time.process_time()
        decision, ledger = run_cycle(_paths(store, state_dir), as_of, policy)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    engine = describe(ledger.engine) if ledger.engine is not None else {}
    if warm and engine.get("mode") != "warm":
        raise SystemExit(
            f"the snapshot's engine state was not used ({engine.get('mode')}: "
            f"{engine.get('reason')}); remove {store.parent} to rebuild it"
        )
    return {
        "seconds": seconds,
        "cpu": cpu,
        **{f"engine_{k}": v for k, v in engine.get("seconds", {}).items()},
        **parts.seconds,
        "note": f"{engine.get('mode')} ({engine.get('loaded') or '-'}, state written "
        f"{engine.get('written') or '-'}), {engine.get('chunks')} chunk(s), "
        f"{len(decision.weights)} agents, gross {decision.gross:.1%}",
    }


def case_store_cycle(spec: LedgerSpec, options: dict[str, Any]) -> dict[str, Any]:
    """A cycle at AS_OF with no saved state: the engine rebuilds from the store in chunks."""
    from benchmarks.cases import bench_policy

    policy = bench_policy(spec)
    store, _ = ensure_store(spec, policy)
    with tempfile.TemporaryDirectory(dir=DATA_DIR) as tmp:
        return _timed_cycle(store, Path(tmp), AS_OF, policy)


def case_store_cycle_select(spec: LedgerSpec, options: dict[str, Any]) -> dict[str, Any]:
    """``store_cycle`` under the select profile (the default): the rebuild also lays every
    agent's loss tail (its latest 1,030 records at the horizon) for the broken cut."""
    from benchmarks.cases import bench_policy

    policy = bench_policy(spec, Profile.SELECT)
    store, _ = ensure_store(spec, policy)
    with tempfile.TemporaryDirectory(dir=DATA_DIR) as tmp:
        return _timed_cycle(store, Path(tmp), AS_OF, policy)


def _append_cycle(
    spec: LedgerSpec, profile: Profile, cadence: bool = True, resident: bool = False
) -> dict[str, Any]:
    """The cycle one hour after the snapshot's, after 10k records were appended, from the
    state the snapshot's cycle saved (copied into a fresh state directory). ``cadence=False``:
    the policy's ``cadence_history_hours = 0`` (no cadence index is read from the store).
    ``resident``: the saved state is first loaded into this process's memory
    (:func:`meta_supervisor.cycle.engine.preload`, untimed), as the process that saved it
    (the service's scheduler) holds it."""
    from datetime import timedelta

    from benchmarks.cases import bench_policy
    from meta_supervisor.cycle.engine import preload

    policy = bench_policy(spec, profile)
    if not cadence:
        policy = policy.model_copy(update={"cadence_history_hours": 0.0})
    store, snapshot = ensure_store(spec, policy)
    with tempfile.TemporaryDirectory(dir=DATA_DIR) as tmp:
        state_dir = Path(tmp) / "state"
        shutil.copytree(snapshot, state_dir)
        if resident:
            reason = preload(_paths(store, state_dir).engine, LedgerStore(store), policy)
            if reason:
                raise SystemExit(f"the snapshot's engine state cannot be kept: {reason}")
        out = _timed_cycle(store, state_dir, AS_OF + timedelta(hours=1), policy, warm=True)
        if resident and "(memory" not in out["note"]:
            raise SystemExit(f"the resident cycle did not use the kept engine: {out['note']}")
        return out


def case_store_append(spec: LedgerSpec, options: dict[str, Any]) -> dict[str, Any]:
    """The cycle one hour later, after 10k records were appended, from the saved state."""
    return _append_cycle(spec, Profile.SEED)


def case_store_append_nocadence(spec: LedgerSpec, options: dict[str, Any]) -> dict[str, Any]:
    """``store_append`` with cadence off (``cadence_history_hours = 0``): no expected-records
    gate and no cadence history (the seed profile reads no cadence index; ``select``, which
    does, refuses cadence off)."""
    return _append_cycle(spec, Profile.SEED, cadence=False)


def case_store_append_resident(spec: LedgerSpec, options: dict[str, Any]) -> dict[str, Any]:
    """``store_append_nocadence`` in a resident process, as the live service's scheduler runs
    it: the same cycle is run once untimed in another fresh state directory first (imports,
    polars' thread pool and the page cache warm), then the snapshot's state is kept in memory
    as the cycle that saved it leaves it, and the next cycle is timed."""
    _append_cycle(spec, Profile.SEED, cadence=False)
    return _append_cycle(spec, Profile.SEED, cadence=False, resident=True)


def case_store_append_select(spec: LedgerSpec, options: dict[str, Any]) -> dict[str, Any]:
    """``store_append`` under the select profile (the default): its broken-agent cut reads each
    agent's recent records of the cadence history every cycle."""
    return _append_cycle(spec, Profile.SELECT)


def case_store_append_select_resident(spec: LedgerSpec, options: dict[str, Any]) -> dict[str, Any]:
    """``store_append_select`` in a resident process (as ``store_append_resident``): what the
    live service's scheduler pays each cycle under the default profile."""
    _append_cycle(spec, Profile.SELECT)
    return _append_cycle(spec, Profile.SELECT, resident=True)


#: Cycles timed by the live cases, each after 10k records were appended.
LIVE_CYCLES = 5


def _linked_copy(store_dir: Path, target: Path) -> None:
    """A copy of the store at ``target`` whose segment files are hard links to the cached
    store's (a segment is never changed once written: a batch writes new files and replaces
    the manifest), with its manifest copied and without its lock file."""
    shutil.copytree(
        store_dir, target, copy_function=os.link, ignore=shutil.ignore_patterns(".lock", MANIFEST)
    )
    shutil.copy2(store_dir / MANIFEST, target / MANIFEST)


def _live_cycles(
    spec: LedgerSpec, profile: Profile, cadence: bool = True, default_windows: bool = False
) -> dict[str, Any]:
    """The live service's loop in one process: the store's cycle an hour after ``AS_OF``
    rebuilds the state (the service's start, untimed), then ``LIVE_CYCLES`` hourly cycles
    each run after 10,000 records were appended as a new batch (the append untimed), each
    from the state the cycle before left in memory. On a copy of the cached store (its
    segments hard-linked). ``seconds``: the median of the timed cycles; ``first`` and
    ``worst`` the first one's and the slowest one's.

    The benchmark's windows hold the whole ledger and a day more (:func:`bench_policy`): no
    record leaves them in these hours. ``default_windows``: the policy's own (a 7-day stats
    window, 30 days for the confidence and the tails), which records leave every hour."""
    from datetime import timedelta

    from benchmarks.cases import bench_policy
    from meta_supervisor.policy.model import Policy

    policy = bench_policy(spec, profile)
    cached, _ = ensure_store(spec, policy)  # the ledger is the same for every policy
    if default_windows:
        policy = Policy(profile=profile)
    if not cadence:
        policy = policy.model_copy(update={"cadence_history_hours": 0.0})
    with tempfile.TemporaryDirectory(dir=DATA_DIR) as tmp:
        store_dir, state_dir = Path(tmp) / "ledger", Path(tmp) / "state"
        _linked_copy(cached, store_dir)
        store = LedgerStore(store_dir)
        run_cycle(_paths(store_dir, state_dir), AS_OF + timedelta(hours=1), policy)
        timed = []
        for hour in range(1, LIVE_CYCLES + 1):
            after = AS_OF + timedelta(hours=hour)
            batch = appended_records(spec, APPEND_N, after, 1.0, batch=hour)
            with store.writer():
                store.append(_full(batch, RECORD_SCHEMA), no_telemetry(), empty_quarantine())
            out = _timed_cycle(store_dir, state_dir, after + timedelta(hours=1), policy, warm=True)
            if "(memory" not in out["note"]:
                raise SystemExit(f"a live cycle did not use the state kept in memory: {out}")
            timed.append(out)
    seconds = [out["seconds"] for out in timed]
    parts = {
        key: statistics.median(out.get(key, 0.0) for out in timed)
        for key, value in timed[0].items()
        if isinstance(value, float) and key != "seconds"
    }
    return {
        "seconds": statistics.median(seconds),
        "first": seconds[0],
        "worst": max(seconds),
        **parts,
        "note": f"median of {LIVE_CYCLES} hourly cycles, each after +{APPEND_N:,}; "
        f"the last: {timed[-1]['note']}",
    }


def case_store_live(spec: LedgerSpec, options: dict[str, Any]) -> dict[str, Any]:
    """``store_append_resident``'s cycle as the live service runs it hour after hour
    (:func:`_live_cycles`, cadence off): each from the state the one before left in memory,
    not from a state loaded for it."""
    return _live_cycles(spec, Profile.SEED, cadence=False)


def case_store_live_select(spec: LedgerSpec, options: dict[str, Any]) -> dict[str, Any]:
    """The same under the select profile (the default; ``store_append_select_resident``)."""
    return _live_cycles(spec, Profile.SELECT)


def case_store_live_default(spec: LedgerSpec, options: dict[str, Any]) -> dict[str, Any]:
    """``store_live_select`` with the policy's default windows (:func:`_live_cycles`): each
    hour, records leave the stats window, and the agents that lost some are computed again
    from their window's records."""
    return _live_cycles(spec, Profile.SELECT, default_windows=True)


def case_store_append_evidence(spec: LedgerSpec, options: dict[str, Any]) -> dict[str, Any]:
    """``store_append`` under the evidence profile: the learned strength the previous cycle
    kept (same anchor) is reused, so the cycle still reads only what was committed since."""
    return _append_cycle(spec, Profile.EVIDENCE)


def _previous_day_state(spec: LedgerSpec, profile: Profile) -> tuple[LedgerStore, Any, Path]:
    """The profile's store, its policy, and the learned state (day sums and value) kept by a
    cycle the day before AS_OF (built once, cached next to the store, named after it)."""
    from datetime import timedelta

    from benchmarks.cases import bench_policy
    from meta_supervisor.cycle.learned import kept_persistence

    policy = bench_policy(spec, profile)
    store_dir, _ = ensure_store(spec, policy)
    store = LedgerStore(store_dir)
    kept = store_dir.parent / f"{store_dir.name}.persistence-day-before.state"
    if not kept.exists():
        kept_persistence(store, store.manifest(), AS_OF - timedelta(days=1), policy, kept)
    return store, policy, kept


def _learned_daily(spec: LedgerSpec, profile: Profile) -> tuple[Any, float, float]:
    """``kept_persistence`` at AS_OF from the day sums a cycle kept the day before (copied
    into a fresh state dir): one new day read, then saved (once a day); and a cycle an hour
    later, which keeps the value. The run and both times."""
    from datetime import timedelta

    from meta_supervisor.cycle.learned import kept_persistence

    store, policy, kept = _previous_day_state(spec, profile)
    with tempfile.TemporaryDirectory(dir=DATA_DIR) as tmp:
        path = Path(tmp) / "persistence.state"
        shutil.copy(kept, path)
        manifest = store.manifest()  # a cycle has read it already
        start = time.perf_counter()
        run = kept_persistence(store, manifest, AS_OF, policy, path)
        seconds = time.perf_counter() - start
        assert run.mode == "advanced", run.reason
        # the cycles later that day: the kept value, after reading the file's header line
        start = time.perf_counter()
        same_day = kept_persistence(store, manifest, AS_OF + timedelta(hours=1), policy, path)
        kept_seconds = time.perf_counter() - start
        assert same_day.mode == "kept", same_day.reason
    return run, seconds, kept_seconds


def _learned_from_scratch(spec: LedgerSpec, profile: Profile) -> tuple[Any, float]:
    """``kept_persistence`` at AS_OF with no kept state (a fresh state dir), and its seconds."""
    from benchmarks.cases import bench_policy
    from meta_supervisor.cycle.learned import kept_persistence

    policy = bench_policy(spec, profile)
    store_dir, _ = ensure_store(spec, policy)
    store = LedgerStore(store_dir)
    manifest = store.manifest()  # a cycle has read it already
    with tempfile.TemporaryDirectory(dir=DATA_DIR) as tmp:
        start = time.perf_counter()
        run = kept_persistence(store, manifest, AS_OF, policy, Path(tmp) / "persistence.state")
        seconds = time.perf_counter() - start
    assert run.mode == "rebuilt", run.mode
    return run, seconds


def _rule(run: Any) -> str:
    """The learned rule and the lags it was tested over, for a note."""
    selection = run.value.selection
    if selection is None:
        return "no rule"
    return f"rule {selection.rule} over {selection.n_lags} lags"


def case_persistence(spec: LedgerSpec, options: dict[str, Any]) -> dict[str, Any]:
    """The evidence profile's learned strength at AS_OF, daily (:func:`_learned_daily`);
    ``same_day``: the cycles later that day."""
    run, seconds, kept_seconds = _learned_daily(spec, Profile.EVIDENCE)
    return {
        "seconds": seconds,
        "same_day": kept_seconds,
        "note": f"strength {run.value.strength:.2f}, {run.mode}",
    }


def case_persistence_rebuild(spec: LedgerSpec, options: dict[str, Any]) -> dict[str, Any]:
    """The same with no kept state: every day of the range rebuilt from the store, saved."""
    run, seconds = _learned_from_scratch(spec, Profile.EVIDENCE)
    return {
        "seconds": seconds,
        "note": f"strength {run.value.strength:.2f}, {run.buckets} days rebuilt",
    }


def case_persistence_select(spec: LedgerSpec, options: dict[str, Any]) -> dict[str, Any]:
    """The select profile's learned rule at AS_OF, daily (:func:`_learned_daily`: the day sums
    kept the day before, one new day read), what a cycle pays once per selection anchor;
    ``same_day``: the cycles later that day."""
    run, seconds, kept_seconds = _learned_daily(spec, Profile.SELECT)
    return {"seconds": seconds, "same_day": kept_seconds, "note": f"{_rule(run)}, {run.mode}"}


def case_persistence_select_rebuild(spec: LedgerSpec, options: dict[str, Any]) -> dict[str, Any]:
    """The same with no kept state: every day of the selection history rebuilt, saved."""
    run, seconds = _learned_from_scratch(spec, Profile.SELECT)
    return {"seconds": seconds, "note": f"{_rule(run)}, {run.buckets} days rebuilt"}


def case_store_setup(spec: LedgerSpec, options: dict[str, Any]) -> dict[str, Any]:
    """Not a measurement: build the cached store and snapshot (run once, in its own process,
    so that neither the parent's nor a measured child's peak memory includes the ingest)."""
    from benchmarks.cases import bench_policy

    start = time.perf_counter()
    for profile in (Profile.SEED, Profile.SELECT, Profile.EVIDENCE):
        ensure_store(spec, bench_policy(spec, profile))
    ensure_store(spec, bench_policy(spec).model_copy(update={"cadence_history_hours": 0.0}))
    for profile in (Profile.EVIDENCE, Profile.SELECT):
        _previous_day_state(spec, profile)
    return {"seconds": time.perf_counter() - start}


STORE_CASES = {
    "store_setup": case_store_setup,
    "store_cycle": case_store_cycle,
    "store_append": case_store_append,
    "store_append_select": case_store_append_select,
    "store_append_select_resident": case_store_append_select_resident,
    "store_cycle_select": case_store_cycle_select,
    "store_append_evidence": case_store_append_evidence,
    "store_append_nocadence": case_store_append_nocadence,
    "store_append_resident": case_store_append_resident,
    "store_live": case_store_live,
    "store_live_select": case_store_live_select,
    "store_live_default": case_store_live_default,
    "persistence": case_persistence,
    "persistence_rebuild": case_persistence_rebuild,
    "persistence_select": case_persistence_select,
    "persistence_select_rebuild": case_persistence_select_rebuild,
}
