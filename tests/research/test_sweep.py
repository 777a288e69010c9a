"""Sweeps: each cell is the backtest alone; finished cells are reused; Ray gives the same table."""

from __future__ import annotations

import math

import polars as pl
import pytest
from typer.testing import CliRunner

from meta_supervisor.cli.main import app
from meta_supervisor.policy.model import Policy, Profile
from meta_supervisor.research.backtest import run_fleet
from meta_supervisor.research.scenarios import build_scenario
from meta_supervisor.research.sweep import (
    cell_key,
    grid,
    ray_executor,
    run_cell,
    run_sweep,
    serial_executor,
    walk_forward,
)

TO = "2026-01-10T00:00:00Z"  # 3 days after the warm-up: a dozen rebalances


def _cells():
    return grid(
        ["no_skill"],
        [0],
        {"profile": ["select"], "selection_t0": [2.0, 3.0]},
        profiles=["select"],
        baselines=["equal_weight"],
        folds=[("early", None, TO)],
    )


def test_a_cell_is_the_backtest_run_alone():
    cell = _cells()[0]
    rows = {r["method"]: r for r in run_cell(cell)}
    fleet = build_scenario("no_skill", 0)
    alone = run_fleet(
        fleet,
        policy=Policy(profile=Profile.SELECT, selection_t0=2.0),
        profiles=[Profile.SELECT],
        baseline_names=["equal_weight"],
        progress=False,
        date_to=pl.Series([TO]).str.to_datetime(time_zone="UTC")[0],
    )
    assert set(rows) == set(alone.metrics)
    for method, metrics in alone.metrics.items():
        for key in ("sharpe", "max_drawdown_bps", "total_pnl_bps", "mean_gross"):
            assert rows[method][key] == metrics[key]
        assert rows[method]["periods"] == len(alone.times)


def test_the_key_ignores_the_fold_label_and_nothing_else():
    a, b = _cells()
    assert cell_key(a) != cell_key(b)
    assert cell_key(a) == cell_key(type(a)(**{**a.__dict__, "fold": "renamed"}))


def test_rerunning_reuses_finished_cells(tmp_path):
    calls = []

    def counting(function, cells):
        calls.extend(cells)
        return serial_executor(function, cells)

    first = run_sweep(_cells(), tmp_path, counting)
    assert len(calls) == 2 and first.height == 4
    again = run_sweep(_cells(), tmp_path, counting)
    assert len(calls) == 2  # nothing ran again
    assert again.sort("cell", "method").equals(first.sort("cell", "method"))
    assert (tmp_path / "summary.html").read_text().count("<tr>") >= 3


def test_walk_forward_chooses_on_train_folds_and_reports_on_the_test_fold():
    rows = []
    for fold, knobs, sharpe in [
        ("a", "k=1", 1.0),
        ("a", "k=2", 2.0),
        ("b", "k=1", 5.0),
        ("b", "k=2", 0.0),
    ]:
        rows.append({"fold": fold, "knobs": knobs, "method": "m", "sharpe": sharpe})
    out = walk_forward(pl.DataFrame(rows), "m", {"b": ["a"]})
    row = out.row(0, named=True)
    assert row["chosen_knobs"] == "k=2" and row["test_sharpe"] == 0.0
    assert row["in_sample_best_knobs"] == "k=1"


def test_sweep_command_serial(tmp_path):
    out = CliRunner().invoke(
        app,
        [
            "sweep",
            "--scenario",
            "no_skill",
            "--set",
            "profile=select",
            "--profile",
            "select",
            "--baseline",
            "equal_weight",
            "--fold",
            "early::2026-01-09",
            "--executor",
            "serial",
            "--out",
            str(tmp_path),
        ],
    )
    assert out.exit_code == 0, out.output
    table = pl.read_parquet(tmp_path / "results.parquet")
    assert set(table["method"]) == {"select", "equal_weight"}
    assert all(not math.isnan(x) for x in table["sharpe"])


def test_sweep_command_names_a_bad_knob(tmp_path):
    out = CliRunner().invoke(
        app, ["sweep", "--scenario", "no_skill", "--set", "min_recrods=3", "--out", str(tmp_path)]
    )
    assert out.exit_code == 2 and "min_records" in out.output


@pytest.mark.slow
def test_ray_gives_the_serial_table(tmp_path):
    serial = run_sweep(_cells(), tmp_path / "serial", serial_executor)
    on_ray = run_sweep(_cells(), tmp_path / "ray", ray_executor(num_cpus=2))
    assert on_ray.sort("cell", "method").equals(serial.sort("cell", "method"))
