"""The exchange calendar, the calendar scenarios and the backtest's calendar decisions."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import polars as pl
import pytest

from meta_supervisor.policy.model import Policy, Profile
from meta_supervisor.research.backtest import run_backtest, run_fleet
from meta_supervisor.research.calendar import (
    easter,
    is_early_close,
    mixed_cadence_fleet,
    nyse_holidays,
    nyse_sessions,
    session_closes,
)
from meta_supervisor.research.realprice import rule_fleet


@pytest.mark.parametrize(
    ("year", "day"),
    [(2000, date(2000, 4, 23)), (2019, date(2019, 4, 21)), (2024, date(2024, 3, 31))],
)
def test_easter_matches_known_dates(year, day):
    assert easter(year) == day


def test_nyse_holidays_match_the_published_lists():
    assert sorted(nyse_holidays(2019)) == [
        date(2019, 1, 1),
        date(2019, 1, 21),
        date(2019, 2, 18),
        date(2019, 4, 19),
        date(2019, 5, 27),
        date(2019, 7, 4),
        date(2019, 9, 2),
        date(2019, 11, 28),
        date(2019, 12, 25),
    ]
    # 2022: New Year's Day on a Saturday is not observed; Juneteenth observed on Monday 20th.
    h2022 = nyse_holidays(2022)
    assert date(2021, 12, 31) not in nyse_holidays(2021)
    assert date(2022, 6, 20) in h2022 and len(h2022) == 9
    assert len(nyse_sessions(date(2019, 1, 1), date(2019, 12, 31))) == 252
    assert len(nyse_sessions(date(2022, 1, 1), date(2022, 12, 31))) == 251


def test_early_closes_close_at_18_utc():
    days = nyse_sessions(date(2021, 11, 22), date(2021, 11, 30))
    closes = dict(zip(days, session_closes(days), strict=True))
    assert is_early_close(date(2021, 11, 26), set(days))
    assert closes[date(2021, 11, 26)].hour == 18
    assert closes[date(2021, 11, 24)].hour == 21


def _calendar_prices() -> pl.DataFrame:
    days = nyse_sessions(date(2021, 8, 2), date(2021, 12, 31))
    rng = np.random.default_rng(3)
    px = np.exp(np.cumsum(rng.normal(0, 0.01, (len(days), 2)), axis=0)) * 100
    return pl.DataFrame({"date": days, "A": px[:, 0], "B": px[:, 1]})


def test_calendar_records_mature_at_the_next_close():
    prices = _calendar_prices()
    fleet = rule_fleet(prices, calendar=True)
    closes = set(session_closes(prices["date"].to_list()))
    assert set(fleet.records["matured_at"].to_list()) <= closes
    assert fleet.calendar and not fleet.policy_overrides


def test_backtest_decides_at_the_closes_and_respects_from_to():
    prices = _calendar_prices()
    fleet = rule_fleet(prices, calendar=True)
    kw = {"profiles": [Profile.EVIDENCE], "baseline_names": ["equal_weight"], "progress": False}
    result = run_fleet(fleet, **kw)
    closes = session_closes(prices["date"].to_list())
    assert set(result.times) <= set(closes)
    assert result.info["calendar"]
    assert 24 < result.every_hours < 40  # mean period: 252 sessions a year
    # Every booked record lands in exactly one period: the whole span's PnL is booked.
    booked = fleet.records.filter(
        (pl.col("ts") >= result.times[0]) & (pl.col("matured_at") <= closes[-1])
    )
    assert np.count_nonzero(result.agent_pnl) == booked.height
    sub = run_fleet(
        fleet,
        date_from=datetime(2021, 11, 1, tzinfo=UTC),
        date_to=datetime(2021, 12, 1, tzinfo=UTC),
        **kw,
    )
    assert sub.times[0] >= datetime(2021, 11, 1, tzinfo=UTC)
    assert sub.times[-1] <= datetime(2021, 12, 1, tzinfo=UTC)
    assert set(sub.times) <= set(result.times)
    # no holiday puts the default profile or equal weight in cash
    for name in ("evidence", "equal_weight"):
        assert result.methods[name].weights.sum(axis=1).min() > 0.5


@pytest.mark.slow
def test_mixed_cadence_fleet_is_never_gated_for_its_calendar():
    """Hourly crypto agents beside daily equity agents, daily decisions incl. weekends and
    holidays: with the agents' own cadence no healthy agent is ever gated for records; without
    it (cadence off) the equity agents are gated in holiday weeks (the defect)."""
    fleet = mixed_cadence_fleet(0, first=date(2025, 10, 1), last=date(2026, 1, 10))
    kw = {"profiles": [Profile.EVIDENCE], "baseline_names": ["equal_weight"], "progress": False}
    on = run_backtest(fleet.ledger, fleet.start, fleet.end, every_hours=24.0, **kw)
    off = run_backtest(
        fleet.ledger,
        fleet.start,
        fleet.end,
        every_hours=24.0,
        policy=Policy(profile=Profile.EVIDENCE, cadence_history_hours=0),
        **kw,
    )
    equity = [i for i, a in enumerate(on.agents) if a.startswith("equity")]
    warm = [k for k, t in enumerate(on.times) if (t - on.times[0]).days >= 28]
    assert (on.methods["equal_weight"].weights[warm][:, equity] > 0).all()
    assert (off.methods["equal_weight"].weights[warm][:, equity] == 0).all(axis=1).any()
