"""The backtest runs the live cycle, sees nothing from the future, and books PnL as documented."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from meta_supervisor.cli.backtest import parse_duration
from meta_supervisor.cli.main import app
from meta_supervisor.cycle.run import Ledger, decide
from meta_supervisor.policy.model import Policy, Profile
from meta_supervisor.research.backtest import agent_period_pnl, run_backtest, run_fleet
from meta_supervisor.research.simulate import Blowup, FleetSpec, write_fleet

SPEC = FleetSpec(
    n_agents=8,
    days=9,
    skilled_share=0.25,
    negative_share=0.25,
    interval_hours=(2, 6),
    horizons=(4, 24),
    blowups=(Blowup("momentum", start_hour=120.0),),
)


@pytest.fixture(scope="module")
def fleet(fleets):
    return fleets(SPEC, 11)


@pytest.fixture(scope="module")
def result(fleet):
    return run_fleet(
        fleet,
        every_hours=6.0,
        warmup_hours=48.0,
        progress=False,
        baseline_names=["equal_weight", "seed_original"],
    )


def test_every_profile_and_baseline_is_run_on_the_same_times(result):
    assert set(result.methods) == {p.value for p in Profile} | {"equal_weight", "seed_original"}
    assert result.default_method == Policy().profile.value
    n = len(result.times)
    assert n == (9 * 24 - 48) // 6  # t_k + every <= end, first at start + warm-up
    for run in result.methods.values():
        assert run.weights.shape == (n, len(result.agents))
        # (the seed as written rounds to 6 decimals and can exceed 1 by a few 1e-6)
        assert (run.weights >= 0).all() and (run.weights.sum(axis=1) <= 1 + 1e-5).all()


# Weights are rounded *down* to 1e-6: inputs equal up to float reassociation (~1e-12
# relative, the incremental engine's running sums) can move a weight by one unit.
WEIGHT_KEYS = {"weight", "final", "cash", "gross", "weights"}


def _assert_same_decision(ours: dict, alone: dict, path: str = "", weight: bool = False) -> None:
    """Equal decisions up to float reassociation: every string, bool, int and key exactly;
    floats to 1e-9 relative (a record counted on the wrong side of a window edge moves a count
    by 1 and a bps sum by tens); weights to one unit of the rounding; the inputs fingerprint
    (a hash of the raw floats) is not compared."""
    if isinstance(alone, dict):
        assert ours.keys() == alone.keys(), path
        for key, value in alone.items():
            if key != "inputs_fingerprint":
                _assert_same_decision(
                    ours[key], value, f"{path}.{key}", weight or key in WEIGHT_KEYS
                )
    elif isinstance(alone, list):
        assert len(ours) == len(alone), path
        for i, (a, b) in enumerate(zip(ours, alone, strict=True)):
            _assert_same_decision(a, b, f"{path}[{i}]", weight)
    elif isinstance(alone, float) and not isinstance(ours, bool):
        tol = 1.01e-6 if weight else 1e-9
        assert ours == pytest.approx(alone, rel=1e-9, abs=tol), path
    else:
        assert ours == alone, path


def test_backtest_decisions_equal_a_standalone_cycle_at_each_t(fleet, result):
    # the incremental engine (default): same decision up to float reassociation
    compared = 0
    for profile in Profile:
        run = result.methods[profile.value]
        policy = Policy(profile=profile)
        previous = None
        for k, t in enumerate(result.times):
            if k in (0, 5, len(result.times) - 1) or k % 7 == 0:
                alone = decide(fleet.ledger, t, policy, previous)
                _assert_same_decision(run.decisions[k].to_dict(), alone.to_dict())
                row = {
                    a: run.weights[k, i] for i, a in enumerate(result.agents) if run.weights[k, i]
                }
                assert row.keys() == alone.weights.keys()
                for agent, w in alone.weights.items():
                    assert row[agent] == pytest.approx(w, abs=1.01e-6)
                compared += 1
            previous = run.decisions[k].weights
    assert compared > 10


def test_full_engine_is_byte_identical_to_a_standalone_cycle(fleet, result):
    full = run_fleet(
        fleet, every_hours=6.0, warmup_hours=48.0, progress=False, baseline_names=[],
        engine="full",
    )  # fmt: skip
    for profile in Profile:
        run = full.methods[profile.value]
        policy = Policy(profile=profile)
        previous = None
        for k, t in enumerate(full.times):
            if k in (0, len(full.times) - 1) or k % 5 == 0:
                alone = decide(fleet.ledger, t, policy, previous)
                assert alone.to_json() == run.decisions[k].to_json()
            previous = run.decisions[k].weights
        # and the incremental run agrees with it to one unit of the weight rounding
        np.testing.assert_allclose(result.methods[profile.value].weights, run.weights, atol=1.01e-6)


def test_an_unknown_engine_is_refused(fleet):
    with pytest.raises(ValueError, match="unknown engine"):
        run_fleet(fleet, progress=False, baseline_names=[], engine="magic")


def _corrupt_after(ledger: Ledger, t) -> Ledger:
    future = pl.col("matured_at") > t
    records = ledger.records.with_columns(
        pl.when(future)
        .then(pl.col("realized_pnl_bps") * -50 - 999)
        .otherwise(pl.col("realized_pnl_bps")),
        pl.when(future).then(pl.lit(-5000.0)).otherwise(pl.col("gap_bps")).alias("gap_bps"),
        pl.when(future).then(pl.lit("evil")).otherwise(pl.col("strategy")).alias("strategy"),
    )
    telemetry = ledger.telemetry.with_columns(
        pl.when(pl.col("ts") > t).then(True).otherwise(pl.col("is_error")).alias("is_error")
    )
    return Ledger(records=records, telemetry=telemetry)


@pytest.mark.parametrize("profile", list(Profile))
def test_corrupting_every_record_that_matures_after_t_does_not_change_the_decision(
    fleet, result, profile
):
    policy = Policy(profile=profile)
    for k in (3, len(result.times) // 2, len(result.times) - 2):
        t = result.times[k]
        previous = result.methods[profile.value].decisions[k - 1].weights
        clean = decide(fleet.ledger, t, policy, previous)
        dirty = decide(_corrupt_after(fleet.ledger, t), t, policy, previous)
        assert clean.to_json() == dirty.to_json()
        assert clean.weights  # something was at stake


def test_period_pnl_is_the_weighted_mean_of_each_agents_records_booked_by_signal_time(
    fleet, result
):
    every = timedelta(hours=result.every_hours)
    col = {a: i for i, a in enumerate(result.agents)}
    brute = np.zeros((len(result.times), len(result.agents)))
    rows = fleet.records.filter(pl.col("horizon_hours") == 24).iter_rows(named=True)
    buckets: dict[tuple[int, int], list[float]] = {}
    for row in rows:
        for k, t in enumerate(result.times):
            if t <= row["ts"] < t + every:
                buckets.setdefault((k, col[row["agent"]]), []).append(row["realized_pnl_bps"])
    for (k, i), values in buckets.items():
        brute[k, i] = sum(values) / len(values)
    np.testing.assert_allclose(result.agent_pnl, brute, atol=1e-9)
    for run in result.methods.values():
        expected = [
            math.fsum(run.weights[k, i] * brute[k, i] for i in range(len(result.agents)))
            for k in range(len(result.times))
        ]
        np.testing.assert_allclose(run.period_pnl, expected, atol=1e-9)


def test_other_horizons_are_never_booked(fleet, result):
    only_4h = fleet.records.filter(pl.col("horizon_hours") == 4)
    p = agent_period_pnl(only_4h, result.times, result.every_hours, 24, result.agents)
    assert not p.any()


def test_blowup_events_feed_the_derisk_metric(result):
    assert result.events and all(a.split("-")[0] == "agent" for a, _ in result.events)
    for values in result.metrics.values():
        assert not math.isnan(values["derisk_hours"])


def test_same_inputs_same_backtest(fleet, result):
    again = run_fleet(
        fleet,
        every_hours=6.0,
        warmup_hours=48.0,
        progress=False,
        baseline_names=["equal_weight", "seed_original"],
    )
    assert again.metrics == result.metrics


def test_too_short_a_ledger_is_a_clear_error(fleet):
    with pytest.raises(ValueError, match="no rebalance"):
        run_backtest(fleet.ledger, fleet.start, fleet.start + timedelta(hours=10), progress=False)
    with pytest.raises(KeyError, match="unknown baseline"):
        run_fleet(fleet, progress=False, baseline_names=["astrology"])


def test_parse_duration():
    assert parse_duration("6h") == 6.0
    assert parse_duration("30m") == 0.5
    assert parse_duration("1d") == 24.0
    assert parse_duration("4") == 4.0
    for bad in ("", "6 hours", "-1h", "0h"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_cli_backtest_on_files_prints_json_metrics_for_every_method(fleet, tmp_path):
    rec, tel = write_fleet(fleet, tmp_path)
    out = CliRunner().invoke(
        app,
        [
            "backtest",
            "--records",
            str(rec),
            "--telemetry",
            str(tel),
            "--every",
            "12h",
            "--warmup",
            "2d",
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout[out.stdout.index("{") :])
    assert doc["every_hours"] == 12.0
    assert {p.value for p in Profile} | {"equal_weight", "inverse_vol"} <= set(doc["metrics"])
    assert set(doc["metrics"]["equal_weight"]) >= {"sharpe", "max_drawdown_bps", "turnover"}


def test_cli_backtest_on_the_ingested_store_equals_the_backtest_on_its_files(fleet, tmp_path):
    from meta_supervisor.ingest.batch import ingest

    rec, tel = write_fleet(fleet, tmp_path)
    ingest([rec, tel], tmp_path / "ledger")
    common = ["backtest", "--every", "12h", "--warmup", "2d", "--json"]
    runs = [
        CliRunner().invoke(app, [*common, *source])
        for source in (
            ["--ledger", str(tmp_path / "ledger")],
            ["--records", str(rec), "--telemetry", str(tel)],
        )
    ]
    assert all(r.exit_code == 0 for r in runs), [r.output for r in runs]
    docs = [json.loads(r.stdout[r.stdout.index("{") :]) for r in runs]
    assert docs[0]["metrics"] == docs[1]["metrics"] and docs[0]["periods"] > 0
    missing = CliRunner().invoke(app, ["backtest", "--ledger", str(tmp_path / "none")])
    assert missing.exit_code == 2 and "no ingested ledger" in " ".join(missing.output.split())


def test_cli_backtest_refuses_bad_usage():
    runner = CliRunner()
    both = runner.invoke(app, ["backtest"])
    assert both.exit_code == 2
    bad = runner.invoke(app, ["backtest", "--scenario", "nope"])
    assert bad.exit_code == 2 and "no_skill" in bad.output
    listed = runner.invoke(app, ["backtest", "--list"])
    assert listed.exit_code == 0 and "skill_blowups" in listed.output


def test_cli_error_messages_keep_their_brackets(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "skfolio.datasets", None)
    out = CliRunner().invoke(app, ["backtest", "--scenario", "real_prices"])
    assert out.exit_code == 2
    assert "[research]" in out.output


def test_corrupting_the_future_leaves_the_incremental_backtest_unchanged_up_to_t(fleet, result):
    k = len(result.times) // 2
    t = result.times[k]
    dirty = run_backtest(
        _corrupt_after(fleet.ledger, t),
        fleet.start,
        fleet.end,
        every_hours=6.0,
        warmup_hours=48.0,
        profiles=[Policy().profile],
        baseline_names=[],
        progress=False,
    )
    clean = result.methods[Policy().profile.value].decisions
    mine = dirty.methods[Policy().profile.value].decisions
    assert [d.to_json() for d in mine[: k + 1]] == [d.to_json() for d in clean[: k + 1]]
    assert mine[-1].to_json() != clean[-1].to_json()  # the corruption does reach later cycles


@pytest.mark.parametrize("profile", [Profile.SEED, Profile.EVIDENCE, Profile.SELECT])
def test_the_array_walk_gives_the_per_cycle_paths_backtest_bit_for_bit(fleet, profile, monkeypatch):
    """The engines walk the ledger as NumPy columns (signals/arrays.py); advancing them on the
    frame each cycle, as before, gives the same weights, decisions and metrics, to the bit."""
    from meta_supervisor.research import backtest

    def run():
        return run_fleet(
            fleet,
            policy=Policy(profile=profile),
            every_hours=3.0,
            warmup_hours=24.0,
            progress=False,
            baseline_names=["equal_weight", "inverse_vol"],
        )

    walked = run()
    monkeypatch.setattr(backtest, "_walk", lambda ledger, horizon: None)
    stepped = run()
    assert walked.methods.keys() == stepped.methods.keys()
    for name, method in walked.methods.items():
        assert method.weights.tobytes() == stepped.methods[name].weights.tobytes()
        # every decision whole: weights, portfolio, explanations, inputs fingerprint
        assert method.decisions == stepped.methods[name].decisions
    assert json.dumps(walked.to_dict()) == json.dumps(stepped.to_dict())


def test_period_pnl_sums_in_record_order_whatever_the_thread_split():
    """The period mean is the left-to-right sum of the records in the order given, over their
    count: the same bits in every run. Polars' parallel group-by summed partitions in an order
    that varied between two calls in one process at 10M records (a backtest's metrics differed
    in their last bits); the values here make the order visible (1e16 absorbs a 1 in one
    order, not in another), on enough rows for the group-by to split them."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    n = 400_000
    rng = np.random.default_rng(7)
    agent = rng.integers(0, 3, n)
    values = rng.choice(np.array([1e16, 1.0, -1e16, 3.0, 0.5]), n)
    seconds = rng.integers(0, 4 * 3600, n)
    records = pl.DataFrame(
        {
            "s": seconds,
            "agent": [f"a{i}" for i in agent],
            "horizon_hours": np.full(n, 24, dtype=np.int64),
            "realized_pnl_bps": values,
        }
    ).select(
        (pl.lit(t0) + pl.duration(seconds=pl.col("s"))).alias("ts"),
        "agent",
        "horizon_hours",
        "realized_pnl_bps",
    )
    times = [t0 + timedelta(hours=h) for h in range(4)]
    got = agent_period_pnl(records, times, 1.0, 24, ["a0", "a1", "a2"])
    period = seconds // 3600
    for k in range(4):
        for i in range(3):
            chosen = values[(period == k) & (agent == i)]
            expected = sum(chosen.tolist(), 0.0) / chosen.size  # left to right
            assert got[k, i] == expected or (math.isnan(got[k, i]) and math.isnan(expected))
