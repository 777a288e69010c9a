"""The allocation step alone (issue 6 target: 10,000 agents under 20 ms).

``python -m benchmarks.bench_allocate [--agents 100 1000 10000] [--runs 7] [--profile seed]``

For each fleet size, the same seeded inputs go through both entry points:

* **dict path**: :func:`meta_supervisor.allocate.core.allocate` on a stats dict per agent (the
  seed's interface), with ``Confidence``/``Tail`` objects, as :func:`cycle_inputs` builds them;
* **frame path**: :func:`meta_supervisor.allocate.core.allocate_frames` on the three polars frames
  the cycle computes (what :func:`meta_supervisor.cycle.run.decide` calls).

Both are timed up to the returned :class:`~meta_supervisor.allocate.decision.Decision` (weights,
cash, portfolio); the explanation and the inputs fingerprint are built on first access, so **JSON**
times ``decision.to_json()`` on a fresh decision: explanations + fingerprint + serialisation.
Every run checks that the two paths give byte-identical JSON. **Peak** is the peak of memory
traced by ``tracemalloc`` (Python and numpy allocations) during one frame-path allocate and
during its ``to_json``, in a run of its own (tracing slows the code down).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from meta_supervisor.allocate.core import allocate, allocate_frames
from meta_supervisor.allocate.decision import Decision
from meta_supervisor.allocate.inputs import Confidence, Tail
from meta_supervisor.cycle.run import frames_to_inputs
from meta_supervisor.policy.model import Policy, Profile

__all__ = ["allocation_frames", "main"]

AS_OF = datetime(2026, 1, 1, tzinfo=UTC)


def allocation_frames(
    n_agents: int, n_strategies: int = 50, seed: int = 1
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, dict[str, float]]:
    """Seeded stats, confidence and tails frames shaped as the cycle's, and previous weights.

    Columns as :func:`meta_supervisor.signals.stats.agent_stats` returns them; 3% of agents have no
    record in the window (null PnL statistics), 5% no telemetry (null error rate), 10% no
    confidence row; 80% had a previous weight.
    """
    rng = np.random.default_rng(seed)
    agents = [f"agent-{i:05d}" for i in range(n_agents)]
    n = rng.integers(2, 400, n_agents)
    stale = rng.random(n_agents) < 0.03
    n[stale] = 0
    mean = rng.normal(0.5, 3.0, n_agents)
    sd = rng.uniform(20.0, 80.0, n_agents)
    no_telemetry = rng.random(n_agents) < 0.05
    last = [AS_OF - timedelta(hours=int(h)) for h in rng.integers(0, 48, n_agents)]

    def nullable(values: np.ndarray, mask: np.ndarray) -> pl.Series:
        return pl.Series(values).set(pl.Series(mask), None)

    stats = pl.DataFrame(
        {
            "agent": agents,
            "strategy": [f"strategy-{i % n_strategies:03d}" for i in range(n_agents)],
            "n_records": n.astype(np.int64),
            "pnl_sum_bps": np.where(stale, 0.0, mean * n),
            "pnl_mean_bps": nullable(mean, stale),
            "pnl_std_bps": nullable(sd, stale),
            "hit_rate": nullable(rng.uniform(0.3, 0.7, n_agents), stale),
            "avg_abs_error_bps": nullable(rng.uniform(5.0, 120.0, n_agents), stale),
            "max_drawdown_bps": np.where(stale, 0.0, -rng.exponential(40.0, n_agents)),
            "last_matured_at": pl.Series(last, dtype=pl.Datetime("us", "UTC")).set(
                pl.Series(stale), None
            ),
            "n_runs": np.where(no_telemetry, 0, rng.integers(1, 50, n_agents)),
            "error_rate": nullable(rng.uniform(0.0, 0.2, n_agents), no_telemetry),
        }
    )
    has_conf = rng.random(n_agents) < 0.9
    confidence = pl.DataFrame(
        {
            "agent": [a for a, h in zip(agents, has_conf, strict=True) if h],
            "confidence": rng.uniform(0.5, 1.0, int(has_conf.sum())),
            "n_evidence": rng.integers(1, 400, int(has_conf.sum())),
            "evidence_weight": rng.uniform(1.0, 100.0, int(has_conf.sum())),
            "error_ratio": rng.uniform(0.3, 2.0, int(has_conf.sum())),
        }
    )
    strategies = sorted({f"strategy-{i % n_strategies:03d}" for i in range(n_agents)})
    k = len(strategies)
    raw = -rng.exponential(30.0, k)
    tails = pl.DataFrame(
        {
            "strategy": strategies,
            "n": rng.integers(5, 5000, k),
            "gap_cvar95_bps": raw,
            "gap_cvar95_used_bps": raw * 0.9,
            "shrunk": rng.random(k) < 0.2,
            "worst_gap": raw * 2,
            "mean_gap": rng.normal(0.0, 5.0, k),
        }
    )
    previous = {a: 1.0 / n_agents for a in agents if rng.random() < 0.8}
    return stats, confidence, tails, previous


def as_dicts(
    stats: pl.DataFrame, confidence: pl.DataFrame, tails: pl.DataFrame, policy: Policy
) -> tuple[dict[str, dict[str, Any]], dict[str, Confidence], dict[str, Tail]]:
    """The frames as :func:`meta_supervisor.cycle.run.cycle_inputs` turns them into dicts."""
    return frames_to_inputs(stats, confidence, tails, policy)


def _median_ms(fn: Callable[[], Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def _peak_mib(fn: Callable[[], Any]) -> tuple[Any, float]:
    gc.collect()
    tracemalloc.start()
    try:
        out = fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return out, peak / 2**20


def bench(n_agents: int, runs: int, profile: Profile) -> dict[str, float]:
    """Medians (ms) of both paths and of ``to_json``, and the traced peaks (MiB)."""
    policy = Policy(profile=profile)
    stats, confidence, tails, previous = allocation_frames(n_agents)
    dicts = as_dicts(stats, confidence, tails, policy)

    def by_dicts() -> Decision:
        agents, conf, tail_map = dicts
        return allocate(
            agents, as_of=AS_OF, policy=policy, confidence=conf, tails=tail_map, previous=previous
        )

    def by_frames() -> Decision:
        return allocate_frames(
            stats, confidence, tails, as_of=AS_OF, policy=policy, previous=previous
        )

    # Timed first, with no explanation alive: 10,000 materialised explanations make every
    # later garbage collection of the process slower, which is not the allocation's cost.
    frame_ms = _median_ms(by_frames, runs)
    dict_ms = _median_ms(by_dicts, runs)
    if by_dicts().to_json() != by_frames().to_json():
        raise SystemExit(f"{n_agents} agents: the dict and frame paths disagree")
    json_times = []
    for _ in range(runs):
        decision = by_frames()
        gc.collect()
        start = time.perf_counter()
        decision.to_json()
        json_times.append(time.perf_counter() - start)
        del decision
    decision, peak_alloc = _peak_mib(by_frames)
    _, peak_json = _peak_mib(decision.to_json)
    return {
        "dict_ms": dict_ms,
        "frame_ms": frame_ms,
        "json_ms": 1e3 * statistics.median(json_times),
        "peak_alloc_mib": peak_alloc,
        "peak_json_mib": peak_json,
    }


def main(argv: list[str] | None = None) -> None:
    """Print the table (Markdown)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, nargs="+", default=[100, 1_000, 10_000])
    parser.add_argument("--runs", type=int, default=7, help="runs per median (default 7)")
    parser.add_argument(
        "--profile", choices=[p.value for p in Profile], nargs="+", default=["seed", "evidence"]
    )
    args = parser.parse_args(argv)
    print(
        "| profile | agents | dict path median | frame path median | JSON (explain + "
        "serialise) | peak MiB allocate / JSON |"
    )
    print("|---|---|---|---|---|---|")
    for profile in args.profile:
        for n in args.agents:
            r = bench(n, args.runs, Profile(profile))
            print(
                f"| {profile} | {n:,} | {r['dict_ms']:.1f} ms | {r['frame_ms']:.1f} ms | "
                f"{r['json_ms']:.0f} ms | {r['peak_alloc_mib']:.1f} / {r['peak_json_mib']:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
