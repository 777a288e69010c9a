"""The benchmark cases. Each runs in a fresh process (see :mod:`benchmarks.child`).

A case is a function ``(spec, options) -> dict`` that does its untimed setup, then times the work
it measures and returns ``{"seconds": float, ...}`` (extra keys: sub-timings, notes).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from benchmarks.data import AS_OF, DATA_DIR, NEEDED, LedgerSpec, appended_records, ensure_ledger
from meta_supervisor.allocate.core import allocate
from meta_supervisor.allocate.inputs import Confidence, Tail
from meta_supervisor.cycle.run import (
    Ledger,
    cycle_inputs,
    decide,
    expected_records,
    frames_to_inputs,
)
from meta_supervisor.policy.model import Policy, Profile
from meta_supervisor.signals.confidence import confidence_multipliers
from meta_supervisor.signals.incremental import frames_at
from meta_supervisor.signals.stats import agent_stats
from meta_supervisor.signals.tails import strategy_tails
from meta_supervisor.state.files import atomic_write_bytes

__all__ = ["CASES", "bench_policy"]

Options = dict[str, Any]
APPEND_N = 10_000


def bench_policy(spec: LedgerSpec, profile: Profile = Profile.SEED) -> Policy:
    """The issue's setting: every record of the ledger inside every window.

    The seed profile by default: these cases measure the statistics engine and the cycle around
    it. The ``evidence`` profile adds its learned strength, once per anchor (a day):
    ``store_append_evidence`` measures a cycle that reuses it, and ``persistence`` the daily
    recomputation.
    """
    hours = 24.0 * (spec.days + 1)
    return Policy(
        profile=profile,
        lookback_hours=hours,
        cvar_lookback_hours=hours,
        confidence_lookback_hours=hours,
    )


def _read(path: Path, columns: list[str] | None = None) -> pl.DataFrame:
    """The ``columns`` of a Parquet file, ``record_id`` read on its own: polars reads the
    benchmark ledger's nine needed columns (1M-row row groups, 10M records) in 0.73 s in one
    read and 0.39 s in two (measured with polars 2.1; the store's 64k-row segments read alike
    either way). The same frame, columns in the order asked."""
    if columns is None or "record_id" not in columns or len(columns) == 1:
        return pl.read_parquet(path, columns=columns)
    rest = pl.read_parquet(path, columns=[c for c in columns if c != "record_id"])
    ids = pl.read_parquet(path, columns=["record_id"]).to_series()
    return rest.with_columns(ids).select(columns)


# ---------------------------------------------------------------- reference points


def case_floor(spec: LedgerSpec, options: Options) -> dict[str, Any]:
    """The floor: a pyarrow read of the needed columns + one NumPy pass over them."""
    import pyarrow.parquet  # noqa: F401  (imported before the clock starts)

    from benchmarks.baseline import floor_pass

    records_path, _ = ensure_ledger(spec)
    policy = bench_policy(spec)
    start = time.perf_counter()
    out = floor_pass(records_path, AS_OF, policy.lookback_hours)
    assert int(out["n"].sum()) == spec.n_records
    return {"seconds": time.perf_counter() - start}


def case_polars(spec: LedgerSpec, options: Options) -> dict[str, Any]:
    """The best plain implementation: polars read + stats, confidence, tails (no allocation)."""
    from benchmarks.baseline import polars_confidence, polars_stats, polars_tails, read_plain

    records_path, telemetry_path = ensure_ledger(spec)
    policy = bench_policy(spec)
    t0 = time.perf_counter()
    records = read_plain(records_path)
    telemetry = pl.read_parquet(telemetry_path, columns=["ts", "agent", "is_error"])
    t1 = time.perf_counter()
    polars_stats(records, telemetry, AS_OF, policy, records_path)
    t2 = time.perf_counter()
    polars_confidence(records, AS_OF, policy)
    t3 = time.perf_counter()
    polars_tails(records, AS_OF, policy)
    t4 = time.perf_counter()
    return {
        "seconds": t4 - t0,
        "read": t1 - t0,
        "stats": t2 - t1,
        "confidence": t3 - t2,
        "tails": t4 - t3,
    }


def case_check(spec: LedgerSpec, options: Options) -> dict[str, Any]:
    """Assert that the product and the plain polars baseline compute the same numbers, on the
    cycle's path (``frames_at``: the engine in time chunks) and on the product's polars forms
    of the same formulas (``agent_stats``, ``confidence_multipliers``, ``strategy_tails``)."""
    from benchmarks.baseline import check_close, polars_cycle_frames

    records_path, telemetry_path = ensure_ledger(spec)
    policy = bench_policy(spec)
    records, telemetry = _read(records_path, NEEDED), _read(telemetry_path)
    stats_b, conf_b, tails_b = polars_cycle_frames(records_path, telemetry_path, AS_OF, policy)
    products = {
        "polars forms": (
            agent_stats(records, telemetry, AS_OF, policy),
            confidence_multipliers(records, AS_OF, policy),
            strategy_tails(records, AS_OF, policy),
        ),
        "cycle": frames_at(records, telemetry, AS_OF, policy),
    }
    checked = 0
    for path, (stats, conf, tails) in products.items():
        # every statistic the baseline computes (agent and strategy are checked below)
        for col in (c for c in stats_b.columns if c not in ("agent", "strategy")):
            checked += check_close(f"{path} {col}", stats, stats_b, "agent", col)
        same = stats.select("agent", "strategy").join(
            stats_b.select("agent", pl.col("strategy").alias("b")), on="agent"
        )
        if same.height != stats.height or not (same["strategy"] == same["b"]).all():
            raise AssertionError(f"{path}: strategy per agent differs")
        checked += same.height
        checked += check_close(f"{path} confidence", conf, conf_b, "agent", "confidence")
        checked += check_close(f"{path} cvar", tails, tails_b, "strategy", "gap_cvar95_bps")
    return {"seconds": 0.0, "checked": checked}


# ---------------------------------------------------------------- the product


def _allocate(stats: Any, conf: Any, tails: Any, policy: Policy, as_of: datetime) -> Any:
    return allocate(stats, as_of=as_of, policy=policy, confidence=conf, tails=tails)


def case_cycle(spec: LedgerSpec, options: Options) -> dict[str, Any]:
    """Full cycle from the Parquet file: read the needed columns, the cycle's frames
    (``cycle_frames``: the incremental engine built once over the records in time chunks, and
    each agent's cadence), the dicts ``allocate`` takes, allocate."""
    records_path, telemetry_path = ensure_ledger(spec)
    policy = bench_policy(spec)
    t0 = time.perf_counter()
    ledger = Ledger(records=_read(records_path, NEEDED), telemetry=_read(telemetry_path))
    t1 = time.perf_counter()
    frames = frames_at(ledger.records, ledger.telemetry, AS_OF, policy)
    t2 = time.perf_counter()
    stats = expected_records(frames[0], ledger, AS_OF, policy)
    t3 = time.perf_counter()
    inputs = frames_to_inputs(stats, frames[1], frames[2], policy)
    t4 = time.perf_counter()
    decision = _allocate(*inputs, policy, AS_OF)
    t5 = time.perf_counter()
    assert decision.weights, "the benchmark fleet should get some capital"
    return {
        "seconds": t5 - t0,
        "read": t1 - t0,
        "engine": t2 - t1,
        "cadence": t3 - t2,
        "inputs": t4 - t3,
        "allocate": t5 - t4,
    }


def case_append_full(spec: LedgerSpec, options: Options) -> dict[str, Any]:
    """Cycle after appending 10,000 records, recomputed from scratch (no incremental state)."""
    records_path, telemetry_path = ensure_ledger(spec)
    policy = bench_policy(spec)
    segment = _append_segment(spec)
    as_of = AS_OF + timedelta(hours=1)
    start = time.perf_counter()
    records = pl.concat([_read(records_path, NEEDED), _read(segment, NEEDED)])
    ledger = Ledger(records=records, telemetry=_read(telemetry_path))
    _allocate(*cycle_inputs(ledger, as_of, policy), policy, as_of)
    return {"seconds": time.perf_counter() - start}


def _append_segment(spec: LedgerSpec) -> Path:
    """The 10,000 appended records (maturing in the hour after the ledger), as a segment file."""
    path = DATA_DIR / f"append-{spec.key()}-{APPEND_N}.parquet"
    if not path.exists():
        appended_records(spec, APPEND_N, AS_OF, 1.0).write_parquet(path)
    return path


def _inputs_from_frames(
    stats: pl.DataFrame, conf: pl.DataFrame, tails: pl.DataFrame, policy: Policy
) -> tuple[dict[str, Any], dict[str, Confidence], dict[str, Tail]]:
    """The dicts :func:`allocate` takes, built as :func:`cycle_inputs` builds them."""
    return frames_to_inputs(stats, conf, tails, policy)


def case_append(spec: LedgerSpec, options: Options) -> dict[str, Any]:
    """Cycle after appending 10,000 records, from the incremental state saved by the last cycle.

    Timed: load the state file (binary ``.npz``), read the records that matured since (the new
    segment; the base file's row groups are skipped by their matured_at statistics), update,
    build the frames, decide (``cycle.decide`` on the frames, the live path), save the state.
    """
    from meta_supervisor.signals.incremental import IncrementalStats

    records_path, telemetry_path = ensure_ledger(spec)
    policy = bench_policy(spec)
    segment = _append_segment(spec)
    state_path = DATA_DIR / f"state-{spec.key()}" / "incremental.npz"
    base = IncrementalStats(policy)
    base.advance(_read(records_path, NEEDED), AS_OF)
    atomic_write_bytes(state_path, base.to_bytes())
    del base
    as_of = AS_OF + timedelta(hours=1)
    start = time.perf_counter()
    inc = IncrementalStats.from_bytes(state_path.read_bytes(), policy)
    t_load = time.perf_counter()
    ledger = pl.scan_parquet([records_path, segment]).select(NEEDED)
    inc.advance(ledger, as_of)
    t_advance = time.perf_counter()
    frames = inc.frames(_read(telemetry_path))
    t_frames = time.perf_counter()
    decide(Ledger(records=pl.DataFrame(), telemetry=pl.DataFrame()), as_of, policy, frames=frames)
    t_alloc = time.perf_counter()
    atomic_write_bytes(state_path, inc.to_bytes())
    end = time.perf_counter()
    return {
        "seconds": end - start,
        "load_state": t_load - start,
        "advance": t_advance - t_load,
        "frames": t_frames - t_advance,
        "allocate": t_alloc - t_frames,
        "save_state": end - t_alloc,
    }


def case_backtest(spec: LedgerSpec, options: Options) -> dict[str, Any]:
    """The product's ``backtest.run_backtest``: hourly rebalances over the ledger's last
    ``cycles`` hours, default profile only, no baselines, no progress bar.

    Timed: reading the ledger (the needed columns) and the whole ``run_backtest`` call (it
    codes the ledger once as NumPy columns, advances one incremental state per cycle on them,
    decides every cycle and books the period PnL); ``run_backtest_cpu`` is that call's CPU time
    (every thread of the process), which a loaded machine inflates less than the wall time.
    """
    from meta_supervisor.research.backtest import run_backtest

    records_path, telemetry_path = ensure_ledger(spec)
    policy = bench_policy(spec)
    cycles = int(options.get("cycles", 24 * spec.days))
    first = AS_OF - timedelta(hours=cycles)
    start = time.perf_counter()
    ledger = Ledger(records=_read(records_path, NEEDED), telemetry=_read(telemetry_path))
    read = time.perf_counter() - start
    cpu = time.process_time()  # every thread of this process: the CPU the loop took
    # rebalances at first + k hours for k = 0 .. cycles − 1 (t_k + 1 h <= AS_OF)
    result = run_backtest(
        ledger,
        first,
        AS_OF,
        every_hours=1.0,
        policy=policy,
        profiles=[policy.profile],
        baseline_names=[],
        warmup_hours=0.0,
        progress=False,
    )
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu
    assert len(result.times) == cycles, (len(result.times), cycles)
    gross = result.methods[policy.profile.value].weights.sum(axis=1)
    return {
        "seconds": seconds,
        "read": read,
        "run_backtest": seconds - read,
        "run_backtest_cpu": cpu,
        "cycles": cycles,
        "per_cycle": (seconds - read) / cycles,
        "mean_gross": f"{gross.mean():.4f}",  # (text: not a timing)
    }


# ---------------------------------------------------------------- allocation alone


def allocation_inputs(
    n_agents: int, n_strategies: int = 50, seed: int = 1
) -> tuple[dict[str, dict[str, Any]], dict[str, Confidence], dict[str, Tail], dict[str, float]]:
    """Synthetic stats, confidence, tails and previous weights for ``n_agents`` agents."""
    rng = np.random.default_rng(seed)
    names = [f"agent-{i:05d}" for i in range(n_agents)]
    strategies = [f"strategy-{i % n_strategies:03d}" for i in range(n_agents)]
    pnl = rng.normal(50.0, 200.0, n_agents)
    stats = {
        name: {
            "agent": name,
            "strategy": strategies[i],
            "n_records": int(rng.integers(0, 400)),
            "pnl_sum_bps": float(pnl[i]),
            "hit_rate": float(rng.uniform(0.3, 0.7)),
            "avg_abs_error_bps": float(rng.uniform(5.0, 120.0)),
            "max_drawdown_bps": float(-rng.exponential(40.0)),
            "error_rate": float(rng.uniform(0.0, 0.2)),
        }
        for i, name in enumerate(names)
    }
    conf = {
        name: Confidence(float(rng.uniform(0.5, 1.0)), 100, 50.0, 1.0)
        for name in names
        if rng.random() < 0.9
    }
    tails = {
        s: Tail(s, 500, float(-rng.exponential(30.0)), float(-rng.exponential(30.0)))
        for s in sorted(set(strategies))
    }
    previous = {name: 1.0 / n_agents for name in names if rng.random() < 0.8}
    return stats, conf, tails, previous


def case_allocate(spec: LedgerSpec, options: Options) -> dict[str, Any]:
    """The allocation step alone for ``options['agents']`` agents (10,000), with a previous
    decision, as the cycle runs it: :func:`allocate_frames` on the three frames (default
    profile). The dict path (:func:`allocate`, the seed's API) is timed too, as a sub-timing."""
    from benchmarks.bench_allocate import allocation_frames, as_dicts
    from meta_supervisor.allocate.core import allocate_frames

    policy = Policy()
    stats, conf, tails, previous = allocation_frames(int(options.get("agents", 10_000)))
    dicts = as_dicts(stats, conf, tails, policy)
    as_of = datetime(2026, 1, 1, tzinfo=UTC)
    agents, confidence, tail_map = dicts

    def timed(fn: Callable[[], Any]) -> float:
        gc.collect()  # the previous call's garbage is not this call's cost
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    def frames() -> Any:
        return allocate_frames(stats, conf, tails, as_of=as_of, policy=policy, previous=previous)

    def by_dicts() -> Any:
        return allocate(
            agents, as_of=as_of, policy=policy, confidence=confidence, tails=tail_map,
            previous=previous,
        )  # fmt: skip

    # the first call in a process pays one-off costs (lazy imports, caches): reported apart;
    # the case's time is the median of the next five, as a long-running supervisor sees it
    first = timed(frames)
    frame_s = float(np.median([timed(frames) for _ in range(5)]))
    dict_s = float(np.median([timed(by_dicts) for _ in range(5)]))
    return {"seconds": frame_s, "first_call": first, "dict_path": dict_s}


def case_ledger_setup(spec: LedgerSpec, options: Options) -> dict[str, Any]:
    """Not a measurement: write the cached ledger files (in a process of their own: Linux keeps
    a process's peak RSS across fork and exec, so a driver that generated 30M records itself
    gave every later case its 7 GiB as a peak)."""
    start = time.perf_counter()
    ensure_ledger(spec)
    return {"seconds": time.perf_counter() - start}


CASES: dict[str, Callable[[LedgerSpec, Options], dict[str, Any]]] = {
    "ledger_setup": case_ledger_setup,
    "check": case_check,
    "floor": case_floor,
    "polars": case_polars,
    "cycle": case_cycle,
    "append_full": case_append_full,
    "append": case_append,
    "backtest": case_backtest,
    "allocate": case_allocate,
}


def _store_cases() -> None:
    from benchmarks.store_cases import STORE_CASES

    CASES.update(STORE_CASES)


_store_cases()
