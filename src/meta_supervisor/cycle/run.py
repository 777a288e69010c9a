"""One supervisor cycle: ledger -> stats, confidence, tails -> allocate -> state.

:func:`decide` is pure (frames and ``as_of`` in, decision out): the backtest and the live cycle
both call it. :func:`run_cycle` adds the edges: reading files, the clock, the lock and the
state writes.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from meta_supervisor.allocate.core import allocate_frames
from meta_supervisor.allocate.decision import Decision, canonical_json, iso, parse_iso
from meta_supervisor.allocate.inputs import Confidence, Override, Tail
from meta_supervisor.allocate.profiles import method_for
from meta_supervisor.config import Paths
from meta_supervisor.cycle.engine import EngineRun, Frames, advanced_frames
from meta_supervisor.cycle.learned import LearnedRun, kept_persistence, save_learned
from meta_supervisor.errors import BadInput, ProblemFound
from meta_supervisor.ingest.batch import dedupe_batch
from meta_supervisor.ingest.records import empty_quarantine, empty_records, empty_telemetry
from meta_supervisor.ingest.sources import read_records, read_telemetry
from meta_supervisor.ledger.store import LedgerError, LedgerStore, Manifest
from meta_supervisor.policy.model import Policy, load_policy
from meta_supervisor.signals import threads
from meta_supervisor.signals.cadence import CadenceIndex, cadence_hours, with_expected_records
from meta_supervisor.signals.incremental import frames_at
from meta_supervisor.signals.persistence import Persistence, history_hours
from meta_supervisor.signals.persistence import persistence as learned_strength
from meta_supervisor.state import explanations
from meta_supervisor.state import overrides as overrides_file
from meta_supervisor.state.files import (
    HistoryEntry,
    HistoryError,
    StateLock,
    append_history,
    atomic_write_text,
    check_current,
    check_tail,
    fault_point,
    history_tail,
    read_history,
    remove_stale_temps,
)
from meta_supervisor.units import (
    EARLIEST_INSTANT,
    LATEST_INSTANT,
    epoch_us,
    from_epoch_us,
    instant,
)

__all__ = [
    "FUTURE_TOLERANCE",
    "FutureAsOf",
    "Ledger",
    "NoInputs",
    "NothingToSupersede",
    "OutOfOrder",
    "StateIOError",
    "commit",
    "cycle_frames",
    "cycle_inputs",
    "decide",
    "expected_records",
    "frames_to_inputs",
    "load_ledger",
    "load_overrides",
    "load_previous",
    "run_cycle",
    "supersede_latest",
    "superseded_seqs",
    "window_hours",
]


class OutOfOrder(BadInput):
    """A cycle was asked to record an instant earlier than the latest recorded decision."""


@dataclass
class Ledger:
    """Validated, de-duplicated records and telemetry, plus what was refused."""

    records: pl.DataFrame
    telemetry: pl.DataFrame
    """On a store, the stats window's runs (``ts``, ``agent``, ``is_error``) once the engine
    computed the cycle's statistics, and none for a cycle that returned a recorded decision
    without computing (a late duplicate)."""
    quarantine: pl.DataFrame = field(default_factory=empty_quarantine)
    read: int = 0
    duplicates: int = 0
    engine: EngineRun | None = None
    """Set when the cycle's statistics came from the store's incremental state (``records``
    is then empty: the window was not read; see :mod:`meta_supervisor.cycle.engine`)."""
    latest: datetime | None = None
    """The newest visible record's ``matured_at`` when ``records`` was not read."""

    @property
    def refused(self) -> int:
        """Rows or lines refused (each listed in ``quarantine``)."""
        return self.quarantine.height

    def newest(self) -> datetime | None:
        """The newest record's ``matured_at`` (``None``: no record at all)."""
        if self.records.height:
            return self.records["matured_at"].max()  # type: ignore[return-value]
        return self.latest


def load_ledger(
    paths: Paths, as_of: datetime | None = None, lookback_hours: float | None = None
) -> Ledger:
    """Records and telemetry, de-duplicated: from the store when one exists, else the files.

    With an ingested store at ``paths.ledger`` only the window ``(as_of − lookback_hours,
    as_of]`` is read (plus each stale agent's latest record, see
    :meth:`meta_supervisor.ledger.store.LedgerStore.records`); its quarantine is the store's.
    Without
    a store (or with ``paths.ledger = None``) the raw files ``paths.records``/``paths.telemetry``
    are read whole, as the seed did.
    """
    store = LedgerStore(paths.ledger) if paths.ledger is not None else None
    if store is not None and store.exists():
        snapshot = store.manifest()
        store.check(snapshot)
        return Ledger(
            records=store.records(as_of, lookback_hours, snapshot),
            telemetry=store.telemetry(as_of, lookback_hours, snapshot),
            quarantine=store.quarantine(snapshot),
        )
    rec = read_records(paths.records)
    tel = read_telemetry(paths.telemetry)
    # A conflicting duplicate (same record_id, other content) is reported here as at ingest,
    # never resolved silently; the first row is kept on both paths.
    records, duplicates, conflicts = dedupe_batch(
        rec.records.with_columns(pl.lit(str(paths.records)).alias("_source"))
    )
    records = records.drop("_source")
    telemetry = tel.records.unique(maintain_order=True)
    return Ledger(
        records=records,
        telemetry=telemetry,
        quarantine=pl.concat([rec.quarantine, tel.quarantine, conflicts]),
        read=rec.read + tel.read,
        duplicates=duplicates + (tel.records.height - telemetry.height),
    )


def window_hours(policy: Policy) -> float:
    """The longest lookback any cycle input uses: what :func:`load_ledger` must read (the
    learned value, the select profile's rule or the evidence profile's strength, reads
    ``(J + 1)·H + L``, see
    :func:`meta_supervisor.signals.persistence.history_hours`)."""
    return max(
        policy.lookback_hours,
        policy.cvar_lookback_hours,
        policy.confidence_lookback_hours,
        history_hours(policy),
    )


def cycle_frames(
    ledger: Ledger, as_of: datetime, policy: Policy
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Stats per agent (with their ``expected_records``, :func:`expected_records`),
    confidence per agent and tails per strategy as of ``as_of``, as frames.

    Computed by the incremental engine built once over the records
    (:func:`~meta_supervisor.signals.incremental.frames_at`: time chunks, bounded memory), so a
    cycle on raw files decides the bits a cycle on the ingested store decides. The plain
    polars forms (``agent_stats``, ``confidence_multipliers``, ``strategy_tails``) define the
    same numbers and are the reference the engine is tested against."""
    stats, conf, tails = frames_at(ledger.records, ledger.telemetry, as_of, policy)
    return expected_records(stats, ledger, as_of, policy), conf, tails


def frames_to_inputs(
    stats: pl.DataFrame, conf: pl.DataFrame, tails: pl.DataFrame, policy: Policy
) -> tuple[dict[str, dict[str, Any]], dict[str, Confidence], dict[str, Tail]]:
    """The :func:`cycle_frames` frames as the dicts :func:`~meta_supervisor.allocate.core.allocate`
    takes (one row dict per agent, a :class:`Confidence` per agent, a :class:`Tail` per
    strategy)."""
    agent_rows = {row["agent"]: row for row in stats.iter_rows(named=True)}
    confidence = Confidence.by_agent(conf)
    tail_map = {
        row["strategy"]: Tail.from_row(row, policy.cvar_lookback_hours)
        for row in tails.iter_rows(named=True)
    }
    return agent_rows, confidence, tail_map


def cycle_inputs(
    ledger: Ledger, as_of: datetime, policy: Policy
) -> tuple[dict[str, dict[str, Any]], dict[str, Confidence], dict[str, Tail]]:
    """Stats dicts per agent, confidence per agent and tails per strategy, as of ``as_of``."""
    return frames_to_inputs(*cycle_frames(ledger, as_of, policy), policy)


def decide(
    ledger: Ledger,
    as_of: datetime,
    policy: Policy,
    previous: dict[str, float] | None = None,
    overrides: list[Override] | tuple[Override, ...] = (),
    previous_hash: str | None = None,
    *,
    frames: tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame] | None = None,
    persistence: Persistence | None = None,
    cadence: CadenceIndex | None = None,
) -> Decision:
    """The pure cycle: ledger as of ``as_of`` -> decision (nothing after ``as_of`` is seen).

    The frames go to :func:`~meta_supervisor.allocate.core.allocate_frames` as columns: the same
    decision, byte for byte, as :func:`~meta_supervisor.allocate.core.allocate` on
    :func:`cycle_inputs`'s dicts, without a dict per agent.

    ``frames`` are the ``(stats, confidence, tails)`` of :func:`cycle_frames` for this
    ``as_of`` when the caller already has them (from
    :class:`~meta_supervisor.signals.incremental.IncrementalStats`, which maintains the same frames
    across cycles); ``ledger`` is then not read, except by the learned value (the select
    profile's rule, the evidence profile's tilt strength):
    :func:`~meta_supervisor.signals.persistence.persistence` of ``ledger.records`` as of
    ``as_of``, unless ``persistence`` is given (or nothing is learned:
    :func:`~meta_supervisor.signals.persistence.history_hours` is 0).

    ``cadence`` indexes every agent's records for the min_records gate's own-cadence test
    (:mod:`meta_supervisor.signals.cadence`); without it the index is built from
    ``ledger.records`` when they are there (the store path passes one built from the store).
    """
    stats, confidence, tails = frames or cycle_frames(ledger, as_of, policy)
    stats = expected_records(stats, ledger, as_of, policy, cadence)
    if persistence is None and history_hours(policy) > 0:
        persistence = learned_strength(ledger.records, as_of, policy)
    return allocate_frames(
        stats,
        confidence,
        tails,
        as_of=as_of,
        policy=policy,
        previous=previous,
        overrides=overrides,
        previous_hash=previous_hash,
        persistence=persistence,
    )


def expected_records(
    stats: pl.DataFrame,
    ledger: Ledger,
    as_of: datetime,
    policy: Policy,
    cadence: CadenceIndex | None = None,
) -> pl.DataFrame:
    """``stats`` with each agent's ``expected_records`` (its own cadence) when cadence is on
    and an index is given or ``ledger.records`` can build one; unchanged otherwise. Its
    ``recent_loss_z`` only under a profile that reads it (computing it costs a robust scale
    per agent per cycle, and an explanation shows only inputs its profile reads).

    Frames from the engine already hold ``expected_records`` (from the counts it keeps), and
    under select ``recent_loss_z`` (from the loss tails it keeps,
    :func:`meta_supervisor.cycle.engine.keeps_loss_tails`): then the cadence index is built
    only for a profile that reads ``recent_loss_z`` when the engine did not give it."""
    reads = "recent_loss_z" in method_for(policy.profile).keys
    if cadence_hours(policy) <= 0 or ("expected_records" in stats.columns and not reads):
        return stats
    if "recent_loss_z" in stats.columns:  # the engine keeps the loss tails: all is there
        return stats
    if "expected_records" in stats.columns:
        stats = stats.drop("expected_records")  # the index gives the same numbers
    if cadence is None:
        if not ledger.records.height:
            return stats
        # only the cadence history (as_of − C, as_of] is read: index that part alone
        since = as_of - timedelta(hours=cadence_hours(policy))
        recent = ledger.records.filter(
            (pl.col("matured_at") > instant(since)) & (pl.col("matured_at") <= instant(as_of))
        )
        cadence = CadenceIndex.from_records(recent, policy.horizon_hours)
    return with_expected_records(stats, cadence, as_of, policy, loss_z=reads)


def load_overrides(paths: Paths) -> list[Override]:
    """Operator overrides from ``overrides.json`` (see :mod:`meta_supervisor.state.overrides`)."""
    return overrides_file.load_overrides(paths.overrides)


def _base_entry(entries: list[HistoryEntry], as_of_text: str | None) -> HistoryEntry | None:
    """The entry a cycle at ``as_of`` smooths against: the last one decided *before* ``as_of``
    (not superseded).

    Re-running the latest cycle (same ``as_of``, e.g. after a crash) must decide against what
    that cycle saw, not against its own output, so entries for ``as_of`` are skipped; a look
    back (``--dry-run`` at an earlier instant) must not smooth against decisions made after
    it, so those are skipped too.
    """
    superseded = superseded_seqs(entries)
    cutoff = parse_iso(as_of_text) if as_of_text is not None else None
    for entry in reversed(entries):
        if entry.seq in superseded:
            continue
        if cutoff is not None and parse_iso(entry.record["as_of"]) >= cutoff:
            continue
        return entry
    return None


def superseded_seqs(entries: list[HistoryEntry]) -> set[int]:
    """Sequence numbers of the entries that a later entry in ``entries`` supersedes
    (see :func:`supersede_latest`)."""
    return {
        int(e.record["provenance"]["supersedes"]["seq"])
        for e in entries
        if isinstance((e.record.get("provenance") or {}).get("supersedes"), dict)
    }


class NothingToSupersede(BadInput):
    """``supersede`` found no decision to supersede, or none to restore."""


def supersede_latest(
    paths: Paths, reason: str, by: str, now: datetime, *, lock_timeout_s: float = 0.0
) -> tuple[Decision, HistoryEntry]:
    """Supersede a wrong latest decision (e.g. an ``--as-of`` typo far in the future, which
    would block every earlier instant), in the open: nothing is deleted or rewritten.

    Appends to the chain a copy of the decision before it (the last one not superseded) whose
    provenance records ``supersedes``: the wrong entry's ``seq``, ``as_of`` and ``hash``, the
    ``reason``, who (``by``) and when (``at``). The copy's ``as_of`` is the restored one's, so
    cycles after it are allowed again, and they smooth against the restored weights. Returns the
    new decision and the superseded entry. Checks the state as a cycle does first.
    """
    if not reason.strip():
        raise NothingToSupersede("--reason: say why the decision is superseded (it is recorded)")
    with StateLock(paths.lock, lock_timeout_s):
        remove_stale_temps(paths.state_dir)
        entries = read_history(paths.history)
        _check_base(paths, entries[-2:])
        explanations.remove_uncommitted(paths.state_dir, entries[-1].seq if entries else 0)
        if not entries:
            raise NothingToSupersede(f"{paths.history}: no decision to supersede")
        wrong = entries[-1]
        superseded = superseded_seqs(entries) | {wrong.seq}
        if (wrong.record.get("provenance") or {}).get("supersedes"):
            raise NothingToSupersede(
                f"{paths.history}: the latest entry ({wrong.seq}) already supersedes entry "
                f"{wrong.record['provenance']['supersedes']['seq']}; run a cycle first"
            )
        restored = next((e for e in reversed(entries[:-1]) if e.seq not in superseded), None)
        if restored is None:
            raise NothingToSupersede(
                f"{paths.history}: entry {wrong.seq} (as_of {wrong.record.get('as_of')}) is the "
                "only decision, there is none to restore; start a new state directory instead"
            )
        provenance = {
            **(restored.record.get("provenance") or {}),
            "supersedes": {
                "seq": wrong.seq,
                "as_of": wrong.record.get("as_of"),
                "hash": wrong.hash,
                "reason": reason.strip(),
                "by": by,
                "at": iso(now),
                "restores_seq": restored.seq,
            },
        }
        # the copy names the restored entry's explanations file: they are kept once
        copy = {**restored.record, "provenance": provenance}
        entry = append_history(paths.history, copy, entries)
        _write_current(paths, entry.record)
    return _as_decision(entry), wrong


def load_previous(
    paths: Paths, as_of: datetime | None = None
) -> tuple[dict[str, float] | None, str | None]:
    """The weights and chain hash a cycle at ``as_of`` smooths against, from the history.

    That is the last committed decision, skipping trailing ones made for ``as_of`` itself.
    """
    entries = _entries_around(paths, as_of) if as_of else history_tail(paths.history)
    base = _base_entry(entries, iso(as_of) if as_of else None)
    if base is None:
        return None, None
    return {k: float(v) for k, v in base.record.get("weights", {}).items()}, base.hash


def _entries_around(paths: Paths, as_of: datetime) -> list[HistoryEntry]:
    """The newest history entries back to the first one before ``as_of`` (included).

    The history is in time order (see :class:`OutOfOrder`), so these hold every entry a cycle
    at ``as_of`` consults: the latest, those for ``as_of`` itself, and the base before them.
    """
    return history_tail(paths.history, lambda e: parse_iso(e.record["as_of"]) < as_of)


def _same_cycle(recorded: dict[str, Any], decision: Decision) -> bool:
    """True when ``recorded`` was decided for the same instant, policy, inputs and base."""
    keys = ("policy_fingerprint", "inputs_fingerprint", "previous_decision_hash")
    prov = recorded.get("provenance") or {}
    return recorded.get("as_of") == decision.as_of and all(
        prov.get(key) == decision.provenance.get(key) for key in keys
    )


#: Relative difference below which two recomputations of one number are the same number. A
#: rebuilt engine state now gives the incremental path's bits (exact sums, issue #13); the
#: tolerance remains for cycles recorded by an earlier version (engine state version < 4,
#: whose sums were order-dependent, ~1e-12 relative) and re-run by this one.
REASSOCIATION_TOLERANCE = 1e-9


def _close(a: Any, b: Any) -> bool:
    """``a == b``, numbers within :data:`REASSOCIATION_TOLERANCE`, recursively."""
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=REASSOCIATION_TOLERANCE, abs_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _same_cycle_recomputed(entry: HistoryEntry, decision: Decision) -> bool:
    """True when ``decision`` is ``entry``'s recomputed: same instant, policy and base, the
    same weights, and every other number equal up to float reassociation (a cycle recorded by
    an earlier version, whose sums depended on their order, re-run by this one; a rebuilt
    state of this version gives the same bits). Re-running the latest cycle must not record
    it twice. The explanations (the entry's file,
    the decision's build) are compared only once the instant, policy, base and weights match."""
    record = entry.record
    if record.get("as_of") != decision.as_of or record.get("cash") != decision.cash:
        return False
    keys = ("as_of", "policy_fingerprint", "previous_decision_hash")
    old_prov = dict(record.get("provenance") or {})
    if any(old_prov.get(k) != decision.provenance.get(k) for k in keys):
        return False
    new = decision.to_dict()
    if record.get("weights") != new["weights"]:
        return False
    recorded = entry.decision
    new_prov = dict(new.get("provenance") or {})
    old_prov.pop("inputs_fingerprint", None)
    new_prov.pop("inputs_fingerprint", None)
    return _close({**recorded, "provenance": old_prov}, {**new, "provenance": new_prov})


def _write_current(paths: Paths, record: dict[str, Any]) -> None:
    """Make ``decision.json`` show the decision's record (the history entry's ``decision``: its
    explanations named by file, :mod:`meta_supervisor.state.explanations`) and
    ``allocation.json`` its weights (only files that differ)."""
    for path, text in (
        (paths.decision, canonical_json(record, indent=2)),
        (paths.allocation, canonical_json(record.get("weights", {}), indent=2)),
    ):
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != text:  # the history (durable) repairs a rename a power loss undid
            atomic_write_text(path, text, durable=False)


def _check_base(paths: Paths, entries: list[HistoryEntry]) -> None:
    """Refuse to build on state that does not verify: the history entries the cycle reads
    (hashes and links) and ``decision.json`` against the history's end. A cycle would otherwise
    smooth against an edited entry, or rewrite the current files over the evidence that the
    history was cut or a file edited (``verify`` would then pass)."""
    check_tail(paths.history, entries)
    ok, problem = check_current(paths.history, paths.decision)
    if not ok:
        raise HistoryError(f"{paths.state_dir}: {problem}; the cycle records nothing")


def _commit_locked(
    decision: Decision, paths: Paths, entries: list[HistoryEntry] | None = None
) -> tuple[Decision, str]:
    """Commit under the lock; ``entries`` ends with the newest entry when the caller has read
    the history's tail under the same lock (it is read here otherwise)."""
    entries = history_tail(paths.history) if entries is None else entries
    if entries and (
        _same_cycle(entries[-1].record, decision) or _same_cycle_recomputed(entries[-1], decision)
    ):
        # Already recorded (a re-run, or a restart after a kill before the current files were
        # written): record nothing twice, just make the current files show the record.
        _write_current(paths, entries[-1].record)
        return _as_decision(entries[-1]), entries[-1].hash
    entry = append_history(paths.history, decision, entries)
    fault_point("after_history_append")
    _write_current(paths, entry.record)
    return decision, entry.hash


def _as_decision(entry: HistoryEntry) -> Decision:
    """The :class:`Decision` of a committed entry; its explanations are read from the entry's
    file only if someone reads them."""
    record = entry.record
    if "agents" in record:
        return Decision.from_dict(record)
    known = {k: record[k] for k in Decision.FIELDS if k in record and k != "agents"}
    return Decision(**known, agents=lambda: entry.decision["agents"])


def commit(decision: Decision, paths: Paths, *, lock_timeout_s: float = 0.0) -> str:
    """Record ``decision`` under the state lock: history first (the commit point), then the
    current files. Idempotent: if the last entry is this decision's cycle (same as_of, policy,
    inputs and previous decision), nothing is appended and the current files are restored.

    Returns the history entry's hash. Raises :class:`~meta_supervisor.state.files.LockBusy`.
    """
    with StateLock(paths.lock, lock_timeout_s):
        remove_stale_temps(paths.state_dir)
        entries = history_tail(paths.history)
        _check_base(paths, entries)
        explanations.remove_uncommitted(paths.state_dir, entries[-1].seq if entries else 0)
        return _commit_locked(decision, paths, entries)[1]


#: The telemetry columns a cycle on the store reads (the error rate is all the engine reads).
_RUN_COLUMNS = ["ts", "agent", "is_error"]
_NO_RUNS = empty_telemetry().select(_RUN_COLUMNS)


def _store_ledger(paths: Paths) -> tuple[Ledger, Manifest] | None:
    """The store's snapshot for a cycle that takes its statistics from the engine: the
    quarantine (records are not read; the telemetry is read beside the engine's advance,
    :func:`_engine_frames`); ``None`` without a store."""
    store = LedgerStore(paths.ledger) if paths.ledger is not None else None
    if store is None or not store.exists():
        return None
    manifest = store.manifest()
    store.check(manifest)
    return Ledger(empty_records(), _NO_RUNS, store.quarantine(manifest)), manifest


def _store_runs(paths: Paths, manifest: Manifest, as_of: datetime, policy: Policy) -> pl.DataFrame:
    """The store's telemetry runs of the stats window (:data:`_RUN_COLUMNS`)."""
    store = LedgerStore(paths.ledger or "")
    return store.telemetry(as_of, policy.lookback_hours, manifest, _RUN_COLUMNS)


def _engine_frames(
    paths: Paths, ledger: Ledger, manifest: Manifest, as_of: datetime, policy: Policy, save: bool
) -> tuple[tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame], Persistence | None, Callable[[], None]]:
    """The cycle's frames from :func:`meta_supervisor.cycle.engine.advanced_frames` and, for
    the select and evidence profiles, the learned value (the rule, the tilt strength;
    :func:`meta_supervisor.cycle.learned.kept_persistence`, kept until the next anchor), with
    ``write()``, which saves the engine's state then the learned value (a recording cycle;
    nothing for a dry run): the caller calls it once, before it commits. Fills in
    ``ledger.engine`` and ``ledger.latest``."""
    store = LedgerStore(paths.ledger or "")
    # the stats window's telemetry is read on the pool while the engine advances (the frames
    # are the first to read it), and is the ledger's once read
    reading = threads.start(lambda: _store_runs(paths, manifest, as_of, policy))

    def engine() -> tuple[Frames, EngineRun, Callable[[], None]]:
        return advanced_frames(
            store,
            manifest,
            as_of,
            policy,
            paths.engine,
            lambda: threads.finished(reading),
            save=save,
        )

    learned = None
    try:
        if not history_hours(policy):
            frames, ledger.engine, write = engine()
        else:
            # the learned value reads its own range of the store (by day): it is obtained
            # beside the engine's advance, on the pool (it never waits for the pool), and
            # saved after the engine's state once both succeeded (an engine that fails leaves
            # it unsaved)
            def learn() -> LearnedRun:
                return kept_persistence(
                    store, manifest, as_of, policy, paths.persistence, save=False
                )

            (frames, engine_run, save_engine), run = threads.beside(engine, learn)

            def write() -> None:
                save_engine()
                if save:
                    save_learned(run, store, manifest, as_of, policy, paths.persistence)

            learned, engine_run.learned, ledger.engine = run.value, run, engine_run
    except BaseException:
        with contextlib.suppress(BaseException):  # the advance's error is the one raised
            threads.finished(reading)  # a failed advance leaves no read behind it
        raise
    ledger.telemetry = threads.finished(reading)
    newest = frames[0]["last_matured_at"].max()
    if newest is None:  # nobody in the stats window: the manifest's bounds say how old
        his = [s.hi for s in manifest.of("records") if s.hi is not None]
        newest = _latest_bound(his, as_of)
    ledger.latest = newest  # type: ignore[assignment]
    return frames, learned, write


#: The columns :meth:`CadenceIndex.from_records` reads (the store is read as these alone).
_CADENCE_COLUMNS = ["agent", "matured_at", "ts", "realized_pnl_bps", "horizon_hours", "record_id"]


def _store_cadence(
    paths: Paths, manifest: Manifest, as_of: datetime, policy: Policy
) -> CadenceIndex | None:
    """The cadence index over the store's records of the cadence history (``None``: off)."""
    history = cadence_hours(policy)
    if history <= 0:
        return None
    records = LedgerStore(paths.ledger or "").records(as_of, history, manifest, _CADENCE_COLUMNS)
    return CadenceIndex.from_records(records, policy.horizon_hours)


def _latest_bound(his: list[int], as_of: datetime) -> datetime | None:
    """The latest segment bound at or before ``as_of`` (µs since the epoch), as a datetime."""
    limit = epoch_us(as_of)
    visible = [h for h in his if h <= limit]
    return from_epoch_us(max(visible)) if visible else None


#: How far after the clock a recorded ``as_of`` may lie without ``allow_future``: a cycle
#: scheduled on the hour may start a little early, a typo of a year or a day may not be recorded
#: (it would put the fleet in cash and block every earlier instant).
FUTURE_TOLERANCE = timedelta(hours=1)


class FutureAsOf(BadInput):
    """A cycle was asked to record an instant far after the clock."""


class StateIOError(ProblemFound):
    """The disk failed under the cycle (full, read-only, permissions); the file is named."""


class NoInputs(BadInput):
    """A cycle found no records at all (no store, no records file, or nothing valid in it)."""

    hint = "check --root/--records (or pass --allow-empty to record an empty, all-cash cycle)"


def _check_as_of(as_of: datetime, now: datetime, *, write: bool, allow_future: bool) -> None:
    """Refuse an ``as_of`` outside the instants inputs may name, or (when recording) far after
    ``now`` unless ``allow_future``."""
    if not EARLIEST_INSTANT <= as_of < LATEST_INSTANT:
        raise BadInput(
            f"--as-of {as_of.isoformat()}: outside {iso(EARLIEST_INSTANT)} to {iso(LATEST_INSTANT)}"
        )
    if write and not allow_future and as_of > now + FUTURE_TOLERANCE:
        raise FutureAsOf(
            f"--as-of {iso(as_of)} is {(as_of - now) / timedelta(hours=1):.1f} h after the clock "
            f"({iso(now)}); a recorded future instant blocks every earlier cycle. Pass "
            "--allow-future if it is meant, or --dry-run to look ahead without recording"
        )


def _check_inputs(paths: Paths, ledger: Ledger, manifest: Manifest | None) -> None:
    """ "Nothing found" is loud: no store and no records file, or no valid record in either,
    would otherwise record an all-cash decision (a mistyped ``--root``)."""
    if manifest is not None:
        if manifest.of("records"):
            return
        raise NoInputs(f"{paths.ledger}: the ledger store holds no records")
    if ledger.records.height:
        return
    if not paths.records.exists():
        where = f"no ledger store at {paths.ledger} and " if paths.ledger is not None else ""
        raise NoInputs(f"{where}no records file at {paths.records}")
    refused = f" ({ledger.refused} rows refused)" if ledger.refused else ""
    raise NoInputs(f"{paths.records}: no valid record{refused}")


def run_cycle(
    paths: Paths,
    as_of: datetime | None = None,
    policy: Policy | None = None,
    *,
    write: bool = True,
    lock_timeout_s: float = 0.0,
    now: datetime | None = None,
    allow_future: bool = False,
    allow_empty: bool = False,
) -> tuple[Decision, Ledger]:
    """Read, decide and (unless ``write=False``) record one cycle under the state lock.

    The disk failing under the cycle (full, read-only, permissions) is a
    :class:`StateIOError` naming the file, and a store segment that cannot be read (truncated,
    not Parquet) a :class:`~meta_supervisor.ledger.store.LedgerError`: both exit 1 at the
    command line, with one error line. The history is written first, so whatever failed, the
    state is the previous commit or this one (the next cycle repairs the current files).

    Crash-safe and idempotent: under the lock, temps of dead writers are removed and the
    current files are first brought in line with the last history entry (a kill between the
    history append and the file writes is repaired); re-running a recorded cycle returns the
    recorded decision without appending it again.

    On an ingested store the statistics come from the incremental state in the state
    directory (:mod:`meta_supervisor.cycle.engine`): the cycle reads what was committed since the
    last one, not the window. Without a store, the raw files are read whole and the frames
    computed from scratch.

    Refused (:class:`~meta_supervisor.errors.BadInput`, nothing written): an ``as_of`` outside
    1970 to 2200; a recorded ``as_of`` more than :data:`FUTURE_TOLERANCE` after ``now`` (the
    clock by default) unless ``allow_future`` (:class:`FutureAsOf`); no records at all unless
    ``allow_empty`` (:class:`NoInputs`).
    """
    policy = policy or load_policy(paths.policy)
    now = now or datetime.now(UTC)
    as_of = as_of or now
    _check_as_of(as_of, now, write=write, allow_future=allow_future)
    try:
        return _run_cycle(
            paths,
            as_of,
            policy,
            write=write,
            lock_timeout_s=lock_timeout_s,
            allow_empty=allow_empty,
        )
    except OSError as err:
        where = err.filename or paths.state_dir
        raise StateIOError(f"{where}: {err.strerror or err}; the cycle did not complete") from None
    except pl.exceptions.PolarsError as err:
        if paths.ledger is None or not LedgerStore(paths.ledger).exists():
            raise
        first = (str(err).splitlines() or [type(err).__name__])[0][:200]
        raise LedgerError(
            f"{paths.ledger}: a segment of the ledger store cannot be read ({first}); "
            "the cycle recorded nothing"
        ) from None


def _run_cycle(
    paths: Paths,
    as_of: datetime,
    policy: Policy,
    *,
    write: bool,
    lock_timeout_s: float,
    allow_empty: bool,
) -> tuple[Decision, Ledger]:
    """:func:`run_cycle` once its arguments are checked."""
    snapshot = _store_ledger(paths)
    if snapshot is None:
        ledger, manifest = load_ledger(paths, as_of, window_hours(policy)), None
    else:
        ledger, manifest = snapshot
    if not allow_empty:
        _check_inputs(paths, ledger, manifest)

    def decide_now(previous: dict[str, float] | None, prev_hash: str | None) -> Decision:
        """:func:`decide` at ``as_of``; on a store, on the engine's inputs (saved back only by
        a recording cycle)."""
        if manifest is None:
            overrides = load_overrides(paths)
            return decide(ledger, as_of, policy, previous, overrides, prev_hash)
        frames, learned, save = _engine_frames(paths, ledger, manifest, as_of, policy, write)

        def decided() -> Decision:
            # the engine keeps expected_records and (select) the loss tails; the index only
            # for a recent_loss_z it did not give
            wants = "recent_loss_z" in method_for(policy.profile).keys
            cadence = (
                _store_cadence(paths, manifest, as_of, policy)
                if wants and "recent_loss_z" not in frames[0].columns
                else None
            )
            overrides = load_overrides(paths)
            decision = decide(
                ledger,
                as_of,
                policy,
                previous,
                overrides,
                prev_hash,
                frames=frames,
                persistence=learned,
                cadence=cadence,
            )
            if write:
                decision.provenance  # noqa: B018 (built here, beside the save: the commit reads it)
            return decision

        if not write:
            return decided()
        # the state is written (mostly waiting on the disk) while the decision is taken on the
        # frames, which the save does not touch; both are done before anything is committed.
        # A decision that raises leaves the advanced state saved (two cores: the save ran
        # beside it) or not (one core: one after the other): the next cycle advances either.
        return threads.beside(decided, save)[0]

    if not write:
        return decide_now(*load_previous(paths, as_of)), ledger
    with StateLock(paths.lock, lock_timeout_s):
        fault_point("locked")
        remove_stale_temps(paths.state_dir)
        entries = _entries_around(paths, as_of)
        _check_base(paths, entries)
        explanations.remove_uncommitted(paths.state_dir, entries[-1].seq if entries else 0)
        if entries:
            _write_current(paths, entries[-1].record)
        base = _base_entry(entries, iso(as_of))
        earlier = [e for e in entries if e.record.get("as_of") == iso(as_of)]
        if earlier and entries[-1].record.get("as_of") != iso(as_of):
            # Decided already, and later cycles have followed: a late duplicate run (e.g. a
            # queued scheduler job) must neither record it twice nor roll the files back.
            return _as_decision(earlier[-1]), ledger
        latest = entries[-1].record.get("as_of") if entries else None
        if latest is not None and parse_iso(latest) > as_of:
            # The history is in time order and each decision smooths against the one before:
            # recording an earlier instant after a later one would chain it to the future.
            raise OutOfOrder(
                f"{paths.history}: as_of {iso(as_of)} is before the latest decision "
                f"({latest}); decide later instants only, or look back with --dry-run"
            )
        previous = (
            None
            if base is None
            else {k: float(v) for k, v in base.record.get("weights", {}).items()}
        )
        prev_hash = None if base is None else base.hash
        decision, _ = _commit_locked(decide_now(previous, prev_hash), paths, entries)
    return decision, ledger
