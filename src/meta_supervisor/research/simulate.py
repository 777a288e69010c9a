"""A fleet simulator: reconciled records and telemetry in the ledger schema, deterministic by seed.

Everything is drawn with one :class:`numpy.random.Generator` seeded by ``seed`` and built with
array operations (no per-record Python loop), so a scenario of 30 agents over 90 days (~20k
records) builds in well under a second and the same seed gives the same frames.

Model of one record (one signal of agent *i*, strategy *s*, signal time *t*, horizon *h*; bps):

.. math::

    realized = drift + edge_i(regime(t)) + f_s(day(t)) + \\sigma_i\\,\\varepsilon + shock_s(t)

* ``drift``: a market premium common to every agent (bps per record);
* ``edge_i``: the agent's own skill, constant within a regime (0 for an agent with no edge);
  at each regime shift the edges are redrawn, so yesterday's skill says nothing;
* ``f_s``: a daily factor shared by the agents of one strategy (correlation within strategy);
* ``ε``: Student-t with ``df`` degrees of freedom scaled to unit variance (heavy tails);
* ``shock_s``: during a strategy's blow-up, ``−blowup_sigmas·σ_i·(1 + |t|)`` per record for
  every agent of that strategy: large negative PnL *and* large negative gaps (the simulator
  keeps forecasting as usual).

The simulator's forecast is ``expected = drift + edge_i + bias_i`` with stated sigma
``σ_i·calibration_i``: a calibrated simulator has ``bias = 0, calibration = 1``; a miscalibrated
one is optimistic (``bias > 0``) and over-confident (``calibration ≪ 1``).

Agents arrive late (their first signal after the start) or go stale (no signal after some
instant). Telemetry has one run per signal, ``is_error`` drawn at the agent's base error rate,
raised to ``burst_error_rate`` inside the agent's error bursts.

Frames come out in :data:`meta_supervisor.ingest.records.RECORD_SCHEMA` and ``TELEMETRY_SCHEMA``
through the ingest's own normaliser (:func:`meta_supervisor.ingest.records.normalize_records`), so a
simulated ledger is exactly what ingest would have produced from the JSONL the simulator writes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from meta_supervisor.cycle.run import Ledger
from meta_supervisor.ingest.records import dedupe_records, normalize_records, normalize_telemetry

__all__ = [
    "SCENARIOS",
    "Blowup",
    "FleetSpec",
    "Scenario",
    "SimulatedFleet",
    "blowup_events",
    "simulate_fleet",
    "write_fleet",
]

START = datetime(2026, 1, 1, tzinfo=UTC)
STRATEGIES = ("momentum", "mean_reversion", "perp_funding", "stat_arb", "trend")


@dataclass(frozen=True)
class Blowup:
    """A strategy blowing up: every agent of ``strategy`` loses big from ``start_hour`` on."""

    strategy: str
    start_hour: float
    duration_hours: float = 36.0
    sigmas: float = 2.5


@dataclass(frozen=True)
class FleetSpec:
    """What to simulate. Hours count from ``start``; bps are per record.

    Attributes
    ----------
    n_agents, days : int
        Fleet size and length.
    skilled_share : float
        Share of agents with a positive edge (drawn ``edge_bps·U(0.5, 1.5)``); the rest have 0.
    edge_bps : float
        Typical edge of a skilled agent, per record (bps).
    negative_share : float
        Share of agents with a negative edge (``−edge_bps·U(0.5, 1.5)``): bad agents.
    drift_bps : float
        Common market premium per record (bps), the same for every agent.
    sigma_bps : (low, high)
        Agents' noise scales, log-uniform between the two (bps per record).
    df : float
        Student-t degrees of freedom of the noise (> 2; smaller = heavier tails).
    strategy_factor : float
        Std of the daily factor shared within a strategy, as a fraction of sigma.
    interval_hours : (low, high)
        Each agent emits a signal every ``k`` hours, ``k`` uniform on the integers in range.
    horizons : tuple of int
        Horizons reconciled per signal (the allocator reads ``policy.horizon_hours``).
    miscalibrated_share, miscal_bias_bps, miscal_calibration : float
        Share of agents whose simulator is optimistic by ``bias`` and states sigma times
        ``calibration``.
    late_share, stale_share : float
        Share of agents arriving in the second half / going stale in the second half.
    blowups : tuple of Blowup
        Strategy blow-ups.
    regime_shifts : tuple of float
        Hours at which every edge is redrawn (skill does not persist across them).
    error_rate : (low, high)
        Agents' base telemetry error rates, uniform in range.
    burst_share, burst_hours, burst_error_rate : float
        Share of agents with one error burst of that length and error rate.
    """

    n_agents: int = 30
    days: int = 75
    skilled_share: float = 0.0
    edge_bps: float = 8.0
    negative_share: float = 0.0
    drift_bps: float = 1.0
    sigma_bps: tuple[float, float] = (40.0, 120.0)
    df: float = 4.0
    strategy_factor: float = 0.3
    interval_hours: tuple[int, int] = (1, 6)
    horizons: tuple[int, ...] = (24,)
    miscalibrated_share: float = 0.2
    miscal_bias_bps: float = 15.0
    miscal_calibration: float = 0.3
    late_share: float = 0.1
    stale_share: float = 0.1
    blowups: tuple[Blowup, ...] = ()
    regime_shifts: tuple[float, ...] = ()
    error_rate: tuple[float, float] = (0.0, 0.06)
    burst_share: float = 0.1
    burst_hours: float = 72.0
    burst_error_rate: float = 0.5
    start: datetime = START


@dataclass
class SimulatedFleet:
    """A simulated ledger with the ground truth that made it."""

    ledger: Ledger
    agents: pl.DataFrame
    spec: FleetSpec
    seed: int
    blowups: tuple[Blowup, ...] = ()
    start: datetime = START
    end: datetime = START
    policy_overrides: dict[str, Any] = field(default_factory=dict)
    every_hours: float = 6.0
    calendar: bool = False
    """Decide at the ledger's own closes (an exchange calendar) rather than every_hours."""

    @property
    def records(self) -> pl.DataFrame:
        """The records frame (``RECORD_SCHEMA``)."""
        return self.ledger.records

    @property
    def telemetry(self) -> pl.DataFrame:
        """The telemetry frame (``TELEMETRY_SCHEMA``)."""
        return self.ledger.telemetry


def _iso_hours(start: datetime, hours: np.ndarray) -> list[str]:
    stamps = np.datetime64(start.replace(tzinfo=None), "s") + np.round(hours * 3600).astype(
        "timedelta64[s]"
    )
    return [s + "Z" for s in np.datetime_as_string(stamps, unit="s").tolist()]


def _agent_table(spec: FleetSpec, rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = spec.n_agents
    total_h = spec.days * 24.0
    kinds = rng.permutation(n)
    n_skilled = round(spec.skilled_share * n)
    n_negative = round(spec.negative_share * n)
    edge = np.zeros(n)
    edge[kinds[:n_skilled]] = spec.edge_bps * rng.uniform(0.5, 1.5, n_skilled)
    neg = kinds[n_skilled : n_skilled + n_negative]
    edge[neg] = -spec.edge_bps * rng.uniform(0.5, 1.5, n_negative)
    lo, hi = np.log(spec.sigma_bps[0]), np.log(spec.sigma_bps[1])
    sigma = np.exp(rng.uniform(lo, hi, n))
    interval = rng.integers(spec.interval_hours[0], spec.interval_hours[1] + 1, n)
    miscal = rng.random(n) < spec.miscalibrated_share
    late = rng.random(n) < spec.late_share
    stale = ~late & (rng.random(n) < spec.stale_share)
    arrive = np.where(late, rng.uniform(0.4, 0.7, n) * total_h, rng.uniform(0, 6, n))
    leave = np.where(stale, rng.uniform(0.5, 0.8, n) * total_h, total_h + 1.0)
    burst = rng.random(n) < spec.burst_share
    burst_start = rng.uniform(0.2, 0.8, n) * total_h
    return {
        "agent": np.array([f"agent-{i:02d}" for i in range(n)]),
        "strategy": np.array([STRATEGIES[i % len(STRATEGIES)] for i in range(n)]),
        "edge_bps": edge,
        "sigma_bps": sigma,
        "interval_hours": interval,
        "bias_bps": np.where(miscal, spec.miscal_bias_bps, 0.0),
        "calibration": np.where(miscal, spec.miscal_calibration, 1.0),
        "arrive_hour": arrive,
        "leave_hour": leave,
        "error_rate": rng.uniform(spec.error_rate[0], spec.error_rate[1], n),
        "burst_start_hour": np.where(burst, burst_start, np.inf),
    }


def simulate_fleet(spec: FleetSpec, seed: int = 0) -> SimulatedFleet:
    """Simulate ``spec`` with ``seed``: same inputs, same frames (see the module docstring)."""
    if spec.df <= 2:
        raise ValueError(f"df must be > 2 for a finite variance (got {spec.df})")
    rng = np.random.default_rng(seed)
    agents = _agent_table(spec, rng)
    n = spec.n_agents
    total_h = spec.days * 24.0

    # Signals: agent i at arrive_i + k·interval_i while before leave_i and the end.
    counts = np.maximum(
        0,
        np.ceil(
            (np.minimum(agents["leave_hour"], total_h) - agents["arrive_hour"])
            / agents["interval_hours"]
        ).astype(int),
    )
    who = np.repeat(np.arange(n), counts)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    k = np.arange(who.size) - first
    hour = np.floor(agents["arrive_hour"][who]) + k * agents["interval_hours"][who]
    m = who.size

    # Regimes: edges redrawn at each shift (a permutation of the edges: same amount of skill,
    # different owners), so skill measured before the shift says nothing after it.
    regime = np.searchsorted(np.asarray(sorted(spec.regime_shifts)), hour, side="right")
    n_regimes = len(spec.regime_shifts) + 1
    edges = np.stack(
        [agents["edge_bps"]] + [rng.permutation(agents["edge_bps"]) for _ in range(n_regimes - 1)]
    )
    edge = edges[regime, who]

    strat_idx = np.array([STRATEGIES.index(s) for s in agents["strategy"]])[who]
    day = (hour // 24).astype(int)
    factor = rng.standard_normal((len(STRATEGIES), spec.days + 2))
    sigma = agents["sigma_bps"][who]
    noise = rng.standard_t(spec.df, m) / np.sqrt(spec.df / (spec.df - 2))
    shock = np.zeros(m)
    for b in spec.blowups:
        hit = (np.asarray(agents["strategy"])[who] == b.strategy) & (hour >= b.start_hour)
        hit &= hour < b.start_hour + b.duration_hours
        shock[hit] = -b.sigmas * sigma[hit] * (1.0 + np.abs(rng.standard_normal(int(hit.sum()))))
    mean_part = spec.drift_bps + edge + shock
    noise_part = spec.strategy_factor * sigma * factor[strat_idx, day] + sigma * noise
    expected = spec.drift_bps + edge + agents["bias_bps"][who]
    stated_sigma = sigma * agents["calibration"][who]
    direction = np.where(rng.random(m) < 0.5, "LONG", "SHORT")
    symbol = np.array(["BTC", "ETH", "SOL", "SPY"])[rng.integers(0, 4, m)]

    frames = []
    for h in spec.horizons:
        # Horizon h carries h/24 of the 24 h mean and sqrt(h/24) of its noise.
        scale = h / 24.0
        realized = mean_part * scale + noise_part * np.sqrt(scale)
        frames.append(
            pl.DataFrame(
                {
                    "ts": _iso_hours(spec.start, hour),
                    "agent": agents["agent"][who],
                    "run_id": [f"{a}-{j}" for a, j in zip(agents["agent"][who], k, strict=True)],
                    "symbol": symbol,
                    "direction": direction,
                    "horizon_hours": np.full(m, h, dtype=np.int64),
                    "realized_pnl_bps": realized,
                    "expected_pnl_bps": expected * scale,
                    "expected_sigma_bps": stated_sigma * np.sqrt(scale),
                    "strategy_class": agents["strategy"][who],
                    "regime": [f"r{r}" for r in regime],
                }
            )
        )
    raw = pl.concat(frames) if frames else pl.DataFrame()
    batch = normalize_records(raw, source="simulator")
    if batch.quarantine.height:
        raise AssertionError(f"simulator produced refused rows: {batch.quarantine.head(3)}")
    records, _ = dedupe_records(batch.records)

    in_burst = (hour >= agents["burst_start_hour"][who]) & (
        hour < agents["burst_start_hour"][who] + spec.burst_hours
    )
    p_err = np.where(in_burst, spec.burst_error_rate, agents["error_rate"][who])
    is_error = rng.random(m) < p_err
    tel_raw = pl.DataFrame(
        {
            "ts": _iso_hours(spec.start, hour),
            "agent": agents["agent"][who],
            "run_id": [f"{a}-{j}" for a, j in zip(agents["agent"][who], k, strict=True)],
            "error": np.where(is_error, "simulated failure", ""),
        }
    )
    telemetry = normalize_telemetry(tel_raw, source="simulator").records
    truth = pl.DataFrame({key: value for key, value in agents.items()})
    return SimulatedFleet(
        ledger=Ledger(records=records, telemetry=telemetry, read=raw.height + tel_raw.height),
        agents=truth,
        spec=spec,
        seed=seed,
        blowups=spec.blowups,
        start=spec.start,
        end=spec.start + timedelta(days=spec.days),
    )


def write_fleet(fleet: SimulatedFleet, directory: Path, fmt: str = "jsonl") -> tuple[Path, Path]:
    """Write records and telemetry in the original system's input layout.

    ``fmt="jsonl"`` writes ``reconciled.jsonl`` / ``events.jsonl`` (ISO timestamps with "Z",
    ``strategy_class``, the input field names); ``fmt="parquet"`` writes the same columns to
    ``reconciled.parquet`` / ``events.parquet``. Returns ``(records_path, telemetry_path)``.
    """
    if fmt not in ("jsonl", "parquet"):
        raise ValueError(f"fmt must be 'jsonl' or 'parquet' (got {fmt!r})")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stamp = "%Y-%m-%dT%H:%M:%S%.6fZ"
    rec = fleet.records.select(
        pl.col("ts").dt.strftime(stamp).alias("ts"),
        "agent",
        "run_id",
        "symbol",
        "direction",
        "horizon_hours",
        "realized_pnl_bps",
        "expected_pnl_bps",
        "expected_sigma_bps",
        pl.col("gap_bps").alias("pnl_error_bps"),
        pl.col("gap_bps").abs().alias("abs_error_bps"),
        pl.lit("sim-1").alias("sim_version"),
        pl.col("strategy").alias("strategy_class"),
        "regime",
    )
    tel = fleet.telemetry.select(
        pl.col("ts").dt.strftime(stamp).alias("ts"),
        "agent",
        "run_id",
        pl.when(pl.col("is_error")).then(pl.lit("simulated failure")).alias("error"),
    )
    rec_path = directory / f"reconciled.{fmt}"
    tel_path = directory / f"events.{fmt}"
    if fmt == "parquet":
        rec.write_parquet(rec_path)
        tel.write_parquet(tel_path)
    else:
        for frame, path in ((rec, rec_path), (tel, tel_path)):
            with path.open("w", encoding="utf-8") as out:
                for row in frame.iter_rows(named=True):
                    out.write(json.dumps(row, allow_nan=False) + "\n")
    return rec_path, tel_path


# ---------------------------------------------------------------- named scenarios


@dataclass(frozen=True)
class Scenario:
    """A named scenario: a one-line description and a builder ``seed -> SimulatedFleet``."""

    description: str
    build: Callable[[int], SimulatedFleet]


def _spec_scenario(spec: FleetSpec) -> Callable[[int], SimulatedFleet]:
    return lambda seed: simulate_fleet(spec, seed)


def _blowups(days: int) -> tuple[Blowup, ...]:
    return (
        Blowup("perp_funding", start_hour=0.45 * days * 24),
        Blowup("stat_arb", start_hour=0.75 * days * 24, duration_hours=48.0),
    )


_DAYS = 75

SCENARIOS: dict[str, Scenario] = {
    "no_skill": Scenario(
        "no agent has an edge: every agent earns the same 1 bps market premium plus t(4) noise",
        _spec_scenario(FleetSpec(days=_DAYS)),
    ),
    "skill": Scenario(
        "a third of the agents have a persistent edge (~0.1 sigma per record), the rest none",
        _spec_scenario(FleetSpec(days=_DAYS, skilled_share=1 / 3)),
    ),
    "skill_blowups": Scenario(
        "persistent skill in a third, a sixth with negative edge, two strategies blow up",
        _spec_scenario(
            FleetSpec(
                days=_DAYS,
                skilled_share=1 / 3,
                negative_share=1 / 6,
                blowups=_blowups(_DAYS),
            )
        ),
    ),
    "no_skill_blowups": Scenario(
        "no agent has an edge, and two strategies blow up",
        _spec_scenario(FleetSpec(days=_DAYS, blowups=_blowups(_DAYS))),
    ),
    "regime_shift": Scenario(
        "a third of the agents are skilled, but skill changes hands at two regime shifts",
        _spec_scenario(
            FleetSpec(
                days=_DAYS,
                skilled_share=1 / 3,
                regime_shifts=(_DAYS * 24 / 3, 2 * _DAYS * 24 / 3),
            )
        ),
    ),
}


def blowup_events(fleet: SimulatedFleet) -> list[tuple[str, datetime]]:
    """``(agent, onset)`` for every agent that emitted a signal inside a blow-up of its strategy.

    The onset is the blow-up's start in *signal* time: its first losses are realised (and can be
    seen by any allocator) one horizon later.
    """
    events: list[tuple[str, datetime]] = []
    for b in fleet.blowups:
        onset = fleet.start + timedelta(hours=b.start_hour)
        stop = onset + timedelta(hours=b.duration_hours)
        hit = (
            fleet.records.filter(
                (pl.col("strategy") == b.strategy) & (pl.col("ts") >= onset) & (pl.col("ts") < stop)
            )["agent"]
            .unique()
            .sort()
            .to_list()
        )
        events.extend((agent, onset) for agent in hit)
    return events
