"""The learned strength kept between cycles as per-(agent, day) sums (``persistence.state``).

* incremental = rebuild, to the byte: after any sequence of appends (late records for past
  days, duplicates refused by the store) and cycles, the kept sums are the bytes of sums rebuilt
  from the store, and the strength the bits of the direct computation on all its records;
* a trust boundary (issue #13): an edited, truncated, other-policy or other-ledger file is
  rebuilt with the reason said, never used;
* a SIGKILL during the save or after it changes no recorded byte.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faultkit import make_inputs, spawn_cycles
from helpers import SMALL_SELECT
from meta_supervisor.config import Paths
from meta_supervisor.cycle.learned import kept_persistence, state_digest
from meta_supervisor.cycle.run import run_cycle
from meta_supervisor.ingest.batch import ingest
from meta_supervisor.ingest.records import RECORD_SCHEMA, empty_quarantine, empty_telemetry
from meta_supervisor.ledger.store import LedgerStore
from meta_supervisor.policy.model import Policy, Profile
from meta_supervisor.research.demo import DEMO_AS_OF
from meta_supervisor.signals.daysums import DaySums
from meta_supervisor.signals.persistence import persistence
from meta_supervisor.state.files import read_history

T0 = datetime(2026, 3, 1, 7, tzinfo=UTC)
POLICY = Policy(
    profile=Profile.EVIDENCE,
    lookback_hours=48.0,
    evidence_persistence_lags=3,
    evidence_persistence_step_hours=24.0,
    min_records=2,
    evidence_min_agents=2,
)

#: The select profile learns its rule from the same kept cells, over its own step and lags.
SELECT = SMALL_SELECT

record_st = st.tuples(
    st.sampled_from(["a", "b", "c", "d", "e"]),
    st.sampled_from(["s1", "s2"]),
    st.integers(-150, 12),  # matured this many hours from the current as_of: late ones on purpose
    # tenths of a bps: sums like 0.1 + 0.2 − 0.3 are 0 only up to the order of summation
    st.integers(-600, 600).map(lambda v: v / 10),
)
op_st = st.one_of(
    st.tuples(st.just("ingest"), st.lists(record_st, min_size=1, max_size=12)),
    st.tuples(st.just("cycle"), st.integers(0, 40)),
    st.tuples(st.just("duplicate"), st.just(0)),
)


def _records(items: list[tuple], start: int, as_of: datetime) -> pl.DataFrame:
    rows = []
    for k, (agent, strategy, hours, realized) in enumerate(items):
        matured = as_of + timedelta(hours=hours, minutes=k % 7)
        rows.append(
            {
                "record_id": f"r{start + k:05d}",
                "ts": matured - timedelta(hours=24),
                "matured_at": matured,
                "agent": agent,
                "strategy": strategy,
                "horizon_hours": 24,
                "realized_pnl_bps": realized,
                "expected_pnl_bps": realized,
                "expected_sigma_bps": 30.0,
                "gap_bps": 0.0,
            }
        )
    frame = pl.DataFrame(rows)
    return frame.with_columns(
        [pl.lit(None, dtype=t).alias(c) for c, t in RECORD_SCHEMA.items() if c not in frame.columns]
    ).select([pl.col(c).cast(t) for c, t in RECORD_SCHEMA.items()])


def _append(store: LedgerStore, records: pl.DataFrame) -> None:
    with store.writer():
        store.append(records, empty_telemetry(), empty_quarantine())


def _split(path: Path) -> tuple[dict, bytes]:
    data = path.read_bytes()
    end = data.index(b"\n")
    return json.loads(data[:end]), data[end + 1 :]


def _kept_sums(path: Path) -> bytes:
    return _split(path)[1]


@pytest.mark.parametrize("policy", [POLICY, SELECT], ids=["evidence", "select"])
@given(ops=st.lists(op_st, min_size=2, max_size=12))
@settings(max_examples=20, deadline=None)
def test_kept_day_sums_are_the_bytes_of_a_rebuild_after_any_appends_and_cycles(
    ops, tmp_path_factory, policy
):
    root = tmp_path_factory.mktemp("learned")
    store, path = LedgerStore(root / "ledger"), root / "persistence.state"
    as_of, index, last = T0, 0, None
    start = [("a", "s1", -30, 5.0), ("b", "s1", -60, -3.0), ("c", "s2", -5, 1.0)]
    for kind, arg in [("ingest", start), *ops, ("cycle", 24)]:
        if kind == "ingest":
            last = _records(arg, index, as_of)
            _append(store, last)
            index += len(arg)
        elif kind == "duplicate" and last is not None:
            _append(store, last)  # refused upstream: nothing new is stored
        elif kind == "cycle":
            as_of += timedelta(hours=arg)
            manifest = store.manifest()
            kept = kept_persistence(store, manifest, as_of, policy, path)
            fresh = kept_persistence(store, manifest, as_of, policy, root / "none", save=False)
            assert fresh.mode == "rebuilt" and fresh.sums is not None
            assert _kept_sums(path) == fresh.sums.to_bytes()
            direct = persistence(store.records(manifest=manifest), as_of, policy)
            assert kept.value.to_dict() == fresh.value.to_dict() == direct.to_dict()


def test_a_cycle_on_the_same_day_keeps_a_late_record_recomputes_one_bucket(tmp_path: Path):
    store, path = LedgerStore(tmp_path / "ledger"), tmp_path / "persistence.state"
    rows = [(a, "s1", -h, float(h % 7 - 3)) for a in "abcd" for h in range(1, 120, 5)]
    _append(store, _records(rows, 0, T0))
    first = kept_persistence(store, store.manifest(), T0, POLICY, path)
    assert (first.mode, first.reason, first.saved) == ("rebuilt", "no saved learned value", True)
    # later the same day, records that matured after the anchor: nothing is read or written
    _append(store, _records([("a", "s1", 2, 9.0)], 1000, T0))
    before = path.read_bytes()
    same = kept_persistence(store, store.manifest(), T0 + timedelta(hours=3), POLICY, path)
    assert (same.mode, same.recomputed, same.late_records, same.saved) == ("kept", False, 0, False)
    assert path.read_bytes() == before
    # a late record for two days ago: only its day is recomputed from the store
    _append(store, _records([("b", "s1", -50, -40.0)], 2000, T0))
    late = kept_persistence(store, store.manifest(), T0 + timedelta(hours=4), POLICY, path)
    assert (late.mode, late.buckets, late.late_records, late.saved) == ("advanced", 1, 1, True)
    # the next day: the day after the kept anchor is the one bucket recomputed
    nxt = kept_persistence(store, store.manifest(), T0 + timedelta(hours=24), POLICY, path)
    assert (nxt.mode, nxt.buckets) == ("advanced", 1)
    assert nxt.value == persistence(store.records(), T0 + timedelta(hours=24), POLICY)


def test_a_rebuild_in_small_chunks_gives_the_bytes_of_a_one_shot_rebuild(tmp_path: Path):
    store = LedgerStore(tmp_path / "ledger")
    rows = [(a, f"s{i % 2}", -h, float(h % 9 - 4)) for i, a in enumerate("abc") for h in range(99)]
    _append(store, _records(rows, 0, T0))
    _append(store, _records([("d", "s1", -h, 1.5) for h in range(0, 90, 7)], 5000, T0))
    one = kept_persistence(store, store.manifest(), T0, POLICY, tmp_path / "a", save=False)
    small = kept_persistence(
        store, store.manifest(), T0, POLICY, tmp_path / "b", save=False, chunk_rows=40
    )
    assert one.sums is not None and small.sums is not None
    assert small.sums.to_bytes() == one.sums.to_bytes()
    assert small.value.to_dict() == one.value.to_dict()


# ---------------------------------------------------------------- the file is a trust boundary


def _rehashed(path: Path, edit: Any = None, sums: bytes | None = None) -> None:
    """Edit the header (and maybe the cells) and give both matching hashes (what only a
    careful hand does)."""
    header, data = _split(path)
    header.pop("sha256")
    if sums is not None:
        data = sums
        header.update(sums_bytes=len(data), sums_sha256=hashlib.sha256(data).hexdigest())
    if edit is not None:
        edit(header)
    header["sha256"] = state_digest(header)
    path.write_bytes(json.dumps(header).encode() + b"\n" + data)


def _other_horizon(path: Path) -> None:
    sums = DaySums.from_bytes(_kept_sums(path))
    _rehashed(path, sums=replace(sums, horizon_hours=4).to_bytes())


def _edit_value(path: Path) -> None:
    header, data = _split(path)
    header["persistence"]["strength"] = 1.0
    path.write_bytes(json.dumps(header).encode() + b"\n" + data)


def _flip_a_cell_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-3] ^= 1  # a bit of the last cell's strategy code
    path.write_bytes(bytes(data))


DAMAGE = [
    (_edit_value, "does not match its hash"),
    (_flip_a_cell_bit, "day sums in persistence.state do not match their hash"),
    (lambda p: p.write_bytes(p.read_bytes()[:-100]), "do not match their hash"),  # truncated
    (lambda p: p.write_bytes(p.read_bytes()[:20]), "unreadable"),
    (lambda p: p.write_text("[]"), "unreadable"),
    (lambda p: p.write_text('{"format": 1, "strength": 1.0}'), "format 1"),
    (lambda p: _rehashed(p, sums=b"AAAA"), "not a day-sums encoding"),
    (lambda p: _rehashed(p, sums=b""), "holds no day sums"),
    (_other_horizon, "another horizon"),
    (lambda p: _rehashed(p, lambda h: h["segments"].append("records/x.parquet")), "lost segments"),
    (lambda p: _rehashed(p, lambda h: h.update(ledger="/elsewhere")), "another ledger"),
    (lambda p: _rehashed(p, lambda h: h.update(policy_fingerprint="0" * 16)), "policy changed"),
    (lambda p: p.unlink(), "no saved learned value"),
]


@pytest.fixture
def kept_store(tmp_path: Path) -> tuple[LedgerStore, Path]:
    store, path = LedgerStore(tmp_path / "ledger"), tmp_path / "persistence.state"
    rows = [
        (a, f"s{i % 2}", -h, float((h * (i + 3)) % 11 - 5 + i))
        for i, a in enumerate("abcdef")
        for h in range(4, 141, 4)
    ]
    _append(store, _records(rows, 0, T0))
    kept_persistence(store, store.manifest(), T0, POLICY, path)
    return store, path


@pytest.mark.parametrize(("damage", "reason"), DAMAGE)
def test_a_damaged_or_foreign_file_is_rebuilt_with_the_reason_never_used(
    kept_store: tuple[LedgerStore, Path], damage: Any, reason: str
) -> None:
    store, path = kept_store
    as_of = T0 + timedelta(hours=24)  # the next day: the kept cells are needed
    damage(path)
    run = kept_persistence(store, store.manifest(), as_of, POLICY, path)
    assert run.mode == "rebuilt" and reason in run.reason, run.reason
    assert run.value.to_dict() == persistence(store.records(), as_of, POLICY).to_dict()
    # and the rewritten file is trusted again
    assert kept_persistence(store, store.manifest(), as_of, POLICY, path).mode == "kept"


def test_another_policy_or_an_earlier_anchor_is_rebuilt_and_says_so(
    kept_store: tuple[LedgerStore, Path],
) -> None:
    store, path = kept_store
    other = POLICY.model_copy(update={"min_records": 3})
    run = kept_persistence(store, store.manifest(), T0, other, path, save=False)
    assert (run.mode, run.reason) == ("rebuilt", "the policy changed")
    back = kept_persistence(store, store.manifest(), T0 - timedelta(days=2), POLICY, path)
    assert (back.mode, back.reason) == ("rebuilt", "the anchor is before the kept one")
    assert back.value == persistence(store.records(), T0 - timedelta(days=2), POLICY)


# ---------------------------------------------------------------- kills


def _evidence_paths(tmp_path: Path, name: str) -> Paths:
    inputs = make_inputs(tmp_path)
    inputs.policy.write_text('profile = "evidence"\n', encoding="utf-8")
    if not inputs.ledger.exists():
        ingest([inputs.records, inputs.telemetry], inputs.ledger)
    paths = replace(inputs, state_dir=tmp_path / name)
    paths.state_dir.mkdir()
    return paths


CYCLES = [DEMO_AS_OF - timedelta(hours=h) for h in (48, 24, 18, 0)]  # new, new, kept, new


@pytest.mark.slow
@pytest.mark.parametrize("point", ["before_rename:persistence.state", "history_append"])
def test_a_kill_during_or_after_the_save_changes_no_recorded_byte(
    tmp_path: Path, point: str
) -> None:
    """Killed while ``persistence.state`` is written (the old file stays) or after it was
    written but before the decision was recorded (the new one is kept and reused): the
    restarted cycles record the bytes of a run never killed, and keep the same file."""
    reference = _evidence_paths(tmp_path, "reference")
    for as_of in CYCLES:
        run_cycle(reference, as_of)
    paths = _evidence_paths(tmp_path, "killed")
    run_cycle(paths, CYCLES[0])
    proc = spawn_cycles(paths, CYCLES[1:2], fault=f"kill:{point}")
    proc.communicate(timeout=120)
    assert proc.returncode != 0  # killed before the history line
    assert len(read_history(paths.history)) == 1
    for as_of in CYCLES[1:]:
        run_cycle(paths, as_of)
    assert paths.history.read_bytes() == reference.history.read_bytes()
    assert paths.persistence.read_bytes() == reference.persistence.read_bytes()


@pytest.mark.parametrize("policy", [POLICY, SELECT], ids=["evidence", "select"])
def test_a_stored_nan_or_inf_pnl_leaves_the_kept_cells_usable(tmp_path: Path, policy: Policy):
    """Regression: ingest refuses a PnL that is not finite, but a store appended to directly
    may hold NaN and ±inf. Their cells hold what IEEE arithmetic gives (a NaN or infinite sum
    and spread), and the kept file was refused on every later cycle ("a non-finite sum"): a
    full rebuild each cycle, forever. Such cells are kept and advanced like any other, to the
    value a rebuild gives."""
    store, path = LedgerStore(tmp_path / "ledger"), tmp_path / "persistence.state"
    rows = [(a, "s1", -h, float(h % 7 - 3)) for a in "abcd" for h in range(1, 120, 3)]
    frame = _records(rows, 0, T0)
    pnl = frame["realized_pnl_bps"].to_list()
    pnl[3], pnl[50], pnl[51] = math.nan, math.inf, -math.inf
    _append(store, frame.with_columns(pl.Series("realized_pnl_bps", pnl)))
    first = kept_persistence(store, store.manifest(), T0, policy, path)
    assert first.mode == "rebuilt" and first.sums is not None
    assert not np.isfinite(first.sums.pnl_sum).all()  # the fixture really holds them
    _append(store, _records([("a", "s1", 3, 1.0), ("b", "s1", 20, 2.0)], 1000, T0))
    later = T0 + timedelta(hours=24)
    nxt = kept_persistence(store, store.manifest(), later, policy, path)
    assert (nxt.mode, nxt.reason) == ("advanced", "")
    rebuilt = kept_persistence(store, store.manifest(), later, policy, tmp_path / "b", save=False)
    assert nxt.sums is not None and rebuilt.sums is not None
    assert nxt.sums.to_bytes() == rebuilt.sums.to_bytes()
    assert nxt.value.to_dict() == rebuilt.value.to_dict()


@pytest.mark.parametrize("policy", [POLICY, SELECT], ids=["evidence", "select"])
def test_tiny_buckets_keep_the_value_until_the_anchor_moves_or_a_late_record(
    tmp_path: Path, policy: Policy
):
    """Regression (review): a lookback sharing only 360 µs with the step keeps no cells (past
    MAX_BUCKETS buckets); the select profile's rule was still kept between cycles of one
    anchor before it read cells, and after that every cycle re-read the whole range and
    rewrote the file. The value is kept while the anchor stays and no new record matured by
    it; a late one, or the next anchor, recomputes it from the records."""
    tiny = policy.model_copy(update={"lookback_hours": policy.lookback_hours + 1e-7})
    store, path = LedgerStore(tmp_path / "ledger"), tmp_path / "persistence.state"
    rows = [(a, "s1", -h, float((h * 7) % 11 - 5)) for a in "abcd" for h in range(1, 150, 2)]
    _append(store, _records(rows, 0, T0))
    first = kept_persistence(store, store.manifest(), T0, tiny, path)
    assert (first.mode, first.saved) == ("rebuilt", True)
    _append(store, _records([("a", "s1", 2, 9.0)], 1000, T0))  # matured after the anchor
    before = path.read_bytes()
    same = kept_persistence(store, store.manifest(), T0 + timedelta(hours=1), tiny, path)
    assert (same.mode, same.recomputed, same.saved) == ("kept", False, False)
    assert path.read_bytes() == before
    _append(store, _records([("b", "s1", -30, -40.0)], 2000, T0))  # late
    late = kept_persistence(store, store.manifest(), T0 + timedelta(hours=2), tiny, path)
    assert (late.mode, late.recomputed, late.late_records) == ("advanced", True, 1)
    assert late.value == persistence(store.records(), T0 + timedelta(hours=2), tiny)
    # what `allocate` prints: no "0 bucket(s) recomputed" where no cells are kept
    assert late.line("learned").startswith(
        "learned: recomputed from the range's records (buckets too narrow to keep, 1 late record"
    )
    assert same.line("learned") == "learned: kept (same anchor, no late record)"


@pytest.mark.parametrize("failing", ["engine", "learned", "engine save"])
def test_a_cycle_whose_engine_or_learned_value_fails_saves_no_learned_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    """The learned value is obtained beside the engine's advance; when the engine fails (after
    the learned value was obtained), the cycle raises its error and ``persistence.state`` is
    not written (regression: the learned value, run on the pool, saved its file in a cycle
    that failed); when the learned value fails, its error is raised. The engine's state is
    saved beside the decision: when that save fails, the decision is not committed and the
    learned value not saved. Afterwards the cycle records what a cycle never failed records."""
    from meta_supervisor.cycle import run as cycle_run
    from meta_supervisor.signals import threads

    reference = _evidence_paths(tmp_path, "reference")
    run_cycle(reference, CYCLES[0])
    paths = _evidence_paths(tmp_path, "failing")
    learned_done = threading.Event()
    real_kept, real_frames = cycle_run.kept_persistence, cycle_run.advanced_frames

    def kept(*args: Any, **kwargs: Any) -> Any:
        try:
            if failing == "learned":
                raise RuntimeError("the learned value failed")
            return real_kept(*args, **kwargs)
        finally:
            learned_done.set()

    def frames(*args: Any, **kwargs: Any) -> Any:
        if failing == "engine":
            assert learned_done.wait(timeout=60)  # the other work finished (saved, if it would)
            raise RuntimeError("the engine failed")
        got, run, write = real_frames(*args, **kwargs)
        if failing != "engine save":
            return got, run, write

        def failed_write() -> None:
            raise RuntimeError("the engine save failed")

        return got, run, failed_write

    monkeypatch.setattr(threads, "cores", lambda: 2)  # the two run at once
    monkeypatch.setattr(cycle_run, "kept_persistence", kept)
    monkeypatch.setattr(cycle_run, "advanced_frames", frames)
    with pytest.raises(RuntimeError, match=f"the {failing}"):
        run_cycle(paths, CYCLES[0])
    assert not paths.persistence.exists()
    assert not paths.history.exists() or not read_history(paths.history)
    monkeypatch.setattr(cycle_run, "kept_persistence", real_kept)
    monkeypatch.setattr(cycle_run, "advanced_frames", real_frames)
    run_cycle(paths, CYCLES[0])
    assert paths.history.read_bytes() == reference.history.read_bytes()
    assert paths.persistence.read_bytes() == reference.persistence.read_bytes()
