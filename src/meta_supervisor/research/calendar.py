"""An exchange calendar (NYSE rules) and the mixed-cadence scenario built on it.

The simulated scenarios of :mod:`meta_supervisor.research.simulate` run on continuous time, so
they can never show a defect that only a trading calendar triggers (a 168 h window holding four
records in a holiday week). This module gives the research scenarios a calendar:

* :func:`nyse_holidays` / :func:`nyse_sessions`: NYSE's full-day closures by its published rules
  (New Year's Day, Martin Luther King Jr. Day from 1998, Washington's Birthday, Good Friday,
  Memorial Day, Juneteenth from 2022, Independence Day, Labor Day, Thanksgiving, Christmas;
  a Saturday holiday is observed the Friday before, except New Year's Day, a Sunday holiday
  the Monday after). Unscheduled closures (9/11, Hurricane Sandy, national days of mourning)
  are not rules and are left out; the real-price scenarios take their sessions from the price
  data instead, so they hold them.
* :func:`session_close`: the close in UTC, 21:00 (16:00 New York in winter; daylight saving is
  ignored: one fixed hour keeps every session 24 h after the one before it), 18:00 on the
  early-close days (the day after Thanksgiving, Christmas Eve and July 3 when they are
  sessions).
* :func:`mixed_cadence_fleet`: daily equity agents on that calendar beside hourly crypto agents
  trading around the clock, with persistent skill in a few of each (see its docstring).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl

from meta_supervisor.cycle.run import Ledger
from meta_supervisor.ingest.records import dedupe_records, normalize_records, normalize_telemetry
from meta_supervisor.research.simulate import FleetSpec, Scenario, SimulatedFleet

__all__ = [
    "SCENARIOS",
    "easter",
    "is_early_close",
    "mixed_cadence_fleet",
    "nyse_holidays",
    "nyse_sessions",
    "session_close",
]

CLOSE_HOUR_UTC = 21
EARLY_CLOSE_HOUR_UTC = 18


def easter(year: int) -> date:
    """Western Easter Sunday (the anonymous Gregorian algorithm, Meeus/Jones/Butcher)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = b // 4, b % 4
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    ell = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * ell) // 451
    month = (h + ell - 7 * m + 114) // 31
    day = (h + ell - 7 * m + 114) % 31 + 1
    return date(year, month, day)


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    """The ``n``-th ``weekday`` (0 = Monday) of the month; ``n = -1``: the last one."""
    if n > 0:
        first = date(year, month, 1)
        return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))
    last = date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def _observed(day: date) -> date:
    """Saturday -> the Friday before, Sunday -> the Monday after."""
    if day.weekday() == 5:
        return day - timedelta(days=1)
    if day.weekday() == 6:
        return day + timedelta(days=1)
    return day


def nyse_holidays(year: int) -> set[date]:
    """NYSE's rule-based full-day holidays observed in ``year`` (see the module docstring)."""
    days = {
        _nth_weekday(year, 2, 0, 3),  # Washington's Birthday
        easter(year) - timedelta(days=2),  # Good Friday
        _nth_weekday(year, 5, 0, -1),  # Memorial Day
        _observed(date(year, 7, 4)),
        _nth_weekday(year, 9, 0, 1),  # Labor Day
        _nth_weekday(year, 11, 3, 4),  # Thanksgiving
        _observed(date(year, 12, 25)),
    }
    new_year = date(year, 1, 1)
    if new_year.weekday() != 5:  # a Saturday New Year's Day is not observed the Friday before
        days.add(_observed(new_year))
    if year >= 1998:
        days.add(_nth_weekday(year, 1, 0, 3))  # Martin Luther King Jr. Day
    if year >= 2022:
        days.add(_observed(date(year, 6, 19)))  # Juneteenth
    return {d for d in days if d.year == year}


def nyse_sessions(first: date, last: date) -> list[date]:
    """Every NYSE session (weekday, not a holiday) in ``[first, last]``."""
    holidays: set[date] = set()
    for year in range(first.year, last.year + 1):
        holidays |= nyse_holidays(year)
    out, day = [], first
    while day <= last:
        if day.weekday() < 5 and day not in holidays:
            out.append(day)
        day += timedelta(days=1)
    return out


def is_early_close(day: date, sessions: set[date]) -> bool:
    """The day after Thanksgiving, Christmas Eve and July 3 close at 13:00 New York time when
    they are sessions (``sessions``: the calendar's session days)."""
    if day not in sessions:
        return False
    after_thanksgiving = _nth_weekday(day.year, 11, 3, 4) + timedelta(days=1)
    return day in (after_thanksgiving, date(day.year, 12, 24), date(day.year, 7, 3))


def session_close(day: date, early: bool = False) -> datetime:
    """The session's close in UTC (21:00, or 18:00 on an early close)."""
    hour = EARLY_CLOSE_HOUR_UTC if early else CLOSE_HOUR_UTC
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def session_closes(days: list[date]) -> list[datetime]:
    """The close of every session in ``days`` (early closes at 18:00 UTC)."""
    held = set(days)
    return [session_close(d, is_early_close(d, held)) for d in days]


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def mixed_cadence_fleet(
    seed: int,
    *,
    first: date = date(2025, 10, 1),
    last: date = date(2026, 1, 31),
    n_equity: int = 12,
    n_crypto: int = 8,
) -> SimulatedFleet:
    """Daily equity agents on the NYSE calendar beside hourly crypto agents, 24/7.

    * **equity** agents emit one signal per session at its close (early closes included),
      horizon 24 h: ``ts = next close − 24 h`` so that ``matured_at`` is the next close, the
      instant the PnL is known (over a weekend the signal's position is held to Monday's
      close; no decision ever sees a PnL before its close). Daily PnL ~ ``edge + 120·t(4)/√2``
      bps, with edge +15 bps for a third of them, 0 otherwise.
    * **crypto** agents emit a signal every hour, around the clock, horizon 24 h, PnL ~
      ``edge + 60·t(4)/√2`` bps per record, edge +4 bps for a quarter of them, 0 otherwise.
    * Simulators are calibrated (expected = the edge, stated sigma = the noise scale), no
      telemetry errors: every agent is healthy, so no gate may fire on any of them; a
      correct allocator is never in cash for lack of records.

    Decisions every 24 h at 21:00 UTC, weekends and holidays included (the crypto book trades):
    a weekend or a holiday must not gate the equity agents.
    """
    rng = np.random.default_rng(seed)
    days = nyse_sessions(first, last + timedelta(days=10))
    closes = session_closes(days)
    frames = []
    agents = []
    for i in range(n_equity):
        name = f"equity_{i:02d}"
        edge = 15.0 if i % 3 == 0 else 0.0
        matured = closes[1:]
        pnl = edge + 120.0 * rng.standard_t(4, len(matured)) / np.sqrt(2.0)
        ts = [m - timedelta(hours=24) for m in matured]
        agents.append({"agent": name, "strategy": "equity_daily", "edge_bps": edge})
        frames.append(_records(name, "equity_daily", "SPY", ts, pnl, edge, 120.0))
    start = session_close(first)
    hours = int((closes[-1] - start).total_seconds() // 3600)
    for i in range(n_crypto):
        name = f"crypto_{i:02d}"
        edge = 4.0 if i % 4 == 0 else 0.0
        ts = [start + timedelta(hours=h) for h in range(hours - 24)]
        pnl = edge + 60.0 * rng.standard_t(4, len(ts)) / np.sqrt(2.0)
        agents.append({"agent": name, "strategy": "crypto_hourly", "edge_bps": edge})
        frames.append(_records(name, "crypto_hourly", "BTC", ts, pnl, edge, 60.0))
    batch = normalize_records(pl.concat(frames), source="mixed cadence")
    if batch.quarantine.height:
        raise ValueError(f"mixed-cadence records refused: {batch.quarantine.head(3)}")
    records, _ = dedupe_records(batch.records)
    tel = records.select("ts", "agent").with_columns(pl.lit(0).alias("errors"))
    telemetry = normalize_telemetry(
        tel.with_columns(pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%SZ")), source="mixed cadence"
    ).records
    end = session_close(last)
    return SimulatedFleet(
        ledger=Ledger(records=records, telemetry=telemetry, read=records.height),
        agents=pl.DataFrame(agents),
        spec=FleetSpec(n_agents=len(agents), days=(end - start).days, horizons=(24,)),
        seed=seed,
        start=start,
        end=end,
        every_hours=24.0,
    )


def _records(
    name: str,
    strategy: str,
    symbol: str,
    ts: list[datetime],
    pnl: np.ndarray,
    edge: float,
    sigma: float,
) -> pl.DataFrame:
    n = len(ts)
    return pl.DataFrame(
        {
            "ts": [_iso(t) for t in ts],
            "agent": name,
            "run_id": [f"{name}-{k}" for k in range(n)],
            "symbol": symbol,
            "direction": "LONG",
            "horizon_hours": 24,
            "realized_pnl_bps": pnl,
            "expected_pnl_bps": edge,
            "expected_sigma_bps": sigma,
            "strategy_class": strategy,
        }
    )


SCENARIOS: dict[str, Scenario] = {
    "mixed_cadence": Scenario(
        "12 daily equity agents on the NYSE calendar beside 8 hourly crypto agents (24/7), "
        "a few skilled in each, all healthy; daily decisions incl. weekends and holidays",
        mixed_cadence_fleet,
    ),
}
