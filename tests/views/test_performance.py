"""Realised performance between two decisions, against a per-record loop, and the demo's memo
of its second cycle read as a newcomer would: method, why, what changed, every number as
``explain --json`` has it."""

from __future__ import annotations

import json
import math
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from meta_supervisor.cli.main import app
from meta_supervisor.config import Paths
from meta_supervisor.cycle.run import load_ledger
from meta_supervisor.views.performance import realised_between

T0 = datetime(2026, 1, 15, tzinfo=UTC)
runner = CliRunner()

record_st = st.tuples(
    st.sampled_from(["a", "b", "c"]),
    st.integers(-20, 20),  # matured_at, hours from T0
    st.sampled_from([1, 24]),
    st.floats(-50, 50),
)


@settings(max_examples=100)
@given(st.lists(record_st, max_size=40), st.dictionaries(st.sampled_from("abd"), st.floats(0, 1)))
def test_realised_between_is_the_per_record_mean(records, weights) -> None:
    frame = pl.DataFrame(
        {
            "agent": [r[0] for r in records],
            "matured_at": [T0 + timedelta(hours=r[1]) for r in records],
            "horizon_hours": [r[2] for r in records],
            "realized_pnl_bps": [r[3] for r in records],
        },
        schema={
            "agent": pl.String,
            "matured_at": pl.Datetime("us", "UTC"),
            "horizon_hours": pl.Int64,
            "realized_pnl_bps": pl.Float64,
        },
    )
    start, end = T0 - timedelta(hours=6), T0
    out = realised_between(frame, weights, start, end, 24)
    total = 0.0
    for agent in sorted(set(weights) | {r[0] for r in records}):
        inside = [r[3] for r in records if r[0] == agent and -6 < r[1] <= 0 and r[2] == 24]
        got = out["agents"].get(agent)
        if not inside and agent not in weights:
            assert got is None or got["n"] == 0
            continue
        assert got["n"] == len(inside)
        mean = math.fsum(inside) / len(inside) if inside else None
        if mean is None:
            assert got["mean_realized_bps"] is None and got["contribution_bps"] == 0
        else:
            assert got["mean_realized_bps"] == pytest.approx(mean)
            assert got["contribution_bps"] == pytest.approx(weights.get(agent, 0.0) * mean)
            total += weights.get(agent, 0.0) * mean
    assert out["contribution_bps"] == pytest.approx(total, abs=1e-9)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("memo") / "demo-out"
    assert runner.invoke(app, ["demo", "--root", str(root)]).exit_code == 0
    return root


def test_the_demo_memo_tells_the_second_cycle(demo: Path) -> None:
    memo = runner.invoke(app, ["explain", "--format", "md", "--root", str(demo)]).stdout
    explained = json.loads(runner.invoke(app, ["explain", "--json", "--root", str(demo)]).stdout)
    head, appendix = memo.split("## Appendix: agents", 1)
    # which method
    assert "This decision used the **`select`** profile" in head
    assert "q = rule: the share the rule it follows gives each agent" in head
    # what changed, and why: the gate that flipped
    changed = head.split("### What changed since the previous decision", 1)[1]
    changed = changed.split("###", 1)[0]
    assert "eridanus: 25.00% -> 0.00% (-25.00 pp): gate error_rate fails now" in changed
    assert "eridanus left the eligible fleet" not in changed  # the per-agent line is decisive
    assert "- fornax: 2.11% -> 7.11% (+5.00 pp)" in changed
    # realised since then, from the ledger
    paths = Paths.under(demo)
    first = runner.invoke(app, ["explain", "--seq", "1", "--json", "--root", str(demo)])
    previous = json.loads(first.stdout)
    ledger = load_ledger(paths)
    realised = realised_between(
        ledger.records,
        {n: a["weight"] for n, a in previous["agents"].items()},
        datetime(2026, 1, 14, 18, tzinfo=UTC),
        T0,
        24,
    )
    assert f"realised **{realised['contribution_bps']:+.2f} bps**" in head
    # risk and operator actions
    assert "- eridanus: gated by `error_rate` (error rate 15.6% vs limit 15.0%)" in head
    assert "- hydra: exclusion by risk-desk, expires 2026-01-18T00:00:00Z" in head
    # why each agent has its weight: every number of explain --json, in the appendix
    for name, e in explained["agents"].items():
        section = appendix.split(f"### {name} ({e['strategy']}): {e['weight']:.2%}", 1)[1]
        section = section.split("\n### ", 1)[0]
        assert f"> {e['summary']}" in section
        for f in e["factors"]:
            assert re.search(rf"\| {f['factor']} \| x?{f['value']:.3f} \|", section), f
        for key, value in e["steps"].items():
            shown = f"{value:.4f}" if key == "quality" else f"{value:.4%}"
            assert f"| {key} | {shown} |" in section, key


def test_memo_without_a_ledger_says_so(demo: Path, tmp_path: Path) -> None:
    copy = tmp_path / "demo-out"
    shutil.copytree(demo, copy)
    (copy / "alpha" / "reconciled.jsonl").unlink()
    result = runner.invoke(app, ["explain", "--format", "md", "--root", str(copy)])
    assert result.exit_code == 0
    assert "Not available: no previous decision, or the ledger was not read." in result.stdout
    assert "realised performance left out of the memo" in result.stderr
