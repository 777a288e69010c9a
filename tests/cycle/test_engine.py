"""engine: the live cycle on a store advances a saved state, and decides as a full recompute.

The reference is :func:`meta_supervisor.cycle.run.decide` computing every frame from all the
records the store holds at once, chained to the same previous weights: the store's cycle
(saved states advanced, late records, lost and rebuilt states) must decide the same bits. The
engine's frames are checked against the plain polars formulas (themselves checked against
brute force) in tests/signals/test_incremental.py.
"""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faultkit import make_inputs, spawn_cycles
from meta_supervisor.allocate.decision import iso
from meta_supervisor.config import Paths
from meta_supervisor.cycle import engine as engine_module
from meta_supervisor.cycle.engine import meta_path
from meta_supervisor.cycle.run import Ledger, decide, load_ledger, run_cycle, window_hours
from meta_supervisor.ingest.batch import ingest
from meta_supervisor.ingest.records import RECORD_SCHEMA, empty_quarantine, empty_telemetry
from meta_supervisor.ledger.store import LedgerStore
from meta_supervisor.policy.model import Policy, Profile
from meta_supervisor.research.demo import DEMO_AS_OF
from meta_supervisor.signals.cadence import CadenceIndex
from meta_supervisor.signals.persistence import persistence
from meta_supervisor.state.files import read_history

T0 = datetime(2026, 3, 1, tzinfo=UTC)

record_st = st.tuples(
    st.sampled_from(["a", "b", "c", "d", "e"]),
    st.sampled_from(["s1", "s2"]),
    st.integers(-40, 8),  # matured this many hours from the current as_of: late ones on purpose
    # tenths of a bps: sums like 0.1 + 0.2 − 0.3 are 0 only up to the order of summation
    st.integers(-600, 600).map(lambda v: v / 10),
    st.integers(-30, 30).map(float),
)
op_st = st.one_of(
    st.tuples(st.just("ingest"), st.lists(record_st, min_size=1, max_size=10)),
    st.tuples(st.just("cycle"), st.integers(0, 7)),
    st.tuples(st.just("lose_state"), st.just(0)),
)
policy_st = st.builds(
    Policy,
    lookback_hours=st.sampled_from([6.0, 24.0]),
    confidence_lookback_hours=st.sampled_from([10.0, 48.0]),
    cvar_lookback_hours=st.sampled_from([12.0, 48.0]),
    confidence_half_life_hours=st.sampled_from([4.0, 72.0]),
    cvar_min_samples=st.just(2),
    min_records=st.sampled_from([1, 3]),
)


def _records(items: list[tuple], start: int, as_of: datetime) -> pl.DataFrame:
    rows = []
    for k, (agent, strategy, hours, realized, gap) in enumerate(items):
        matured = as_of + timedelta(hours=hours)
        rows.append(
            {
                "record_id": f"r{start + k:05d}",
                "ts": matured - timedelta(hours=24),
                "matured_at": matured,
                "agent": agent,
                "strategy": strategy,
                "horizon_hours": 24,
                "realized_pnl_bps": realized,
                "expected_pnl_bps": realized - gap,
                "expected_sigma_bps": 30.0,
                "gap_bps": gap,
            }
        )
    frame = pl.DataFrame(rows)
    return frame.with_columns(
        [pl.lit(None, dtype=t).alias(c) for c, t in RECORD_SCHEMA.items() if c not in frame.columns]
    ).select([pl.col(c).cast(t) for c, t in RECORD_SCHEMA.items()])


def _append(paths: Paths, records: pl.DataFrame) -> None:
    store = LedgerStore(paths.ledger)
    with store.writer():
        store.append(records, empty_telemetry(), empty_quarantine())


def _store_paths(root: Path) -> Paths:
    return Paths(
        records=root / "none.jsonl",
        telemetry=root / "none-tel.jsonl",
        state_dir=root / "state",
        ledger=root / "ledger",
    )


def _reference(paths: Paths, as_of: datetime, policy: Policy, previous, prev_hash):
    """A full recompute from every record in the store (no window read, no engine)."""
    store = LedgerStore(paths.ledger)
    ledger = Ledger(store.records(), store.telemetry())
    return decide(ledger, as_of, policy, previous, (), prev_hash)


def _assert_close(ours, theirs) -> None:
    """The store's cycle (saved state advanced, late records, lost states) decides exactly
    what a cycle on every record decides: weights, cash and every agent's explanation."""
    assert ours.weights == theirs.weights
    assert ours.cash == theirs.cash
    assert ours.agents == theirs.agents


@given(policy=policy_st, ops=st.lists(op_st, min_size=2, max_size=10))
@settings(max_examples=25)
def test_any_sequence_of_ingests_and_cycles_decides_as_a_full_recompute(
    policy, ops, tmp_path_factory
):
    paths = _store_paths(tmp_path_factory.mktemp("engine"))
    as_of, index = T0, 0
    for kind, arg in [("ingest", [("a", "s1", -1, 5.0, 1.0)]), *ops]:
        if kind == "ingest":
            _append(paths, _records(arg, index, as_of))
            index += len(arg)
        elif kind == "lose_state" and paths.engine.exists():
            paths.engine.write_bytes(b"not a state")
        elif kind == "cycle":
            as_of += timedelta(hours=arg)
            # the base a cycle smooths against: the last entry for another instant
            base = [e for e in read_history(paths.history) if e.decision["as_of"] != iso(as_of)]
            previous = base[-1].decision["weights"] if base else None
            decision, ledger = run_cycle(paths, as_of, policy)
            assert ledger.engine is not None and ledger.engine.saved
            reference = _reference(paths, as_of, policy, previous, base[-1].hash if base else None)
            _assert_close(decision, reference)


@pytest.fixture
def store_fleet(tmp_path: Path) -> Paths:
    """The demo fleet ingested into a store, with an empty state directory."""
    inputs = make_inputs(tmp_path)
    ingest([inputs.records, inputs.telemetry], inputs.ledger)
    state = tmp_path / "state"
    state.mkdir()
    return replace(inputs, state_dir=state, policy=None)  # the default policy


AS_OFS = [DEMO_AS_OF - timedelta(days=2), DEMO_AS_OF - timedelta(days=1), DEMO_AS_OF]


def test_second_cycle_advances_the_saved_state(store_fleet: Paths) -> None:
    _, first = run_cycle(store_fleet, AS_OFS[0])
    assert first.engine is not None and first.engine.mode == "rebuilt"
    assert first.engine.reason == "no saved state"
    meta = json.loads(meta_path(store_fleet.engine).read_text())
    assert meta["segments"] == sorted(
        s.path for s in LedgerStore(store_fleet.ledger).manifest().of("records")
    )
    decision, second = run_cycle(store_fleet, AS_OFS[1])
    assert second.engine is not None and second.engine.mode == "warm"
    assert second.engine.new_segments == 0
    # only the evidence profile's learned strength reads records (its lagged window)
    _, seed = run_cycle(store_fleet, AS_OFS[1], Policy(profile=Profile.SEED), write=False)
    assert seed.records.height == 0
    assert second.latest is not None and second.latest <= AS_OFS[1]
    policy = Policy()
    full = decide(
        load_ledger(replace(store_fleet, ledger=None), AS_OFS[1]),
        AS_OFS[1],
        policy,
        {k: v for k, v in read_history(store_fleet.history)[0].decision["weights"].items()},
        (),
        read_history(store_fleet.history)[0].hash,
    )
    _assert_close(decision, full)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda p: p.engine.write_bytes(b"\x00garbage"), "does not match"),
        (lambda p: p.engine.unlink(), "no saved state"),
        (lambda p: meta_path(p.engine).write_text("{"), "unreadable engine.json"),
        (
            lambda p: meta_path(p.engine).write_text(
                meta_path(p.engine).read_text().replace('"segments": [', '"segments": ["x", ')
            ),
            "lost segments",
        ),
    ],
)
def test_a_damaged_state_is_rebuilt_and_decides_the_same(store_fleet: Paths, damage, reason):
    run_cycle(store_fleet, AS_OFS[0])
    healthy, _ = run_cycle(store_fleet, AS_OFS[1], write=False)
    damage(store_fleet)
    decision, ledger = run_cycle(store_fleet, AS_OFS[1], write=False)
    assert ledger.engine is not None and ledger.engine.mode == "rebuilt"
    assert reason in ledger.engine.reason
    _assert_close(decision, healthy)


def test_a_policy_change_rebuilds(store_fleet: Paths) -> None:
    run_cycle(store_fleet, AS_OFS[0])
    _, ledger = run_cycle(store_fleet, AS_OFS[1], Policy(max_weight=0.2))
    assert ledger.engine is not None and ledger.engine.reason == "the policy changed"


def test_a_dry_run_writes_no_state_and_may_look_back(store_fleet: Paths) -> None:
    run_cycle(store_fleet, AS_OFS[1])
    before = store_fleet.engine.read_bytes(), meta_path(store_fleet.engine).read_bytes()
    _, ledger = run_cycle(store_fleet, AS_OFS[2], write=False)
    assert ledger.engine is not None and ledger.engine.mode == "warm" and not ledger.engine.saved
    _, back = run_cycle(store_fleet, AS_OFS[0], write=False)
    assert back.engine is not None and "before the saved state" in back.engine.reason
    assert (store_fleet.engine.read_bytes(), meta_path(store_fleet.engine).read_bytes()) == before


def test_records_appended_between_cycles_are_read_as_late_or_by_range(store_fleet: Paths) -> None:
    run_cycle(store_fleet, AS_OFS[0])
    late = _records([("late-agent", "s9", -30, -80.0, -10.0)], 0, AS_OFS[0])
    fresh = _records([("late-agent", "s9", 5, -90.0, -12.0)], 1, AS_OFS[0])
    _append(store_fleet, pl.concat([late, fresh]))
    decision, ledger = run_cycle(store_fleet, AS_OFS[1])
    assert ledger.engine is not None and ledger.engine.mode == "warm"
    assert (ledger.engine.new_segments, ledger.engine.late_records) == (1, 1)
    assert decision.agents["late-agent"]["inputs"]["n_records"] == 2
    first = read_history(store_fleet.history)[0]
    _assert_close(
        decision,
        _reference(store_fleet, AS_OFS[1], Policy(), first.decision["weights"], first.hash),
    )


def test_chunked_rebuild_equals_a_one_shot_rebuild_and_keeps_stale_agents(
    store_fleet: Paths, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = Policy()
    # an agent whose only record matured long before the longest window: gated, not dropped
    old = AS_OFS[2] - timedelta(hours=window_hours(policy) + 100)
    _append(store_fleet, _records([("ancient", "s9", 0, 3.0, 1.0)], 0, old))
    one_shot, ledger = run_cycle(store_fleet, AS_OFS[2], policy, write=False)
    assert ledger.engine is not None and ledger.engine.chunks == 1
    monkeypatch.setattr(engine_module, "CHUNK_ROWS", 500)
    chunked, ledger = run_cycle(store_fleet, AS_OFS[2], policy, write=False)
    assert ledger.engine is not None and ledger.engine.chunks > 3
    _assert_close(chunked, one_shot)
    assert "ancient" in chunked.agents
    assert chunked.weights.get("ancient", 0.0) == 0.0


def _engine_paths(tmp_path: Path, name: str) -> Paths:
    inputs = make_inputs(tmp_path)
    if not inputs.ledger.exists():
        ingest([inputs.records, inputs.telemetry], inputs.ledger)
    paths = replace(inputs, state_dir=tmp_path / name)
    paths.state_dir.mkdir()
    return paths


@pytest.mark.parametrize("point", ["engine_between_writes", "engine_after_meta"])
def test_a_kill_during_the_engine_save_changes_no_recorded_byte(tmp_path: Path, point: str) -> None:
    """A kill between the two engine files forced a rebuild, whose floats differ in the last
    bits: the decision recorded after the kill differed from the one without it (issue #13)."""
    reference = _engine_paths(tmp_path, "reference")
    for as_of in AS_OFS:
        run_cycle(reference, as_of)
    paths = _engine_paths(tmp_path, "killed")
    run_cycle(paths, AS_OFS[0])
    proc = spawn_cycles(paths, AS_OFS[1:2], fault=f"kill:{point}")
    proc.communicate(timeout=120)
    assert proc.returncode != 0  # killed during the engine save, before the history
    assert len(read_history(paths.history)) == 1
    for as_of in AS_OFS[1:]:
        _, ledger = run_cycle(paths, as_of)
        assert ledger.engine is not None and ledger.engine.mode == "warm", ledger.engine.reason
    assert paths.history.read_bytes() == reference.history.read_bytes()


def test_rerunning_the_latest_cycle_after_losing_the_engine_state_records_nothing(
    tmp_path: Path,
) -> None:
    """After engine.state was lost, re-running the latest as_of recorded it a second time (the
    rebuilt statistics differ in the last bits) (issue #13)."""
    paths = _engine_paths(tmp_path, "state")
    for as_of in AS_OFS:
        run_cycle(paths, as_of)
    before = paths.history.read_bytes()
    paths.engine.unlink()
    meta_path(paths.engine).unlink()
    again, ledger = run_cycle(paths, AS_OFS[-1])
    assert ledger.engine is not None and ledger.engine.mode == "rebuilt"
    assert paths.history.read_bytes() == before
    assert again.to_dict() == read_history(paths.history)[-1].decision


def test_allocate_says_how_the_statistics_were_obtained_and_warns_when_stale(
    store_fleet: Paths,
) -> None:
    from typer.testing import CliRunner

    from meta_supervisor.cli.main import app

    env = {
        "META_SUPERVISOR_LEDGER": str(store_fleet.ledger),
        "META_SUPERVISOR_STATE_DIR": str(store_fleet.state_dir),
    }
    runner = CliRunner()

    def allocate(as_of: datetime) -> str:
        result = runner.invoke(app, ["allocate", "--as-of", iso(as_of)], env=env)
        assert result.exit_code == 0, result.output
        return result.output

    first = allocate(AS_OFS[0])
    assert "rebuilt from the ledger" in first and "no saved state" in first
    assert "saved state advanced (0 new segment(s), 0 late record(s))" in allocate(AS_OFS[1])
    late = allocate(AS_OFS[2] + timedelta(days=30))
    assert "the newest record matured at" in late


def test_the_evidence_profile_on_the_store_learns_its_strength_as_on_the_files(
    store_fleet: Paths,
) -> None:
    policy = Policy(profile=Profile.EVIDENCE)
    ledger = load_ledger(replace(store_fleet, ledger=None))
    assert persistence(ledger.records, AS_OFS[2], policy).strength > 0.3  # the test can fail
    decision, on_store = run_cycle(store_fleet, AS_OFS[2], policy, write=False)
    assert on_store.engine is not None
    _assert_close(decision, decide(ledger, AS_OFS[2], policy))


def test_the_learned_strength_is_kept_until_its_next_anchor_and_redone_for_a_late_record(
    store_fleet: Paths,
) -> None:
    policy = Policy(profile=Profile.EVIDENCE)
    morning, noon = DEMO_AS_OF - timedelta(hours=18), DEMO_AS_OF - timedelta(hours=12)
    _, first = run_cycle(store_fleet, morning, policy)
    assert first.engine is not None and first.engine.persistence_recomputed
    decision, second = run_cycle(store_fleet, noon, policy)  # same day: same anchor
    assert second.engine is not None and second.engine.persistence_recomputed is False
    assert second.records.height == 0  # the store's records were not read
    ledger = load_ledger(replace(store_fleet, ledger=None))
    base = read_history(store_fleet.history)[0]
    _assert_close(decision, decide(ledger, noon, policy, base.decision["weights"], (), base.hash))
    # a record that matured before the anchor, committed late, changes what it learned from
    late = _records([("atlas", "momentum", -20, -500.0, -40.0)], 0, noon)
    _append(store_fleet, late)
    _, third = run_cycle(store_fleet, noon + timedelta(hours=1), policy)
    assert third.engine is not None and third.engine.persistence_recomputed


def test_a_pnl_sum_of_zero_gates_alike_whatever_order_summed_it(store_fleet: Paths) -> None:
    """0.1 + 0.2 − 0.3 is +5.6e-17 summed one way and 0 another: the store's running sums and
    a fresh sum must not disagree on the ``pnl_sum > 0`` gate (a whole position hangs on it)."""
    policy = Policy(profile=Profile.SEED, min_records=1)
    rows = [
        ("zero", "s9", -3, 0.1, 0.0),
        ("zero", "s9", -2, 0.2, 0.0),
        ("zero", "s9", -1, -0.3, 0.0),
    ]
    _append(store_fleet, _records(rows, 0, AS_OFS[0]))
    decision, _ = run_cycle(store_fleet, AS_OFS[0], policy, write=False)
    store = LedgerStore(store_fleet.ledger)
    full = decide(Ledger(store.records(), store.telemetry()), AS_OFS[0], policy)
    assert decision.weights.get("zero", 0.0) == full.weights.get("zero", 0.0) == 0.0
    _assert_close(decision, full)


def test_cycles_after_a_lost_engine_state_record_the_bytes_of_the_warm_path(
    tmp_path: Path,
) -> None:
    """A rebuilt engine state summed in another order than the advanced one, so cycles after a
    lost engine.state recorded other bytes than cycles that kept it (issue #13: a rebuild must
    give the same bytes as the incremental path). Every six hours for two days, one state
    directory keeps its engine and the other loses it before every cycle."""
    warm = _engine_paths(tmp_path, "warm")
    lost = _engine_paths(tmp_path, "lost")
    as_ofs = [DEMO_AS_OF - timedelta(hours=6 * k) for k in range(8, -1, -1)]
    for as_of in as_ofs:
        _, kept = run_cycle(warm, as_of)
        if lost.engine.exists():
            lost.engine.unlink()
            meta_path(lost.engine).unlink()
        _, rebuilt = run_cycle(lost, as_of)
        assert rebuilt.engine is not None and rebuilt.engine.mode == "rebuilt"
        assert kept.engine is not None and kept.engine.mode == (
            "rebuilt" if as_of == as_ofs[0] else "warm"
        )
    assert lost.history.read_bytes() == warm.history.read_bytes()
    assert lost.decision.read_bytes() == warm.decision.read_bytes()


def test_a_warm_cycle_scans_only_the_segments_its_time_ranges_overlap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store appended hourly holds thousands of segments: each range the engine reads
    (entering, leaving, recomputed agents) scans the segments whose bounds overlap it, not
    the whole store. (Under *select*, the default, the cycle also reads the 4-week cadence
    history for its broken-agent cut, every segment of it: this test pins a profile that reads
    only the engine's ranges.)"""
    paths = _store_paths(tmp_path)
    policy = Policy(
        profile=Profile.EVIDENCE,
        lookback_hours=6.0,
        confidence_lookback_hours=6.0,
        cvar_lookback_hours=6.0,
    )
    for day in range(5):
        _append(paths, _records([("a", "s1", -2, 1.0, 0.5)], day, T0 + timedelta(days=day)))
    run_cycle(paths, T0 + timedelta(days=4), policy)
    _append(paths, _records([("a", "s1", 1, 2.0, 0.5)], 9, T0 + timedelta(days=4)))
    scanned: list[str] = []
    original = LedgerStore._scan_segments

    def spy(self, kind, segments):
        if kind == "records":
            scanned.extend(s.path for s in segments)
        return original(self, kind, segments)

    monkeypatch.setattr(LedgerStore, "_scan_segments", spy)
    decision, ledger = run_cycle(paths, T0 + timedelta(days=4, hours=3), policy)
    assert ledger.engine is not None and ledger.engine.mode == "warm"
    records = LedgerStore(paths.ledger).manifest().of("records")
    assert scanned and set(scanned) <= {s.path for s in records[-2:]}
    assert decision.agents["a"]["inputs"]["n_records"] == 2


@pytest.mark.parametrize("profile", [Profile.SELECT, Profile.SEED])
def test_a_rebuild_reads_the_whole_cadence_history_when_it_is_the_longest_window(
    tmp_path: Path, profile: Profile
) -> None:
    """The cadence history (672 h by default) may be longer than every stats window: a state
    rebuilt from the store must count each agent's records over all of it, as the ledger's
    cadence index does (it read only the longest stats window, 48 h here: the daily agents'
    cadence was unknown, the history's first day looking empty, where the ledger gives 1.0
    expected record a day)."""
    paths = _store_paths(tmp_path)
    rng = [((d * 7 + a * 3) % 23 - 11) * 1.5 for d in range(40) for a in range(6)]
    items = [
        ("abcdef"[a], "s1" if a % 2 else "s2", -24 * d, rng[d * 6 + a], 2.0)
        for d in range(40)
        for a in range(6)
    ]
    _append(paths, _records(items, 0, T0))
    policy = Policy(
        profile=profile, lookback_hours=24, confidence_lookback_hours=48, cvar_lookback_hours=48
    )
    store = LedgerStore(paths.ledger)
    frames, run = engine_module.store_frames(
        store, store.manifest(), T0, policy, paths.engine, empty_telemetry(), save=False
    )
    assert run.mode == "rebuilt"
    stats = frames[0]
    index = CadenceIndex.from_records(store.records(), policy.horizon_hours)
    names = stats["agent"].to_list()
    want = index.expected_records(names, T0, policy)
    assert stats["expected_records"].fill_null(np.nan).to_numpy().tobytes() == want.tobytes()
    decision, _ = run_cycle(paths, T0, policy)
    _assert_close(decision, _reference(paths, T0, policy, None, None))


def test_no_pool_thread_waits_for_the_pool(store_fleet: Paths, monkeypatch) -> None:
    """Work on the thread pool never waits for the pool (signals/threads.py): a pool thread
    that did could, with a few cycles at once in one process (the service's requests), leave
    every worker waiting for work queued behind them. Every split forced (two cores, no size
    threshold), a rebuild and a warm cycle of the default profile (the broken cut's medians
    beside the frames, the learned rule's lags, the advance's two halves) call ``run_all`` and
    ``beside`` from the caller's thread only."""
    from meta_supervisor.signals import threads

    monkeypatch.setattr(threads, "MIN_SIZE", 0)
    monkeypatch.setattr(threads, "cores", lambda: 2)
    callers: list[str] = []
    for name in ("run_all", "beside"):
        real = getattr(threads, name)

        def spy(*args, _real=real, **kwargs):
            callers.append(threading.current_thread().name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(threads, name, spy)
    for as_of in AS_OFS[:2]:
        run_cycle(store_fleet, as_of)
    assert callers and not [c for c in callers if c.startswith("meta-supervisor")]


def test_the_engine_state_is_saved_beside_the_decision_and_before_the_commit(
    store_fleet: Paths, monkeypatch
) -> None:
    """A recording cycle decides on the frames while the engine's state is written (the save
    waits on the disk, the decision on nothing it writes): the save is held until the decision
    is taken, so the two ran at once, and the history is appended only once both are done."""
    from meta_supervisor.cycle import run as cycle_run
    from meta_supervisor.signals import threads

    monkeypatch.setattr(threads, "cores", lambda: 2)
    run_cycle(store_fleet, AS_OFS[0])  # a saved state: the next cycle advances it
    decided = threading.Event()
    order: list[str] = []
    real_frames, real_decide, real_append = (
        cycle_run.advanced_frames,
        cycle_run.decide,
        cycle_run.append_history,
    )

    def frames(*args, **kwargs):
        got, run, write = real_frames(*args, **kwargs)

        def held_write() -> None:
            assert threading.current_thread().name.startswith("meta-supervisor")  # the pool
            assert decided.wait(timeout=60), "the decision waited for the save"
            write()
            order.append("saved")
            with pytest.raises(RuntimeError, match="saved already"):
                write()  # a second save would append a journal entry over the first one's

        return got, run, held_write

    def decide_(*args, **kwargs):
        decision = real_decide(*args, **kwargs)
        order.append("decided")
        decided.set()
        return decision

    def append(*args, **kwargs):
        order.append("committed")
        return real_append(*args, **kwargs)

    monkeypatch.setattr(cycle_run, "advanced_frames", frames)
    monkeypatch.setattr(cycle_run, "decide", decide_)
    monkeypatch.setattr(cycle_run, "append_history", append)
    _, ledger = run_cycle(store_fleet, AS_OFS[1])
    assert order == ["decided", "saved", "committed"]
    assert ledger.engine is not None and ledger.engine.saved and ledger.engine.mode == "warm"
    assert ledger.telemetry.height  # read beside the advance, and the ledger's


def test_a_cycle_whose_engine_fails_waits_for_its_telemetry_read(
    store_fleet: Paths, monkeypatch
) -> None:
    """The stats window's telemetry is read on the pool beside the engine's advance: when the
    advance fails, the cycle raises its error once the read finished (no work of a cycle is
    left running after it), and records nothing."""
    from meta_supervisor.cycle import run as cycle_run

    released = threading.Event()
    seen: list[bool] = []
    in_cycle = threading.Event()
    real_runs = cycle_run._store_runs

    def runs(*args, **kwargs):
        assert released.wait(timeout=60)
        got = real_runs(*args, **kwargs)  # a real read, after the engine raised
        seen.append(in_cycle.is_set())
        return got

    def failing_frames(*args, **kwargs):
        released.set()
        raise RuntimeError("the engine failed")

    monkeypatch.setattr(cycle_run, "_store_runs", runs)
    monkeypatch.setattr(cycle_run, "advanced_frames", failing_frames)
    in_cycle.set()
    with pytest.raises(RuntimeError, match="the engine failed"):
        # a profile that learns nothing: the engine's error is raised at once (under select
        # the cycle also waits for the learned value, which gives the read time to finish)
        run_cycle(store_fleet, AS_OFS[0], Policy(profile=Profile.SEED))
    in_cycle.clear()
    assert seen == [True]  # the read ended while the cycle was still waiting for it
    assert not store_fleet.history.exists() and not store_fleet.engine.exists()
