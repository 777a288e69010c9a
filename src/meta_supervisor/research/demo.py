"""The built-in example fleet: generated deterministically (seeded), never committed as data.

Eight agents over 21 days of hourly signals at the 24 h horizon, each showing one behaviour:

========== =============== ===================================================================
agent      strategy        behaviour
========== =============== ===================================================================
atlas      momentum        healthy: steady edge, calibrated simulator
borealis   trend           was healthy, in drawdown for the last 3 days
cygnus     perp_funding    profitable, but its strategy under-delivers forecasts in the tail
eridanus   mean_reversion  healthy PnL but 30% of its runs error
fornax     stat_arb        miscalibrated: |realised − expected| far above its stated sigma
gemini     momentum        stale: no record in the last 10 days
hydra      mean_reversion  killed by an operator (exclusion with reason and expiry)
indus      mean_reversion  healthy and strong
========== =============== ===================================================================

Telemetry mixes the original system's two schemas (A: ``error`` string, B: ``errors`` count).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from meta_supervisor.allocate.decision import iso
from meta_supervisor.config import Paths

__all__ = ["DEMO_AS_OF", "DEMO_CYCLES", "write_demo_fleet"]

DEMO_AS_OF = datetime(2026, 1, 15, tzinfo=UTC)
#: The demo runs a cycle 6 h before ``DEMO_AS_OF`` and one at it, so that ``history`` and
#: ``diff`` have two decisions to show.
DEMO_CYCLES = (DEMO_AS_OF - timedelta(hours=6), DEMO_AS_OF)
_DAYS = 21
_HORIZON = 24


def _agent_series(name: str, hours: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = hours.size
    sigma = np.full(n, 5.0)
    expected = rng.normal(4.0, 1.0, n)
    gap = rng.normal(0.0, 3.0, n)
    recent = hours > -3 * 24 - _HORIZON
    if name == "borealis":
        gap = np.where(recent, rng.normal(-9.0, 3.0, n), rng.normal(2.0, 3.0, n))
    elif name == "cygnus":
        blowups = rng.random(n) < 0.06
        gap = np.where(blowups, rng.normal(-90.0, 20.0, n), rng.normal(4.0, 3.0, n))
    elif name == "fornax":
        gap = rng.normal(0.0, 60.0, n)
        expected = expected + 6.0
    elif name == "indus":
        expected = rng.normal(7.0, 1.0, n)
    return {"expected": expected, "realized": expected + gap, "sigma": sigma}


def write_demo_fleet(root: Path, seed: int = 7) -> Paths:
    """Write the example fleet under ``root`` in the original system's layout; return its paths."""
    root = Path(root)
    paths = Paths(
        records=root / "alpha" / "reconciled.jsonl",
        telemetry=root / "telemetry" / "events.jsonl",
        state_dir=root / "meta_supervisor" / "state",
        ledger=root / "meta_supervisor" / "ledger",
    )
    for path in (paths.records, paths.telemetry):
        path.parent.mkdir(parents=True, exist_ok=True)
    paths.state_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    strategies = {
        "atlas": "momentum",
        "borealis": "trend",
        "cygnus": "perp_funding",
        "eridanus": "mean_reversion",
        "fornax": "stat_arb",
        "gemini": "momentum",
        "hydra": "mean_reversion",
        "indus": "mean_reversion",
    }
    # signal times (hours relative to as_of) whose 24 h outcome has matured by as_of
    hours = np.arange(-_DAYS * 24, -_HORIZON + 1)
    lines = []
    telemetry = []
    for name, strategy in strategies.items():
        series = _agent_series(name, hours, rng)
        for i, h in enumerate(hours):
            if name == "gemini" and h > -10 * 24:
                continue
            ts = DEMO_AS_OF + timedelta(hours=int(h))
            lines.append(
                {
                    "ts": iso(ts),
                    "agent": name,
                    "run_id": f"{name}-{int(h) + 10_000:05d}",
                    "symbol": "BTC-USD" if i % 2 else "ETH-USD",
                    "direction": "LONG" if series["expected"][i] >= 0 else "SHORT",
                    "entry_price": 100.0,
                    "exit_price": round(100.0 * (1 + series["realized"][i] / 1e4), 6),
                    "horizon_hours": _HORIZON,
                    "realized_pnl_bps": round(float(series["realized"][i]), 4),
                    "expected_pnl_bps": round(float(series["expected"][i]), 4),
                    "expected_sigma_bps": float(series["sigma"][i]),
                    "sim_version": "sim-3",
                    "strategy_class": strategy,
                    "regime": "normal",
                    "confidence": 0.7,
                    "score_final": 0.5,
                }
            )
        error_p = 0.30 if name == "eridanus" else 0.02
        for hour in range(-7 * 24, 0):
            if name == "gemini":
                continue
            stamp = iso(DEMO_AS_OF + timedelta(hours=hour))
            failed = bool(rng.random() < error_p)
            if hour % 2:
                event = {
                    "ts": stamp,
                    "agent": name,
                    "run_id": f"t-{name}-{hour}",
                    "latency_ms": 800,
                    "cost_usd": None,
                    "tokens_in": None,
                    "tokens_out": None,
                    "error": "timeout" if failed else None,
                    "reward": 0.0,
                }
            else:
                event = {
                    "ts": stamp,
                    "agent": name,
                    "run_id": f"t-{name}-{hour}",
                    "latency_ms": 750,
                    "tokens_in": 1200,
                    "tokens_out": 300,
                    "cost_usd": 0.01,
                    "errors": int(failed),
                }
            telemetry.append(event)
    paths.records.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    paths.telemetry.write_text("".join(json.dumps(e) + "\n" for e in telemetry), encoding="utf-8")
    override = {
        "agent": "hydra",
        "action": "exclude",
        "reason": "killed by risk desk: venue outage, positions flattened",
        "expires_at": iso(DEMO_AS_OF + timedelta(days=3)),
        "cap": None,
        "created_by": "risk-desk",
    }
    paths.overrides.write_text(json.dumps([override], indent=2) + "\n", encoding="utf-8")
    for stale in (paths.history, paths.decision, paths.allocation):
        stale.unlink(missing_ok=True)
    return paths
