"""The notebook API: the frames hold the recorded numbers (those ``explain --json`` and
``history --json`` print), in polars and, on request, pandas."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from typer.testing import CliRunner

from meta_supervisor import notebook as nb
from meta_supervisor.cli.main import app
from meta_supervisor.research.backtest import run_fleet
from meta_supervisor.research.scenarios import build_scenario

runner = CliRunner()


def _json(*args: object) -> dict:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("nb") / "demo-out"
    assert runner.invoke(app, ["demo", "--root", str(out)]).exit_code == 0
    return out


def test_decisions_and_weights_match_history_json(root: Path) -> None:
    history = _json("history", "--root", root, "--json")["entries"]
    frame = nb.decisions(root)
    assert isinstance(frame, pl.DataFrame)
    assert frame["seq"].to_list() == [e["seq"] for e in history]
    assert frame["hash"].to_list() == [e["hash"] for e in history]
    assert frame["cash"].to_list() == [e["cash"] for e in history]
    assert frame["gross"].to_list() == [e["gross"] for e in history]
    assert frame["turnover"][0] is None
    long = nb.weights(root)
    for e in history:
        got = long.filter(pl.col("seq") == e["seq"])
        assert dict(zip(got["agent"], got["weight"], strict=True)) == e["weights"]
    # the demo's story, in the frame: eridanus is cut between the two cycles
    eridanus = long.filter(pl.col("agent") == "eridanus")
    assert eridanus["weight"].to_list() == [0.25, 0.0]
    assert eridanus["change"].to_list() == [None, -0.25]


def test_explanations_and_factors_match_explain_json(root: Path) -> None:
    explained = _json("explain", "--root", root, "--json")
    frame = nb.explanations(root=root)
    assert sorted(frame["agent"]) == sorted(explained["agents"])
    assert frame["weight"].to_list() == sorted(frame["weight"], reverse=True)
    for row in frame.iter_rows(named=True):
        e = explained["agents"][row["agent"]]
        assert row["weight"] == e["weight"] and row["summary"] == e["summary"]
        assert all(row[k] == v for k, v in e["steps"].items())
        assert all(row[f"factor_{f['factor']}"] == f["value"] for f in e["factors"])
        failed = [g["gate"] for g in e["gates"] if not g["passed"]]
        assert row["gated_by"] == (failed[0] if failed else None)
    assert frame.filter(pl.col("agent") == "hydra")["override"].to_list() == ["exclude"]
    long = nb.factors(root=root)
    assert long.height == sum(len(e["factors"]) for e in explained["agents"].values())
    first = nb.explanations(root=root, seq=1)
    assert first.filter(pl.col("agent") == "eridanus")["gated_by"].to_list() == [None]
    every = nb.factors(root=root, all_decisions=True)
    assert sorted(set(every["seq"].to_list())) == [1, 2]


def test_pandas_on_request(root: Path) -> None:
    frame = nb.weights(root, pandas=True)
    assert isinstance(frame, pd.DataFrame)
    pd.testing.assert_frame_equal(frame, nb.weights(root).to_pandas())
    assert isinstance(nb.explanations(root=root, pandas=True), pd.DataFrame)


def test_no_history_is_loud(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no decision in the history"):
        nb.decisions(tmp_path)


def test_backtest_frames_hold_the_result() -> None:
    result = run_fleet(build_scenario("no_skill", 1), every_hours=24.0, progress=False)
    frames = nb.backtest_frames(result)
    equity, weights, metrics = frames["equity"], frames["weights"], frames["metrics"]
    for name, run in result.methods.items():
        mine = equity.filter(pl.col("method") == name)
        np.testing.assert_allclose(mine["equity_bps"].to_numpy(), result.equity(name))
        assert (mine["drawdown_bps"] <= 0).all()
        per_time = (
            weights.filter(pl.col("method") == name)
            .group_by("time", maintain_order=True)
            .agg(pl.col("weight").sum())
        )
        np.testing.assert_allclose(per_time["weight"].to_numpy(), run.weights.sum(axis=1))
        np.testing.assert_allclose(mine["gross"].to_numpy(), run.weights.sum(axis=1))
    assert set(metrics["method"]) == set(result.metrics)
    row = metrics.filter(pl.col("default"))
    assert row["method"].to_list() == [result.default_method]
    assert row["sharpe"][0] == result.metrics[result.default_method]["sharpe"]
    assert frames["agent_pnl"].height == len(result.times) * len(result.agents)


def test_docs_notebook_runs_as_written(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/NOTEBOOK.md's cells, in order, against a fresh demo (the docs match behaviour)."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "NOTEBOOK.md").read_text()
    cells = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    assert len(cells) >= 5
    monkeypatch.chdir(root.parent)
    namespace: dict[str, object] = {}
    for cell in cells:
        exec(compile(cell, "docs/NOTEBOOK.md", "exec"), namespace)
    moved = namespace["moved"]
    assert isinstance(moved, pl.DataFrame)
    assert dict(zip(moved["agent"], moved["change"], strict=True))["eridanus"] == -0.25
    # the tables shown in the doc are the frames' numbers
    for row in namespace["decisions"].iter_rows(named=True):  # type: ignore[attr-defined]
        assert f"{row['cash']:g}" in doc
    for agent, weight in zip(moved["agent"], moved["weight"], strict=True):
        assert f"│ {agent:<8} ┆ {weight!s:<8} ┆" in doc
