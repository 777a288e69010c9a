"""One supervisor cycle: ledger -> stats, confidence, tails -> allocate -> state.

:func:`decide` is pure (frames and ``as_of`` in, decision out): the backtest and the live cycle
both call it. :func:`run_cycle` adds the edges: reading files, the clock, the lock and the
state writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import polars as pl

from meta_supervisor import overrides as overrides_file
from meta_supervisor.allocate import Confidence, Override, Tail, allocate
from meta_supervisor.confidence import confidence_multipliers
from meta_supervisor.config import Paths
from meta_supervisor.decision import Decision, canonical_json
from meta_supervisor.policy import Policy, load_policy
from meta_supervisor.records import dedupe_records, empty_quarantine
from meta_supervisor.sources import read_records, read_telemetry
from meta_supervisor.state import StateLock, append_history, atomic_write_text, read_history
from meta_supervisor.stats import agent_stats
from meta_supervisor.tails import strategy_tails

__all__ = [
    "Ledger",
    "commit",
    "cycle_inputs",
    "decide",
    "load_ledger",
    "load_overrides",
    "load_previous",
    "run_cycle",
]


@dataclass
class Ledger:
    """Validated, de-duplicated records and telemetry, plus what was refused."""

    records: pl.DataFrame
    telemetry: pl.DataFrame
    quarantine: pl.DataFrame = field(default_factory=empty_quarantine)
    read: int = 0
    duplicates: int = 0

    @property
    def refused(self) -> int:
        """Rows or lines refused (each listed in ``quarantine``)."""
        return self.quarantine.height


def load_ledger(paths: Paths) -> Ledger:
    """Read records and telemetry from ``paths`` (missing files are empty), de-duplicated."""
    rec = read_records(paths.records)
    tel = read_telemetry(paths.telemetry)
    records, duplicates = dedupe_records(rec.records)
    telemetry = tel.records.unique(maintain_order=True)
    return Ledger(
        records=records,
        telemetry=telemetry,
        quarantine=pl.concat([rec.quarantine, tel.quarantine]),
        read=rec.read + tel.read,
        duplicates=duplicates + (tel.records.height - telemetry.height),
    )


def cycle_inputs(
    ledger: Ledger, as_of: datetime, policy: Policy
) -> tuple[dict[str, dict[str, Any]], dict[str, Confidence], dict[str, Tail]]:
    """Stats dicts per agent, confidence per agent and tails per strategy, as of ``as_of``."""
    stats = agent_stats(ledger.records, ledger.telemetry, as_of, policy)
    conf = confidence_multipliers(ledger.records, as_of, policy)
    tails = strategy_tails(ledger.records, as_of, policy)
    agent_rows = {row["agent"]: row for row in stats.iter_rows(named=True)}
    confidence = {
        row["agent"]: Confidence(
            multiplier=row["confidence"],
            n_evidence=row["n_evidence"],
            evidence_weight=row["evidence_weight"],
            error_ratio=row["error_ratio"],
        )
        for row in conf.iter_rows(named=True)
    }
    tail_map = {
        row["strategy"]: Tail(
            strategy=row["strategy"],
            n=row["n"],
            gap_cvar95_bps=row["gap_cvar95_bps"],
            gap_cvar95_used_bps=row["gap_cvar95_used_bps"],
            shrunk=row["shrunk"],
            worst_gap=row["worst_gap"],
            mean_gap=row["mean_gap"],
            window_hours=policy.cvar_lookback_hours,
        )
        for row in tails.iter_rows(named=True)
    }
    return agent_rows, confidence, tail_map


def decide(
    ledger: Ledger,
    as_of: datetime,
    policy: Policy,
    previous: dict[str, float] | None = None,
    overrides: list[Override] | tuple[Override, ...] = (),
    previous_hash: str | None = None,
) -> Decision:
    """The pure cycle: ledger as of ``as_of`` -> decision (nothing after ``as_of`` is seen)."""
    stats, confidence, tails = cycle_inputs(ledger, as_of, policy)
    return allocate(
        stats,
        as_of=as_of,
        policy=policy,
        confidence=confidence,
        tails=tails,
        previous=previous,
        overrides=overrides,
        previous_hash=previous_hash,
    )


def load_overrides(paths: Paths) -> list[Override]:
    """Operator overrides from ``overrides.json`` (see :mod:`meta_supervisor.overrides`)."""
    return overrides_file.load_overrides(paths.overrides)


def load_previous(paths: Paths) -> tuple[dict[str, float] | None, str | None]:
    """The last committed decision's weights and its chain hash, from the history."""
    entries = read_history(paths.history)
    if not entries:
        return None, None
    last = entries[-1]
    return {k: float(v) for k, v in last.decision.get("weights", {}).items()}, last.hash


def commit(decision: Decision, paths: Paths) -> str:
    """Record ``decision``: history first (the commit point), then the current files.

    Returns the history entry's hash.
    """
    entry = append_history(paths.history, decision)
    atomic_write_text(paths.decision, decision.to_json())
    atomic_write_text(paths.allocation, canonical_json(decision.weights, indent=2))
    return entry.hash


def run_cycle(
    paths: Paths,
    as_of: datetime | None = None,
    policy: Policy | None = None,
    *,
    write: bool = True,
    lock_timeout_s: float = 0.0,
) -> tuple[Decision, Ledger]:
    """Read, decide and (unless ``write=False``) record one cycle under the state lock."""
    policy = policy or load_policy(paths.policy)
    as_of = as_of or datetime.now(UTC)
    ledger = load_ledger(paths)
    if not write:
        previous, prev_hash = load_previous(paths)
        return decide(ledger, as_of, policy, previous, load_overrides(paths), prev_hash), ledger
    with StateLock(paths.lock, lock_timeout_s):
        previous, prev_hash = load_previous(paths)
        decision = decide(ledger, as_of, policy, previous, load_overrides(paths), prev_hash)
        commit(decision, paths)
    return decision, ledger
