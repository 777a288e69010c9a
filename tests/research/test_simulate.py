"""The fleet simulator and the real-price rule fleet: determinism, schema, and each behaviour."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl
import pytest

from meta_supervisor.ingest.records import RECORD_SCHEMA, TELEMETRY_SCHEMA, dedupe_records
from meta_supervisor.ingest.sources import read_records, read_telemetry
from meta_supervisor.research.realprice import rule_directions, rule_fleet
from meta_supervisor.research.scenarios import SCENARIOS, build_scenario
from meta_supervisor.research.simulate import (
    Blowup,
    FleetSpec,
    blowup_events,
    simulate_fleet,
    write_fleet,
)

SMALL = FleetSpec(n_agents=10, days=12, skilled_share=0.3, burst_share=0.3, late_share=0.2)


def test_same_seed_same_frames_other_seed_other_frames():
    a, b, c = simulate_fleet(SMALL, 3), simulate_fleet(SMALL, 3), simulate_fleet(SMALL, 4)
    assert a.records.equals(b.records) and a.telemetry.equals(b.telemetry)
    assert a.agents.equals(b.agents)
    assert not a.records["realized_pnl_bps"].equals(c.records["realized_pnl_bps"])


def test_frames_are_in_the_ledger_schema_with_derived_columns_consistent():
    fleet = simulate_fleet(replace_spec(horizons=(1, 4, 24)), 1)
    assert dict(fleet.records.schema) == RECORD_SCHEMA
    assert dict(fleet.telemetry.schema) == TELEMETRY_SCHEMA
    r = fleet.records
    hours = (r["matured_at"] - r["ts"]).dt.total_hours()
    assert (hours == r["horizon_hours"]).all()
    np.testing.assert_allclose(
        r["gap_bps"].to_numpy(), (r["realized_pnl_bps"] - r["expected_pnl_bps"]).to_numpy()
    )
    assert set(r["horizon_hours"].unique().to_list()) == {1, 4, 24}
    assert r["record_id"].n_unique() == r.height


def replace_spec(**changes) -> FleetSpec:
    from dataclasses import replace

    return replace(SMALL, **changes)


def test_skilled_agents_earn_more_than_unskilled_and_no_skill_has_no_edge():
    fleet = simulate_fleet(replace_spec(n_agents=20, days=40, sigma_bps=(40.0, 40.0)), 2)
    edges = dict(zip(fleet.agents["agent"], fleet.agents["edge_bps"], strict=True))
    mean = fleet.records.group_by("agent").agg(pl.col("realized_pnl_bps").mean())
    skilled = [m for a, m in mean.iter_rows() if edges[a] > 0]
    plain = [m for a, m in mean.iter_rows() if edges[a] == 0]
    assert skilled and plain
    assert np.mean(skilled) > np.mean(plain) + 4.0
    no_skill = build_scenario("no_skill", 0)
    assert (no_skill.agents["edge_bps"] == 0).all()


def test_blowup_hits_every_agent_of_its_strategy_and_only_inside_its_window():
    blow = Blowup("momentum", start_hour=100.0, duration_hours=48.0, sigmas=3.0)
    fleet = simulate_fleet(replace_spec(blowups=(blow,), miscalibrated_share=0.0), 5)
    onset = fleet.start + timedelta(hours=100)
    r = fleet.records.with_columns(
        ((pl.col("ts") >= onset) & (pl.col("ts") < onset + timedelta(hours=48))).alias("inside")
    )
    mom_in = r.filter(pl.col("inside") & (pl.col("strategy") == "momentum"))
    mom_out = r.filter(~pl.col("inside") & (pl.col("strategy") == "momentum"))
    other_in = r.filter(pl.col("inside") & (pl.col("strategy") != "momentum"))
    assert mom_in["gap_bps"].mean() < -100 and mom_in["realized_pnl_bps"].mean() < -100
    assert abs(mom_out["gap_bps"].mean()) < 20 and abs(other_in["gap_bps"].mean()) < 30
    events = blowup_events(fleet)
    assert {a for a, _ in events} == set(mom_in["agent"].unique().to_list())
    assert all(t == onset for _, t in events)


def test_late_agents_start_late_stale_agents_stop_and_bursts_raise_errors():
    spec = replace_spec(n_agents=30, days=20, late_share=0.3, stale_share=0.3, burst_share=0.5)
    fleet = simulate_fleet(spec, 9)
    truth = {row["agent"]: row for row in fleet.agents.iter_rows(named=True)}
    span = fleet.records.group_by("agent").agg(
        pl.col("ts").min().alias("first"), pl.col("ts").max().alias("last")
    )
    late = stale = 0
    for agent, first, last in span.iter_rows():
        hours_first = (first - fleet.start).total_seconds() / 3600
        hours_last = (last - fleet.start).total_seconds() / 3600
        assert hours_first >= np.floor(truth[agent]["arrive_hour"]) - 1e-9
        assert hours_last < truth[agent]["leave_hour"]
        late += truth[agent]["arrive_hour"] > spec.days * 24 * 0.3
        stale += truth[agent]["leave_hour"] < spec.days * 24
    assert late > 0 and stale > 0
    tel = fleet.telemetry.join(fleet.agents.select("agent", "burst_start_hour"), on="agent")
    hours = (pl.col("ts") - pl.lit(fleet.start)).dt.total_seconds() / 3600
    tel = tel.with_columns(
        ((hours >= pl.col("burst_start_hour")) & (hours < pl.col("burst_start_hour") + 72)).alias(
            "burst"
        )
    )
    inside = tel.filter(pl.col("burst"))["is_error"].mean()
    outside = tel.filter(~pl.col("burst"))["is_error"].mean()
    assert inside > 0.35 and outside < 0.08


def test_miscalibrated_simulators_state_a_sigma_far_below_the_realised_gap():
    fleet = simulate_fleet(replace_spec(miscalibrated_share=0.5, n_agents=20), 4)
    cal = dict(zip(fleet.agents["agent"], fleet.agents["calibration"], strict=True))
    ratio = fleet.records.group_by("agent").agg(
        (pl.col("gap_bps").abs().mean() / pl.col("expected_sigma_bps").mean()).alias("z")
    )
    mis = [z for a, z in ratio.iter_rows() if cal[a] < 1]
    ok = [z for a, z in ratio.iter_rows() if cal[a] == 1]
    assert mis and ok and min(mis) > 1.5 * max(ok)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_written_files_read_back_to_the_same_ledger(tmp_path, fmt):
    fleet = simulate_fleet(SMALL, 2)
    rec_path, tel_path = write_fleet(fleet, tmp_path, fmt)
    rec = read_records(rec_path)
    tel = read_telemetry(tel_path)
    assert rec.quarantine.height == 0 and tel.quarantine.height == 0
    back, dups = dedupe_records(rec.records)
    assert dups == 0
    cols = ["record_id", "ts", "agent", "strategy", "horizon_hours", "realized_pnl_bps"]
    assert back.select(cols).sort("record_id").equals(fleet.records.select(cols).sort("record_id"))
    assert tel.records.select("ts", "agent", "is_error").equals(
        fleet.telemetry.select("ts", "agent", "is_error")
    )


def test_scenarios_are_documented_and_unknown_names_list_the_known_ones():
    assert {"no_skill", "skill_blowups"} <= set(SCENARIOS)
    assert all(s.description and "\n" not in s.description for s in SCENARIOS.values())
    with pytest.raises(KeyError, match="no_skill"):
        build_scenario("nope")


# ---------------------------------------------------------------- real-price rule fleet


def _prices(days: int = 90, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, (days, 3)), axis=0))
    dates = pl.date_range(
        pl.date(2020, 1, 1), pl.date(2020, 1, 1) + timedelta(days=days - 1), eager=True
    )
    return pl.DataFrame({"date": dates, "A": close[:, 0], "B": close[:, 1], "C": close[:, 2]})


def test_rule_directions_match_a_brute_force_loop():
    close = _prices()[["A", "B", "C"]].to_numpy()
    mom = rule_directions(close, "momentum")
    rev = rule_directions(close, "mean_reversion")
    for k in range(20, close.shape[0]):
        for j in range(3):
            assert mom[k, j] == (1.0 if close[k, j] > close[k - 20, j] else -1.0)
            assert rev[k, j] == (-1.0 if close[k, j] > close[k - 5, j] else 1.0)
    with pytest.raises(ValueError, match="unknown rule"):
        rule_directions(close, "astrology")


def test_rule_fleet_books_the_next_close_and_forecasts_from_the_past_only():
    prices = _prices()
    fleet = rule_fleet(prices, fit_days=20)
    r = fleet.records.filter(pl.col("agent") == "buy_and_hold:B").sort("ts")
    close = prices["B"].to_numpy()
    # Day k of the records is trading day 50 + k: long from close k to close k+1.
    expected_realized = (close[51:] / close[50:-1] - 1) * 1e4
    np.testing.assert_allclose(r["realized_pnl_bps"].to_numpy(), expected_realized, rtol=1e-12)
    # Corrupting prices after day 70 must not change any forecast made up to day 70.
    cut = 70
    corrupted = prices.with_columns(
        pl.when(pl.int_range(pl.len()) > cut + 1).then(pl.col("B") * 3).otherwise(pl.col("B"))
    )
    again = rule_fleet(corrupted, fit_days=20).records.filter(pl.col("agent") == "buy_and_hold:B")
    n_ok = cut - 50 + 1
    np.testing.assert_allclose(
        again.sort("ts")["expected_pnl_bps"].to_numpy()[:n_ok],
        r["expected_pnl_bps"].to_numpy()[:n_ok],
    )
    # The forecast is the mean of the 20 realised values before it.
    k = 30
    np.testing.assert_allclose(
        r["expected_pnl_bps"][k], r["realized_pnl_bps"].to_numpy()[k - 20 : k].mean()
    )
    assert fleet.records["matured_at"].max() <= fleet.end


def test_rule_fleet_refuses_bad_prices_naming_the_symbol():
    prices = _prices().with_columns(
        pl.when(pl.int_range(pl.len()) == 7).then(-1.0).otherwise(pl.col("C")).alias("C")
    )
    with pytest.raises(ValueError, match="C on row 7"):
        rule_fleet(prices)
    with pytest.raises(KeyError, match="Z"):
        rule_fleet(_prices(), symbols=("Z",))


def test_real_price_loader_without_skfolio_names_the_extra(monkeypatch):
    import sys

    from meta_supervisor.research.realprice import load_sp500_prices

    monkeypatch.setitem(sys.modules, "skfolio.datasets", None)  # import fails as if absent
    with pytest.raises(ImportError, match=r"meta-supervisor\[research\]"):
        load_sp500_prices()
