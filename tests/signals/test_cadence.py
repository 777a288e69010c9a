"""Own-cadence record counts (meta_supervisor.signals.cadence) and the min_records gate."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meta_supervisor.allocate.profiles import method_for
from meta_supervisor.cycle.run import decide
from meta_supervisor.policy.model import Policy, Profile
from meta_supervisor.research.calendar import nyse_sessions, session_closes
from meta_supervisor.research.realprice import rule_fleet
from meta_supervisor.signals.cadence import CadenceIndex, cadence_hours, min_records_needed

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _records(times: dict[str, list[float]], horizon: int = 24) -> pl.DataFrame:
    rows = [
        {
            "agent": a,
            "matured_at": T0 + timedelta(hours=h),
            "ts": T0 + timedelta(hours=h - horizon),
            "horizon_hours": horizon,
            "realized_pnl_bps": 1.0,
        }
        for a, hours in times.items()
        for h in hours
    ]
    return pl.DataFrame(
        rows,
        schema={
            "agent": pl.String,
            "matured_at": pl.Datetime("us", "UTC"),
            "ts": pl.Datetime("us", "UTC"),
            "horizon_hours": pl.Int64,
            "realized_pnl_bps": pl.Float64,
        },
    )


def _brute(hours: list[float], now: float, policy: Policy) -> float:
    """E_i by the module docstring, counted by hand."""
    c, lookback = cadence_hours(policy), policy.lookback_hours
    inside = [h for h in hours if now - c < h <= now]
    if not inside or min(inside) > now - c + lookback:
        return float("nan")
    return len(inside) * lookback / c


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 2000), min_size=0, max_size=60),
    st.integers(0, 2200),
    st.sampled_from([24.0, 168.0, 500.0]),
    st.sampled_from([0.0, 100.0, 672.0]),
)
def test_expected_records_equals_a_count_by_hand(hours, now, lookback, history):
    policy = Policy(
        profile=Profile.EVIDENCE, lookback_hours=lookback, cadence_history_hours=history
    )
    index = CadenceIndex.from_records(_records({"a": [float(h) for h in hours]}), 24)
    got = index.expected_records(["a", "unknown"], T0 + timedelta(hours=now), policy)
    want = _brute([float(h) for h in hours], float(now), policy) if history > 0 else float("nan")
    np.testing.assert_allclose(got[0], want, rtol=1e-12, equal_nan=True)
    assert np.isnan(got[1])


def test_other_horizons_are_not_counted():
    index = CadenceIndex.from_records(_records({"a": [1.0, 2.0]}, horizon=4), 24)
    assert index.agents == ()


@settings(max_examples=80, deadline=None)
@given(st.floats(0, 500), st.integers(0, 20), st.floats(0, 1), st.integers(0, 10))
def test_cadence_only_relaxes_min_records_and_never_below_its_floor(e, min_rec, share, floor):
    policy = Policy(min_records=min_rec, cadence_min_share=share, cadence_min_records=floor)
    need = min_records_needed(np.array([e, np.nan]), policy)
    assert need[0] <= min_rec
    assert need[0] >= min(min_rec, floor)
    assert need[1] == min_rec


def _daily_fleet_over(first: date, last: date):
    days = nyse_sessions(first, last)
    rng = np.random.default_rng(0)
    px = np.exp(np.cumsum(rng.normal(0, 0.01, (len(days), 3)), axis=0)) * 100
    prices = pl.DataFrame({"date": days, "A": px[:, 0], "B": px[:, 1], "C": px[:, 2]})
    return rule_fleet(prices, calendar=True), days


def test_holiday_week_never_puts_a_healthy_daily_fleet_in_cash():
    """Regression (issue #14): with a 168 h window and min_records 5, the week after
    Thanksgiving held four records per agent and gated the whole fleet: 100% cash for three
    sessions. Judged against its own cadence (4 of a normal 4.8) the fleet stays invested."""
    fleet, days = _daily_fleet_over(date(2021, 8, 2), date(2021, 12, 10))
    closes = dict(zip(days, session_closes(days), strict=True))
    after = [d for d in days if date(2021, 11, 29) <= d <= date(2021, 12, 1)]
    for day in after:
        old = decide(
            fleet.ledger, closes[day], Policy(profile=Profile.EVIDENCE, cadence_history_hours=0)
        )
        assert old.cash == 1.0  # the defect, as it was
        new = decide(fleet.ledger, closes[day], Policy())
        assert new.cash < 0.5
        gate = next(g for g in new.agents["momentum:A"]["gates"] if g["gate"] == "min_records")
        assert gate["passed"] and "its own cadence" in gate["detail"]


def test_an_agent_that_stops_reporting_is_still_gated():
    fleet, days = _daily_fleet_over(date(2021, 8, 2), date(2021, 12, 10))
    records = fleet.ledger.records
    cut = session_closes(days)[-6]
    fleet.ledger.records = records.filter(
        (pl.col("agent") != "momentum:A") | (pl.col("matured_at") <= cut)
    )
    decision = decide(fleet.ledger, session_closes(days)[-2], Policy())
    assert decision.agents["momentum:A"]["weight"] == 0.0
    gate = next(g for g in decision.agents["momentum:A"]["gates"] if g["gate"] == "min_records")
    assert not gate["passed"]


@pytest.mark.parametrize("history", [0.0, 672.0])
def test_a_young_agent_is_held_to_min_records(history):
    fleet, days = _daily_fleet_over(date(2021, 8, 2), date(2021, 12, 10))
    closes = session_closes(days)
    fleet.ledger.records = fleet.ledger.records.filter(
        (pl.col("agent") != "momentum:A") | (pl.col("matured_at") > closes[-5])
    )
    decision = decide(
        fleet.ledger, closes[-2], Policy(profile=Profile.EVIDENCE, cadence_history_hours=history)
    )
    assert decision.agents["momentum:A"]["weight"] == 0.0  # 3 records, cadence unknown


@pytest.mark.parametrize("profile", list(Profile))
def test_recent_loss_z_is_an_input_only_of_a_profile_that_reads_it(profile):
    """Every profile's decisions paid for each agent's robust scale (two medians over its
    history) every cycle and listed ``recent_loss_z`` among inputs only *select* reads."""
    fleet, days = _daily_fleet_over(date(2021, 8, 2), date(2021, 12, 10))
    decision = decide(fleet.ledger, session_closes(days)[-1], Policy(profile=profile))
    reads = "recent_loss_z" in method_for(profile).keys
    inputs = decision.agents["momentum:A"]["inputs"]
    assert ("recent_loss_z" in inputs) == reads == (profile is Profile.SELECT)


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["a", "b", "c", "d"]),
        st.lists(st.integers(0, 2000), min_size=0, max_size=30),
        max_size=4,
    ),
    st.integers(0, 2200),
    st.sampled_from([24.0, 168.0]),
    st.booleans(),
)
def test_expected_records_of_many_agents_at_once_equal_counts_by_hand(hours, now, lookback, packed):
    """The agents' windows are found by one vectorised search over packed (agent, time) keys,
    or agent by agent when the keys would not fit an int64: both equal a count by hand."""
    policy = Policy(lookback_hours=lookback, cadence_history_hours=672.0)
    index = CadenceIndex.from_records(
        _records({a: [float(h) for h in hs] for a, hs in hours.items()}), 24
    )
    if not packed:
        index.__dict__["_keys"] = None  # the cached property, as when the keys overflow
    names = [*sorted(hours, reverse=True), "unknown"]
    got = index.expected_records(names, T0 + timedelta(hours=now), policy)
    for name, value in zip(names, got, strict=True):
        want = _brute([float(h) for h in hours.get(name, [])], float(now), policy)
        np.testing.assert_allclose(value, want, rtol=1e-12, equal_nan=True)
