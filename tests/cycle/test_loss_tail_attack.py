"""Attacks on the engine's loss tails (select's broken cut kept in a ring per agent).

The claim under attack: after any sequence of store ingests, cycles, damaged or rolled-back
state files, journal replays, resident engines and rebuilds, a store cycle decides exactly
the bits :func:`meta_supervisor.cycle.run.decide` decides on every record at once, and its
``recent_loss_z`` / ``fleet_vol_ratio`` columns are
:meth:`~meta_supervisor.signals.cadence.CadenceIndex.loss_regime` on every stored record, bit
for bit. Every test goes through the real store path (:func:`run_cycle` on a
:class:`LedgerStore`); ``Checker.cycle`` compares both the decision and the loss columns, and says
whether the engine gave the columns (loss tails) or the cycle read the cadence history.
(NaN is compared as the columns hold it, null: the index's NaN may carry the sign bit.)
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meta_supervisor.config import Paths
from meta_supervisor.cycle import engine as engine_module
from meta_supervisor.cycle import run as run_module
from meta_supervisor.cycle.engine import MAX_LOSS_TAIL, keeps_loss_tails, meta_path
from meta_supervisor.cycle.run import Ledger, decide, run_cycle
from meta_supervisor.ingest.records import RECORD_SCHEMA, empty_quarantine, empty_telemetry
from meta_supervisor.ledger.store import LedgerStore
from meta_supervisor.policy.model import Policy, Profile
from meta_supervisor.signals import broken, journal
from meta_supervisor.signals.broken import MAX_SCALE_RECORDS, records_read
from meta_supervisor.signals.cadence import CadenceIndex, loss_columns
from meta_supervisor.signals.incremental import npz_bytes
from meta_supervisor.state.files import read_history
from meta_supervisor.units import US_PER_HOUR

T0 = datetime(2026, 3, 1, tzinfo=UTC)
US = timedelta(microseconds=1)


def _row(
    rid: int,
    agent: str,
    matured: datetime,
    pnl: float,
    *,
    horizon: int = 24,
    ts: datetime | None = None,
    strategy: str | None = None,
) -> dict:
    return {
        "record_id": f"r{rid:07d}",
        "ts": matured - timedelta(hours=horizon) if ts is None else ts,
        "matured_at": matured,
        "agent": agent,
        "strategy": strategy or f"s{ord(agent[0]) % 3}",
        "horizon_hours": horizon,
        "realized_pnl_bps": pnl,
        "expected_pnl_bps": pnl - 1.0,
        "expected_sigma_bps": 30.0,
        "gap_bps": 1.0,
    }


def _frame(rows: list[dict]) -> pl.DataFrame:
    frame = pl.DataFrame(rows)
    return frame.with_columns(
        [pl.lit(None, dtype=t).alias(c) for c, t in RECORD_SCHEMA.items() if c not in frame.columns]
    ).select([pl.col(c).cast(t) for c, t in RECORD_SCHEMA.items()])


def _store(paths: Paths) -> LedgerStore:
    assert paths.ledger is not None
    return LedgerStore(paths.ledger)


def _append(paths: Paths, rows: list[dict]) -> None:
    store = _store(paths)
    with store.writer():
        store.append(_frame(rows), empty_telemetry(), empty_quarantine())


def _paths(root: Path, name: str = "state") -> Paths:
    return Paths(
        records=root / "none.jsonl",
        telemetry=root / "none-tel.jsonl",
        state_dir=root / name,
        ledger=root / "ledger",
    )


def _noise(seed: int, size: int) -> np.ndarray:
    """t(3)-like PnL (bps) in tenths, with zeros and blow-ups: runs of losses happen."""
    rng = np.random.default_rng(seed)
    pnl = np.round(rng.standard_t(3, size) * 10, 1)
    pnl[rng.random(size) < 0.08] = 0.0
    pnl[rng.random(size) < 0.04] = -300.0
    return pnl


def _hourly(agents: list[str], count: int, end: datetime, first: int, seed: int) -> list[dict]:
    """``count`` hourly records per agent, the last maturing at ``end``."""
    rows = []
    for a, agent in enumerate(agents):
        pnl = _noise(seed + a, count)
        for i in range(count):
            matured = end - timedelta(hours=count - 1 - i)
            rows.append(_row(first + a * count + i, agent, matured, float(pnl[i])))
    return rows


@dataclass
class Seen:
    """How the last checked cycle got its loss columns."""

    mode: str
    reason: str
    read_cadence: bool


class Checker:
    """Runs recording cycles on a store and checks each against the full recompute."""

    def __init__(self, paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
        self.paths = paths
        self.cadence_reads = 0
        original = run_module._store_cadence

        def spy(*args, **kwargs):
            self.cadence_reads += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(run_module, "_store_cadence", spy)

    def cycle(self, as_of: datetime, policy: Policy, *, write: bool = True) -> Seen:
        base = [e for e in read_history(self.paths.history) if e.decision["as_of"] != _iso(as_of)]
        previous = base[-1].decision["weights"] if base else None
        reads = self.cadence_reads
        decision, ledger = run_cycle(self.paths, as_of, policy, write=write)
        assert ledger.engine is not None
        store = _store(self.paths)
        full = Ledger(store.records(), store.telemetry())
        reference = decide(full, as_of, policy, previous, (), base[-1].hash if base else None)
        assert decision.weights == reference.weights
        assert decision.cash == reference.cash
        assert decision.agents == reference.agents
        self.loss_columns(as_of, policy)
        return Seen(ledger.engine.mode, ledger.engine.reason, self.cadence_reads > reads)

    def loss_columns(self, as_of: datetime, policy: Policy) -> None:
        """The engine's cadence columns (a dry load of the saved state, as a cycle reads it)
        are, bit for bit, the full recompute's (``expected_records`` of the frames
        :func:`decide` computes) and, when it keeps the loss tails, ``recent_loss_z`` and
        ``fleet_vol_ratio`` are :meth:`CadenceIndex.loss_regime` on every stored record."""
        store = _store(self.paths)
        frames, _ = engine_module.store_frames(
            store,
            store.manifest(),
            as_of,
            policy,
            self.paths.engine,
            empty_telemetry(),
            save=False,
        )
        stats = frames[0]
        names = stats["agent"].to_list()
        full = Ledger(store.records(), store.telemetry())
        reference = run_module.expected_records(
            run_module.cycle_frames(full, as_of, policy)[0], full, as_of, policy
        )
        assert sorted(reference["agent"].to_list()) == sorted(names)
        for column in ("expected_records", "recent_loss_z", "fleet_vol_ratio"):
            if column not in stats.columns:
                continue
            by_agent = dict(zip(reference["agent"], _bits(reference[column]), strict=True))
            assert _bits(stats[column]) == [by_agent[name] for name in names], column
        if not keeps_loss_tails(policy):
            assert "recent_loss_z" not in stats.columns
            return
        index = CadenceIndex.from_records(store.records(), policy.horizon_hours)
        ledger_columns = loss_columns(*index.loss_regime(names, as_of, policy), len(names))
        for series in ledger_columns:  # NaN is null in the columns (whatever the NaN's sign)
            assert _bits(stats[series.name]) == _bits(series), series.name


def _bits(column: pl.Series) -> list[bytes]:
    """Each value's bits (null as NaN's)."""
    return [v.tobytes() for v in column.cast(pl.Float64).fill_null(np.nan).to_numpy()]


def _iso(moment: datetime) -> str:
    from meta_supervisor.allocate.decision import iso

    return iso(moment)


def _select(**kw: Any) -> Policy:
    values: dict[str, Any] = {
        "profile": Profile.SELECT,
        "lookback_hours": 24.0,
        "cvar_lookback_hours": 48.0,
        "confidence_lookback_hours": 48.0,
        "min_records": 1,
        "cvar_min_samples": 2,
    }
    values.update(kw)
    return Policy(**values)


# --------------------------------------------------------------------------- windows in µs


def _odd_hours() -> float:
    """A cadence history (h) whose µs length ``round(h·3.6e9)`` (the cadence index's) is one
    more than ``timedelta(hours=h)`` (the store's window reads)."""
    h = 616.5231977081944
    assert timedelta(hours=h) // US + 1 == round(h * US_PER_HOUR)
    return h


def test_a_rebuild_reads_the_cadence_history_to_the_microsecond(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cadence index counts records with ``as_of − round(C·3.6e9) µs < matured_at``; a
    rebuild read the store from ``as_of − timedelta(hours=C)``, one µs later for some C: the
    record matured in that µs was in the ledger's cut and not in the rebuilt ring."""
    hours = _odd_hours()
    policy = _select(cadence_history_hours=hours, broken_memory_records=2, broken_consecutive=1)
    paths = _paths(tmp_path)
    check = Checker(paths, monkeypatch)
    as_of = T0
    since = as_of - round(hours * US_PER_HOUR) * US  # the cadence history is (since, as_of]
    rows = [_row(0, "edge", since + US, -900.0)]
    rows += [
        _row(1 + i, "edge", as_of - timedelta(hours=i + 1), (-1) ** i * 4.0) for i in range(14)
    ]
    rows += _hourly(["p", "q"], 20, as_of, 100, 5)
    _append(paths, rows)
    seen = check.cycle(as_of, policy)
    assert seen.mode == "rebuilt" and not seen.read_cadence


@pytest.mark.parametrize("profile", [Profile.SELECT, Profile.SEED])
def test_a_warm_cycle_ends_the_cadence_history_where_the_full_recompute_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, profile: Profile
) -> None:
    """A warm engine counted a record in the cadence history until ``as_of − round(C·3.6e9)``
    µs, the full recompute (and the store's reads) until ``as_of − timedelta(hours=C)``: for a
    C where they differ by a µs, a record matured in that µs was in the warm engine's cut and
    not in the recomputed one (another ``recent_loss_z`` and ``expected_records`` in the
    decision). Under seed both sides take ``expected_records`` from an engine: it must stay
    the full recompute's with the history's length in one definition."""
    hours = _odd_hours()
    policy = _select(
        profile=profile,
        cadence_history_hours=hours,
        broken_memory_records=2,
        broken_consecutive=1,
    )
    paths = _paths(tmp_path)
    check = Checker(paths, monkeypatch)
    edge = T0 - timedelta(days=20)
    rows = [_row(0, "edge", edge, -900.0)]
    rows += [_row(1 + i, "edge", T0 - timedelta(hours=i + 1), (-1) ** i * 4.0) for i in range(14)]
    rows += _hourly(["p", "q"], 20, T0, 100, 5)
    _append(paths, rows)
    # the record sits in the last µs of the history by one definition and not by the other
    as_of = edge + timedelta(hours=hours)
    check.cycle(as_of - timedelta(hours=1), policy)
    for moment in (as_of - US, as_of, as_of + US):
        seen = check.cycle(moment, policy)
        assert seen.mode == "warm" and not seen.read_cadence


# --------------------------------------------------------------------------- any sequence

SMALL_SCALE = 12  # MAX_SCALE_RECORDS here: rings of 12 + R + r − 1 slots wrap within days
AGENTS = ["a", "b", "c", "d", "e", "f"]

burst_st = st.tuples(
    # g and h appear only in later segments
    st.lists(st.sampled_from([*AGENTS, "g", "h"]), min_size=1, max_size=4, unique=True),
    st.integers(1, 25),  # records per agent, hourly
    st.integers(-400, 3),  # first one matured this many hours from as_of (late, or future)
    st.sampled_from([0.0, 0.5, 1.0]),  # the step (h): 0 ties every record of an agent
    st.integers(0, 2**16),
)
op_st = st.one_of(
    st.tuples(st.just("ingest"), burst_st),
    st.tuples(st.just("cycle"), st.sampled_from([0, 1, 5, 30, 200])),
    st.tuples(st.just("dry"), st.just(0)),
    st.tuples(st.just("lose"), st.sampled_from(["state", "journal", "meta"])),
    st.tuples(st.just("snapshot"), st.just(0)),
    st.tuples(st.just("rollback"), st.just(0)),
    st.tuples(st.just("forget"), st.just(0)),
    st.tuples(st.just("policy"), st.integers(0, 2)),
)


def _policies(cadence: float) -> list[Policy]:
    return [
        _select(cadence_history_hours=cadence, broken_memory_records=2, broken_consecutive=2),
        _select(
            cadence_history_hours=cadence,
            broken_memory_records=1,
            broken_consecutive=1,
            broken_regime_relative=False,
            horizon_hours=1,
        ),
        _select(cadence_history_hours=cadence, broken_memory_records=4, broken_consecutive=3),
    ]


def _burst(first: int, burst: tuple, as_of: datetime) -> list[dict]:
    agents, count, offset, step, seed = burst
    rng = np.random.default_rng(seed)
    rows = []
    for k, agent in enumerate(agents):
        pnl = _noise(seed + k, count)
        for i in range(count):
            matured = as_of + timedelta(hours=offset + step * i)
            # records at another horizon, and ties on matured_at with another ts
            horizon = 1 if rng.random() < 0.15 else 24
            ts = matured - timedelta(hours=horizon, minutes=int(rng.integers(0, 2)))
            rows.append(
                _row(first + k * 1000 + i, agent, matured, float(pnl[i]), horizon=horizon, ts=ts)
            )
    return rows


_STATE_FILES = ("engine.state", "engine.json", "engine.journal")


@given(
    cadence=st.sampled_from([20.0, 60.0, 300.0]),
    start=st.integers(0, 90),
    ops=st.lists(op_st, min_size=3, max_size=14),
)
@settings(max_examples=40, deadline=None)
def test_any_sequence_on_the_store_keeps_the_ledgers_broken_cut(
    cadence, start, ops, tmp_path_factory
):
    """Rings that wrap (12 + R + r − 1 slots), journals written every cycle, resident engines,
    rolled-back and lost state files, policies switched (each a rebuild, one at horizon 1 h,
    one with cadence shorter than the stats windows): every cycle and dry run decides as the
    full recompute, and its loss columns are the ledger's."""
    root = tmp_path_factory.mktemp("attack")
    paths = _paths(root)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(broken, "MAX_SCALE_RECORDS", SMALL_SCALE)
        # journal entries (replayed by the next load), not full saves
        patch.setattr(engine_module, "JOURNAL_MIN_BYTES", 0)
        patch.setattr(engine_module, "journal_bound", lambda base: 1 << 30)
        check = Checker(paths, patch)
        policies = _policies(cadence)
        policy = policies[0]
        as_of, index = T0, 0
        # hourly history of every agent (at least one record: the store exists)
        _append(paths, _burst(0, (AGENTS, start + 1, -start, 1.0, start), as_of))
        index = 10_000
        cycled = False
        snapshot: dict[str, bytes] | None = None
        for kind, arg in ops:
            files = {name: paths.state_dir / name for name in _STATE_FILES}
            if kind == "ingest":
                _append(paths, _burst(index, arg, as_of))
                index += 10_000
            elif kind == "cycle":
                as_of += timedelta(hours=arg)
                check.cycle(as_of, policy)
                cycled = True
            elif kind == "dry" and cycled:
                check.cycle(as_of, policy, write=False)
            elif kind == "lose":
                name = {
                    "state": "engine.state",
                    "journal": "engine.journal",
                    "meta": "engine.json",
                }[arg]
                files[name].unlink(missing_ok=True)
            elif kind == "snapshot":
                snapshot = {n: p.read_bytes() for n, p in files.items() if p.exists()}
            elif kind == "rollback" and snapshot is not None:
                for name, path in files.items():
                    path.unlink(missing_ok=True)
                    if name in snapshot:
                        path.write_bytes(snapshot[name])
            elif kind == "forget":
                engine_module.forget_resident()
            elif kind == "policy":
                policy = policies[arg]
        as_of += timedelta(hours=1)
        check.cycle(as_of, policy)


# --------------------------------------------------------------------------- ring sizes


@pytest.mark.parametrize(
    ("memory", "keeps"),
    [(MAX_LOSS_TAIL - MAX_SCALE_RECORDS, True), (MAX_LOSS_TAIL - MAX_SCALE_RECORDS + 1, False)],
    ids=["ring of MAX_LOSS_TAIL", "one record more: the store is read"],
)
def test_the_largest_ring_and_the_first_policy_beyond_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, memory: int, keeps: bool
) -> None:
    """``records_read`` = 8,192 (R = 7,168, r = 1) keeps a ring of 8,192 slots that wraps
    (8,300 hourly records, a late one into a full ring); 8,193 is read from the store each
    cycle. Both decide as the full recompute, the cut known (enough records)."""
    policy = _select(
        cadence_history_hours=24 * 366,
        broken_memory_records=memory,
        broken_consecutive=1,
    )
    assert records_read(policy) == MAX_LOSS_TAIL + (0 if keeps else 1)
    assert keeps_loss_tails(policy) is keeps
    paths = _paths(tmp_path)
    check = Checker(paths, monkeypatch)
    _append(paths, _hourly(["a", "b", "c"], 8300, T0, 0, 3))
    seen = check.cycle(T0, policy)
    assert seen.mode == "rebuilt" and seen.read_cadence is not keeps
    # a late record in the middle of a's full ring, and one more record for b
    _append(
        paths,
        [
            _row(90_000, "a", T0 - timedelta(hours=3, minutes=30), -2_000.0),
            _row(90_001, "b", T0 + timedelta(minutes=30), -2_000.0),
        ],
    )
    seen = check.cycle(T0 + timedelta(hours=1), policy)
    assert seen.mode == "warm" and seen.read_cadence is not keeps
    decision, _ = run_cycle(paths, T0 + timedelta(hours=1), policy, write=False)
    assert all(agent["inputs"]["recent_loss_z"] is not None for agent in decision.agents.values())


def _counted(agent: str, count: int, end: datetime, first: int) -> list[dict]:
    pnl = _noise(first, count)
    return [
        _row(first + i, agent, end - timedelta(hours=count - 1 - i), float(pnl[i]))
        for i in range(count)
    ]


@pytest.mark.parametrize(("memory", "run"), [(1, 1), (2, 2), (5, 3)])
def test_agents_with_one_record_less_than_a_ring_a_ring_and_one_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, memory: int, run: int
) -> None:
    """Agents holding k − 1, k and k + 1 records (k the ring), then one more record each, a
    late one into each ring (older than the ring's first record, and older than the cadence
    history), a tie with each agent's last record (same matured_at and ts, a smaller
    record_id), and as_of moving until each agent's records leave the history one by one."""
    monkeypatch.setattr(broken, "MAX_SCALE_RECORDS", SMALL_SCALE)
    policy = _select(
        cadence_history_hours=60.0, broken_memory_records=memory, broken_consecutive=run
    )
    k = records_read(policy)
    assert k == SMALL_SCALE + memory + run - 1
    paths = _paths(tmp_path)
    check = Checker(paths, monkeypatch)
    rows = _counted("short", k - 1, T0, 0) + _counted("exact", k, T0, 1000)
    rows += _counted("long", k + 1, T0, 2000) + _hourly(["x", "y", "z"], 40, T0, 5000, 9)
    _append(paths, rows)
    assert not check.cycle(T0, policy).read_cadence
    as_of = T0 + timedelta(hours=1)
    _append(
        paths, [_row(7000 + i, a, as_of, -80.0) for i, a in enumerate(["short", "exact", "long"])]
    )
    assert not check.cycle(as_of, policy).read_cadence
    late = []
    for i, agent in enumerate(["short", "exact", "long"]):
        late.append(_row(7100 + i, agent, T0 - timedelta(hours=k + 0.5), -400.0))
        late.append(_row(7200 + i, agent, T0 - timedelta(hours=100), -400.0))
        # a tie with the agent's last record: its id sorts first
        late.append(_row(6000 + i, agent, as_of, 50.0, ts=as_of - timedelta(hours=24)))
    _append(paths, late)
    as_of += timedelta(minutes=1)
    seen = check.cycle(as_of, policy)
    assert seen.mode == "warm" and not seen.read_cadence
    for _ in range(12):
        as_of += timedelta(hours=3)
        assert not check.cycle(as_of, policy).read_cadence


# --------------------------------------------------------------------------- hostile files


def _ringed_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Paths, Checker, Policy]:
    """A store of wrapped rings (12 + 2 slots, 40 hourly records each) with a state saved."""
    monkeypatch.setattr(broken, "MAX_SCALE_RECORDS", SMALL_SCALE)
    policy = _select(cadence_history_hours=60.0, broken_memory_records=2, broken_consecutive=1)
    paths = _paths(tmp_path)
    check = Checker(paths, monkeypatch)
    _append(paths, _hourly(["a", "b", "c", "d", "e", "f"], 40, T0, 0, 11))
    check.cycle(T0, policy)
    return paths, check, policy


def _header(arrays: dict[str, np.ndarray], **changes: int) -> dict[str, np.ndarray]:
    """``arrays`` with ``changes`` made to the state's header."""
    header = json.loads(str(arrays["header"]))
    header.update(changes)
    arrays["header"] = np.array(json.dumps(header))
    return arrays


def _k(arrays: dict[str, np.ndarray]) -> int:
    return int(json.loads(str(arrays["header"]))["loss_k"])


STATE_EDITS = {
    "ring one slot short": lambda a: a.__setitem__("r_ring", a["r_ring"][:-1]),
    "ring 10x long": lambda a: a.__setitem__("r_ring", np.tile(a["r_ring"], 10)),
    "ring as float32": lambda a: a.__setitem__("r_ring", a["r_ring"].astype(np.float32)),
    "ring as a matrix": lambda a: a.__setitem__("r_ring", a["r_ring"].reshape(-1, _k(a))),
    "ring missing": lambda a: a.pop("r_ring"),
    "head one past the ring": lambda a: a["a_rg_head"].__setitem__(0, _k(a)),
    "head negative": lambda a: a["a_rg_head"].__setitem__(1, -1),
    "more held than slots": lambda a: a["a_rg_len"].__setitem__(2, _k(a) + 1),
    "fewer held than counted": lambda a: a["a_rg_len"].__setitem__(3, _k(a) - 1),
    "another ring size": lambda a: _header(a, loss_k=_k(a) + 1),
    "no ring named": lambda a: _header(a, loss_k=0).pop("r_ring"),
}


@pytest.mark.parametrize("edit", list(STATE_EDITS), ids=list(STATE_EDITS))
def test_a_rehashed_state_whose_ring_does_not_fit_is_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edit: str
) -> None:
    """engine.state edited and engine.json re-hashed to match (the hash cannot tell): a ring
    that does not fit the state's counts is refused and the state rebuilt, never a cut read
    from the wrong slots (or a crash)."""
    paths, check, policy = _ringed_store(tmp_path, monkeypatch)
    meta = json.loads(meta_path(paths.engine).read_text())
    assert meta["format"] == 1  # a whole state, no journal
    with np.load(paths.engine, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    assert int(arrays["a_cad_n"][3]) >= _k(arrays)  # the ring is full: k − 1 is too few
    STATE_EDITS[edit](arrays)
    data = npz_bytes(arrays)
    paths.engine.write_bytes(data)
    meta["sha256"] = hashlib.sha256(data).hexdigest()
    meta_path(paths.engine).write_text(json.dumps(meta))
    engine_module.forget_resident()
    _append(paths, [_row(9000, "a", T0 + timedelta(minutes=30), -500.0)])
    seen = check.cycle(T0 + timedelta(hours=1), policy)
    assert seen.mode == "rebuilt" and not seen.read_cadence
    assert "engine.state" in seen.reason or "loss-tail" in seen.reason


def _reframe(paths: Paths, edit) -> None:
    """Edit the journal's last entry (decoded) and write the journal and engine.json back with
    a valid hash chain: only the entry's content can tell."""
    meta = json.loads(meta_path(paths.engine).read_text())
    info = meta["journal"]
    payloads = engine_module._read_journal(engine_module.journal_path(paths.engine), meta, info)
    entry = journal.decode(payloads[-1])
    edit(entry)
    payloads[-1] = journal.encode(entry)
    head, frames = bytes.fromhex(meta["sha256"]), b""
    for payload in payloads:
        frame, head = engine_module._frame(head, payload)
        frames += frame
    engine_module.journal_path(paths.engine).write_bytes(frames)
    meta["journal"] = {"entries": len(payloads), "bytes": len(frames), "head": head.hex()}
    meta_path(paths.engine).write_text(json.dumps(meta))
    engine_module.forget_resident()


def _ring_entry(entry: dict[str, np.ndarray], **parts: np.ndarray) -> dict[str, np.ndarray]:
    """``entry`` with its ring's parts (``w``: the whole ring; ``i``, ``v``, ``n``: rows)
    replaced by ``parts``; none: the ring is dropped from the new image."""
    for part in ("i", "v", "n", "w"):
        entry.pop(f"{part}.r_ring", None)
    entry.update({f"{part}.r_ring": values for part, values in parts.items()})
    if not parts:
        entry["keys"] = np.array([k for k in entry["keys"] if k != "r_ring"], dtype=str)
    return entry


ENTRY_EDITS = {
    "a ring of a million slots": lambda e: _ring_entry(e, w=np.zeros(1_000_000)),
    "a float32 ring": lambda e: _ring_entry(e, w=np.zeros(6 * 14, dtype=np.float32)),
    "a ring with one slot less": lambda e: _ring_entry(e, w=np.zeros(6 * 14 - 1)),
    "rows past the new length": lambda e: _ring_entry(
        e,
        i=np.array([0, 10**7], dtype=np.int64),
        v=np.zeros(2),
        n=np.array(10**7 + 1, dtype=np.int64),
    ),
    "the ring dropped": _ring_entry,
}


@pytest.mark.parametrize("edit", list(ENTRY_EDITS), ids=list(ENTRY_EDITS))
def test_a_hostile_ring_in_a_rechained_journal_entry_is_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, edit: str
) -> None:
    """A journal entry whose ring is oversized, of another type or length, or gone, behind a
    valid hash chain: refused (rebuilt), the decision the full recompute's."""
    monkeypatch.setattr(engine_module, "JOURNAL_MIN_BYTES", 0)
    monkeypatch.setattr(engine_module, "journal_bound", lambda base: 1 << 30)
    paths, check, policy = _ringed_store(tmp_path, monkeypatch)
    _append(
        paths, [_row(9000 + i, a, T0 + timedelta(minutes=30), -50.0) for i, a in enumerate("abc")]
    )
    check.cycle(T0 + timedelta(hours=1), policy)
    meta = json.loads(meta_path(paths.engine).read_text())
    assert meta["format"] == 2 and meta["journal"]["entries"] == 1
    _reframe(paths, ENTRY_EDITS[edit])
    _append(paths, [_row(9100, "d", T0 + timedelta(hours=1, minutes=30), -500.0)])
    seen = check.cycle(T0 + timedelta(hours=2), policy)
    assert seen.mode == "rebuilt" and "unreadable" in seen.reason


# --------------------------------------------------------------------------- policies, time


@pytest.mark.parametrize(("memory", "run"), [(0, 2), (5, 0), (0, 0)])
def test_a_policy_without_the_cut_keeps_no_ring_and_decides_as_the_full_recompute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, memory: int, run: int
) -> None:
    """``broken_memory_records`` or ``broken_consecutive`` 0: no record is read for the cut,
    no ring is kept (the cycle builds the index, whose cut is unknown everywhere)."""
    policy = _select(broken_memory_records=memory, broken_consecutive=run)
    assert records_read(policy) == 0 and not keeps_loss_tails(policy)
    paths = _paths(tmp_path)
    check = Checker(paths, monkeypatch)
    _append(paths, _hourly(["a", "b", "c", "d", "e"], 30, T0, 0, 1))
    check.cycle(T0, policy)
    _append(paths, [_row(500, "a", T0 - timedelta(hours=2.5), -900.0)])
    seen = check.cycle(T0 + timedelta(hours=2), policy)
    assert seen.mode == "warm" and seen.read_cadence
    decision, _ = run_cycle(paths, T0 + timedelta(hours=2), policy, write=False)
    assert all(agent["inputs"]["recent_loss_z"] is None for agent in decision.agents.values())


def test_profile_switches_between_cycles_rebuild_and_decide_as_the_full_recompute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """select (ring), seed and evidence (no ring), select with another R (another ring), back
    to the first: each switch is a rebuild (a resident engine of the previous policy is not
    used), and every cycle is the full recompute's."""
    monkeypatch.setattr(broken, "MAX_SCALE_RECORDS", SMALL_SCALE)
    first = _select(cadence_history_hours=60.0, broken_memory_records=2, broken_consecutive=1)
    sequence = [
        first,
        first.model_copy(update={"profile": Profile.SEED}),
        first.model_copy(update={"profile": Profile.EVIDENCE}),
        _select(cadence_history_hours=60.0, broken_memory_records=5, broken_consecutive=2),
        first,
        first,
    ]
    paths = _paths(tmp_path)
    check = Checker(paths, monkeypatch)
    _append(paths, _hourly(["a", "b", "c", "d", "e", "f"], 50, T0, 0, 21))
    as_of = T0
    for step, policy in enumerate(sequence):
        _append(paths, [_row(1000 + step, "abcdef"[step], as_of - timedelta(hours=7.5), -700.0)])
        as_of += timedelta(hours=1)
        seen = check.cycle(as_of, policy)
        assert seen.mode == ("warm" if step == len(sequence) - 1 else "rebuilt")
        assert seen.read_cadence is False


def test_as_of_jumps_longer_than_the_cadence_history_with_agents_coming_and_going(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A warm state advanced by three cadence histories at once: agents whose every record
    left the history (cut unknown), one that appears with a whole history in one segment, one
    that comes back after the jump, a late record older than the history for a full ring, and
    a record maturing after as_of."""
    monkeypatch.setattr(broken, "MAX_SCALE_RECORDS", SMALL_SCALE)
    policy = _select(cadence_history_hours=30.0, broken_memory_records=3, broken_consecutive=2)
    paths = _paths(tmp_path)
    check = Checker(paths, monkeypatch)
    _append(paths, _hourly(["a", "b", "c", "d", "e", "f"], 40, T0, 0, 31))
    check.cycle(T0, policy)
    later = T0 + timedelta(hours=90)
    rows = _hourly(["new"], 29, later, 5000, 32) + _hourly(["b"], 20, later, 6000, 33)
    rows += _hourly(["c", "d", "e"], 25, later - timedelta(hours=2), 7000, 34)
    rows.append(_row(8000, "c", later - timedelta(hours=40), -900.0))  # older than the history
    rows.append(_row(8001, "d", later + timedelta(hours=1), -900.0))  # after as_of
    _append(paths, rows)
    seen = check.cycle(later, policy)
    assert seen.mode == "warm" and not seen.read_cadence
    decision, _ = run_cycle(paths, later, policy, write=False)
    assert decision.agents["a"]["inputs"]["recent_loss_z"] is None  # gone from the history
    assert decision.agents["new"]["inputs"]["recent_loss_z"] is not None
    for hours in (1, 1, 31):
        later += timedelta(hours=hours)
        assert check.cycle(later, policy).mode == "warm"


def test_a_chunked_rebuild_lays_the_rings_of_a_one_shot_rebuild(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rebuild in chunks of 7 records (the rings laid across dozens of advances, stale
    agents entering the first chunk) decides as the full recompute, as a one-shot one."""
    monkeypatch.setattr(broken, "MAX_SCALE_RECORDS", SMALL_SCALE)
    policy = _select(cadence_history_hours=50.0, broken_memory_records=2, broken_consecutive=2)
    paths = _paths(tmp_path)
    check = Checker(paths, monkeypatch)
    _append(paths, _hourly(["a", "b", "c", "d"], 60, T0, 0, 41))
    _append(paths, [_row(900, "old", T0 - timedelta(hours=70), -5.0)])  # stale: one record
    monkeypatch.setattr(engine_module, "CHUNK_ROWS", 7)
    seen = check.cycle(T0, policy)
    assert seen.mode == "rebuilt" and not seen.read_cadence


@pytest.mark.parametrize("full", [False, True], ids=["rings not full", "full rings"])
def test_non_finite_pnl_in_the_store_is_cut_as_the_ledger_cuts_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, full: bool
) -> None:
    """Ingest refuses a PnL that is not finite; a store appended to directly may hold NaN and
    ±inf (and −0.0, ties of 0.0): the ring holds them as the index does (the same NaN, the
    same inf, bit for bit), full rings (read as they lie) and rings not full alike."""
    if full:
        monkeypatch.setattr(broken, "MAX_SCALE_RECORDS", SMALL_SCALE)
    policy = _select(broken_memory_records=2, broken_consecutive=1)
    paths = _paths(tmp_path)
    check = Checker(paths, monkeypatch)
    rows = _hourly(["a", "b", "c", "d", "e"], 40, T0, 0, 3)
    for i in range(120, 200, 3):
        rows[i]["realized_pnl_bps"] = -0.0 if i % 2 else 0.0
    rows[5]["realized_pnl_bps"] = math.nan
    rows[45]["realized_pnl_bps"] = math.inf
    rows[46]["realized_pnl_bps"] = -math.inf
    _append(paths, rows)
    check.cycle(T0, policy)
    late = [
        _row(999, "a", T0 + timedelta(minutes=5), math.nan),
        _row(998, "b", T0 - timedelta(minutes=5), -math.inf),
    ]
    _append(paths, late)
    seen = check.cycle(T0 + timedelta(hours=1), policy)
    assert seen.mode == "warm" and not seen.read_cadence


def test_records_from_1970_for_a_full_ring_and_for_a_new_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record from January 1970 arriving late for an agent whose ring is full (laid again
    from the cadence history alone), and as the only record of a new agent (in the universe,
    its ring holding a record no cut reads), which then reports hourly."""
    monkeypatch.setattr(broken, "MAX_SCALE_RECORDS", SMALL_SCALE)
    policy = _select(cadence_history_hours=40.0, broken_memory_records=2, broken_consecutive=2)
    paths = _paths(tmp_path)
    check = Checker(paths, monkeypatch)
    _append(paths, _hourly(["a", "b", "c", "d", "e"], 45, T0, 0, 51))
    check.cycle(T0, policy)
    ancient = datetime(1970, 1, 3, tzinfo=UTC)
    _append(paths, [_row(900, "a", ancient, -999.0), _row(901, "ancient", ancient, -999.0)])
    as_of = T0 + timedelta(hours=1)
    seen = check.cycle(as_of, policy)
    assert seen.mode == "warm" and not seen.read_cadence
    _append(paths, _hourly(["ancient"], 20, as_of + timedelta(hours=20), 1000, 52))
    for _ in range(3):
        as_of += timedelta(hours=10)
        assert check.cycle(as_of, policy).mode == "warm"
    decision, _ = run_cycle(paths, as_of, policy, write=False)
    assert decision.agents["ancient"]["inputs"]["recent_loss_z"] is not None


# hours whose µs length timedelta(hours=h) rounds below round(h·3.6e9), above it, and exact
ODD_HOURS = [242.17535724208332, 147.82805671541666, 30.409710386805557, 136.97896894569445, 48.0]


@given(
    windows=st.tuples(*[st.sampled_from(ODD_HOURS)] * 4),
    profile=st.sampled_from([Profile.SELECT, Profile.SEED]),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=10, deadline=None)
def test_records_on_every_windows_microsecond_bounds(windows, profile, seed, tmp_path_factory):
    """Every window (stats, CVaR, confidence, cadence) of a length that is no whole number of
    µs, records matured one µs either side of each of its possible bounds, cycles one µs
    apart across them and a rebuild: each decides as the full recompute (the first version of
    the loss tails failed 10 draws in 40 of this, at the cadence history's bound)."""
    lookback, cvar, confidence, cadence = windows
    policy = _select(
        profile=profile,
        lookback_hours=lookback,
        cvar_lookback_hours=cvar,
        confidence_lookback_hours=confidence,
        cadence_history_hours=cadence,
        confidence_half_life_hours=100.0,
        broken_memory_records=2,
        broken_consecutive=1,
    )
    paths = _paths(tmp_path_factory.mktemp("bounds"))
    as_of = T0 + timedelta(days=30)
    rng = np.random.default_rng(seed)
    rows = _hourly(["p", "q", "r"], 30, as_of - timedelta(hours=1), 100, seed)
    for hours in windows:
        for bound in {timedelta(hours=hours) // US, round(hours * US_PER_HOUR)}:
            for d in (-1, 0, 1):
                pnl = float(rng.choice([-900.0, 5.0, -3.0, 7.0]))
                rows.append(
                    _row(1000 + len(rows), f"edge{len(rows) % 3}", as_of - (bound + d) * US, pnl)
                )
    for k in range(3):  # enough records for each edge agent's cut
        rows += [
            _row(
                5000 + 100 * k + j, f"edge{k}", as_of - timedelta(hours=j + 0.5), 4.0 - 8 * (j % 2)
            )
            for j in range(15)
        ]
    _append(paths, rows)
    with pytest.MonkeyPatch.context() as patch:
        check = Checker(paths, patch)
        check.cycle(as_of - timedelta(hours=2), policy)
        for moment in (as_of - US, as_of, as_of + US):
            assert check.cycle(moment, policy).mode == "warm"
        paths.engine.unlink()
        engine_module.forget_resident()
        assert check.cycle(as_of + 2 * US, policy).mode == "rebuilt"


# --------------------------------------------------------------------------- found on the way


def test_evidence_with_a_lookback_of_tiny_buckets_decides_on_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The evidence profile keeps per-(agent, bucket) cells of width gcd(H, L) µs: a lookback
    of 168.0002 h makes that 0.72 s, 3.2M buckets over its range (168.0000001 h: 360 µs, 6.5
    billion), and the store cycle listed every bucket to build their cells (MemoryError for
    the second, found by the µs-bounds probe above) where the full recompute decides at once.
    Past ``learned.MAX_BUCKETS`` buckets the strength is computed from the range's records."""
    from meta_supervisor.cycle import learned

    policy = Policy(profile=Profile.EVIDENCE, lookback_hours=168.0002, min_records=1)
    paths = _paths(tmp_path)
    check = Checker(paths, monkeypatch)
    listed: list[int] = []
    original = learned._bucket_cells

    def spy(store, manifest, policy, buckets, chunk):
        listed.append(len(buckets))
        assert len(buckets) <= 1_000_000, f"{len(buckets)} buckets listed"
        return original(store, manifest, policy, buckets, chunk)

    monkeypatch.setattr(learned, "_bucket_cells", spy)
    rows = [
        _row(k * 1000 + i, agent, T0 - timedelta(hours=7 * i + k), float(_noise(k, 60)[i]))
        for k, agent in enumerate(["a", "b", "c"])
        for i in range(60)
    ]
    _append(paths, rows)
    check.cycle(T0, policy)
    _append(paths, [_row(9000, "a", T0 - timedelta(hours=50), -300.0)])  # late
    check.cycle(T0 + timedelta(days=1), policy)
    check.cycle(T0 + timedelta(days=1, hours=5), policy)
