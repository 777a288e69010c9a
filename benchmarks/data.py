"""A seeded, vectorised generator of a synthetic ledger for the benchmarks.

The ledger: ``n_records`` reconciled records from ``n_agents`` agents (``agent % n_strategies``
gives the strategy), all at horizon 24 h, signal times uniform over ``days`` days so that every
record matures inside ``(as_of − days, as_of]`` with ``as_of`` = :data:`AS_OF`. Per agent a
skill ``μ_a ~ N(0.3, 1.5)`` bps; ``realized ~ N(μ_a, 40)``, ``expected = μ_a + N(0, 8)``;
``expected_sigma_bps`` is 25-60 bps for 70% of records and null for the rest (so both branches
of the confidence scale run). A few agents per strategy get fat left tails (the CVaR case).

Written as Parquet, sorted by ``matured_at`` (a ledger is appended in time), to
``bench-data/records-<key>.parquet`` with the parameters' hash as ``<key>``; reused while the
parameters are unchanged, so a second run costs nothing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from meta_supervisor.ingest.records import RECORD_SCHEMA, TELEMETRY_SCHEMA
from meta_supervisor.signals.incremental import COLUMNS

__all__ = ["AS_OF", "DATA_DIR", "LedgerSpec", "appended_records", "ensure_ledger", "make_records"]

AS_OF = datetime(2026, 1, 1, tzinfo=UTC)
DATA_DIR = Path("bench-data")
GENERATOR_VERSION = 2  # bump when the generator's output changes

# Columns the cycle reads (stats, confidence, tails); the rest of the schema is not written.
NEEDED = list(COLUMNS)


@dataclass(frozen=True)
class LedgerSpec:
    """Parameters of a synthetic ledger (its cache key)."""

    n_records: int = 10_000_000
    n_agents: int = 1_000
    n_strategies: int = 50
    days: int = 90
    seed: int = 20260101

    def key(self) -> str:
        """Short hash of the parameters and the generator version."""
        blob = json.dumps({**asdict(self), "v": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def make_records(
    spec: LedgerSpec, n: int | None = None, *, start_index: int = 0, seed_offset: int = 0
) -> pl.DataFrame:
    """``n`` records (default ``spec.n_records``) in the ledger schema's needed columns.

    ``start_index`` numbers the record ids, so appended batches never collide with the base.
    """
    n = spec.n_records if n is None else n
    rng = np.random.default_rng(spec.seed + seed_offset)
    skill_rng = np.random.default_rng(spec.seed)  # the same agents' skill in every batch
    skill = skill_rng.normal(0.3, 1.5, spec.n_agents)
    fat_tail = skill_rng.random(spec.n_agents) < 0.05
    agent = rng.integers(0, spec.n_agents, n)
    span_us = spec.days * 24 * 3600 * 1_000_000
    # matured_at in (as_of − days, as_of]: offset in [1 µs, span] before as_of
    before_us = rng.integers(1, span_us + 1, n, dtype=np.int64)
    as_of_us = int(AS_OF.timestamp() * 1_000_000)
    matured_us = as_of_us - before_us
    realized = rng.normal(skill[agent], 40.0)
    expected = skill[agent] + rng.normal(0.0, 8.0, n)
    blowups = fat_tail[agent] & (rng.random(n) < 0.02)
    realized = np.where(blowups, realized - rng.exponential(300.0, n), realized)
    sigma = np.where(rng.random(n) < 0.7, rng.uniform(25.0, 60.0, n), np.nan)
    frame = pl.DataFrame(
        {
            "_i": np.arange(start_index, start_index + n, dtype=np.int64),
            "matured_at": matured_us,
            "_agent": agent.astype(np.int32),
            "realized_pnl_bps": realized,
            "expected_pnl_bps": expected,
            "expected_sigma_bps": sigma,
        }
    )
    utc = RECORD_SCHEMA["matured_at"]
    return (
        frame.with_columns(
            pl.col("matured_at").cast(utc),
            pl.col("expected_sigma_bps").fill_nan(None),
        )
        .with_columns(
            pl.format("run:r{}:24", pl.col("_i")).alias("record_id"),
            (pl.col("matured_at") - pl.duration(hours=24)).alias("ts"),
            pl.format("agent-{}", pl.col("_agent").cast(pl.String).str.zfill(5)).alias("agent"),
            pl.format(
                "strategy-{}", (pl.col("_agent") % spec.n_strategies).cast(pl.String).str.zfill(3)
            ).alias("strategy"),
            pl.lit(24, dtype=pl.Int64).alias("horizon_hours"),
            (pl.col("realized_pnl_bps") - pl.col("expected_pnl_bps")).alias("gap_bps"),
        )
        .select([*NEEDED, "expected_pnl_bps"])
        .sort("matured_at", maintain_order=True)
    )


def make_telemetry(spec: LedgerSpec) -> pl.DataFrame:
    """One telemetry run per 100 records, 5% with an error, in the telemetry schema."""
    n = max(spec.n_records // 100, spec.n_agents)
    rng = np.random.default_rng(spec.seed + 7)
    span_us = spec.days * 24 * 3600 * 1_000_000
    as_of_us = int(AS_OF.timestamp() * 1_000_000)
    frame = pl.DataFrame(
        {
            "ts": as_of_us - rng.integers(1, span_us + 1, n, dtype=np.int64),
            "_agent": rng.integers(0, spec.n_agents, n).astype(np.int32),
            "is_error": rng.random(n) < 0.05,
        }
    )
    return frame.select(
        pl.col("ts").cast(TELEMETRY_SCHEMA["ts"]),
        pl.format("agent-{}", pl.col("_agent").cast(pl.String).str.zfill(5)).alias("agent"),
        pl.lit(None, dtype=pl.String).alias("run_id"),
        pl.col("is_error"),
    )


def appended_records(
    spec: LedgerSpec, n: int, after: datetime, hours: float, batch: int = 0
) -> pl.DataFrame:
    """``n`` new records maturing in ``(after, after + hours]``, ids after the base ledger's.
    ``batch`` numbers successive appends of ``n`` (the ids of batch ``k`` follow those of
    ``k - 1``; each batch draws its own records)."""
    seeds = (1, 2) if batch == 0 else (1000 + batch, 2000 + batch)  # batch 0: as it always was
    records = make_records(spec, n, start_index=spec.n_records + batch * n, seed_offset=seeds[0])
    rng = np.random.default_rng(spec.seed + seeds[1])
    offset_us = rng.integers(1, int(hours * 3.6e9) + 1, n, dtype=np.int64)
    matured = pl.Series(int(after.timestamp() * 1_000_000) + offset_us).cast(
        RECORD_SCHEMA["matured_at"]
    )
    return (
        records.with_columns(matured.alias("matured_at"))
        .with_columns((pl.col("matured_at") - pl.duration(hours=24)).alias("ts"))
        .sort("matured_at", maintain_order=True)
    )


def ensure_ledger(spec: LedgerSpec, data_dir: Path = DATA_DIR) -> tuple[Path, Path]:
    """Write (or reuse) the ledger and telemetry Parquet files for ``spec``; return their paths."""
    data_dir.mkdir(parents=True, exist_ok=True)
    records = data_dir / f"records-{spec.key()}.parquet"
    telemetry = data_dir / f"telemetry-{spec.key()}.parquet"
    if not records.exists():
        tmp = records.with_suffix(".tmp")
        make_records(spec).write_parquet(tmp, statistics=True, row_group_size=1_000_000)
        tmp.replace(records)
        (data_dir / f"records-{spec.key()}.json").write_text(json.dumps(asdict(spec)) + "\n")
    if not telemetry.exists():
        tmp = telemetry.with_suffix(".tmp")
        make_telemetry(spec).write_parquet(tmp)
        tmp.replace(telemetry)
    return records, telemetry
