"""The HTML tearsheet is self-contained (nothing fetched), holds the tearsheet's numbers, and the
static charts export to PNG."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from meta_supervisor.research import backtest as bt
from meta_supervisor.research.backtest import run_fleet
from meta_supervisor.research.report import (
    accounting_html,
    factor_matrix,
    factor_rows,
    render_html,
    write_report,
)
from meta_supervisor.research.simulate import Blowup, FleetSpec, simulate_fleet
from meta_supervisor.research.tearsheet import contributions, drawdown_periods, monthly_returns

PLOTS = ("equity", "drawdown", "rolling-sharpe", "turnover", "contribution", "weights")


@pytest.fixture(scope="module")
def result():
    spec = FleetSpec(n_agents=6, days=6, skilled_share=0.5, blowups=(Blowup("momentum", 80.0),))
    return run_fleet(
        simulate_fleet(spec, 3),
        every_hours=12.0,
        warmup_hours=48.0,
        progress=False,
        baseline_names=["equal_weight"],
    )


@pytest.fixture(scope="module")
def page(result) -> str:
    return render_html(result, title="t", cost_bps=2.0)


def test_html_is_self_contained_and_names_every_method(page, result):
    # Nothing to fetch: no script, stylesheet, image or font from elsewhere; plotly inlined.
    assert not re.search(
        r"<script[^>]*src=|<link[^>]*href=|<img[^>]*src=\"?http|@import|url\(http", page
    )
    # plotly.js is inlined once (its source names its CDN in strings; the browser test shows
    # that nothing is requested); the rest of the page names no address at all
    assert page.count("<script") == 1 + len(PLOTS) + 1  # the library, then one per chart
    outside = re.sub(r"<script.*?</script>", "", page, flags=re.S)
    assert "http" not in outside
    for div in (*PLOTS, "factors-heatmap"):
        assert f'id="{div}"' in page, div
    for name in result.methods:
        assert f"<b>{name}</b>" in page
    assert "after a trading cost of 2 bps" in page


def test_tearsheet_sections_hold_their_numbers(page, result):
    run = result.methods[result.default_method]
    r = run.period_pnl - 2.0 * np.concatenate(
        [[run.weights[0].sum()], np.abs(np.diff(run.weights, axis=0)).sum(axis=1)]
    )
    for (year, _), value in monthly_returns(result.times, r).items():
        assert f"{value:+.1f}</td>" in page and f"<td>{year}</td>" in page
    for e in drawdown_periods(r, top=5):
        assert f"<td>{e['depth_bps']:.1f}</td>" in page
    contrib = contributions(run.weights, result.agent_pnl)
    for value in contrib:
        assert f"<td>{float(value):+.1f}</td>" in page
    assert f"Σ = {float(contrib.sum()):+.1f}" in page
    assert math.isclose(contrib.sum(), run.period_pnl.sum(), rel_tol=1e-9, abs_tol=1e-9)


def test_accounting_is_rendered_not_raw_markup(page):
    """Regression: the Accounting section showed the docstring's raw ``**`` and double
    backquotes."""
    section = page.split("<h2>Accounting</h2>", 1)[1]
    assert "**" not in section and "``" not in section
    assert "<b>Booking</b>" in section and "<code>matured_at ≤ t_k</code>" in section
    items = accounting_html(bt.__doc__ or "").count("<li>")
    assert items == (bt.__doc__ or "").split("Accounting", 1)[1].count("\n* ")


def test_factor_heatmap_is_the_default_decisions_factors(result):
    agents, names, values = factor_matrix(result)
    decisions = result.methods[result.default_method].decisions
    assert names == [f["factor"] for f in next(iter(decisions[0].agents.values()))["factors"]]
    for k, d in enumerate(decisions):
        for a, agent in enumerate(agents):
            e = d.agents[agent]
            gated = not all(g["passed"] for g in e["gates"])
            for f in e["factors"]:
                got = values[f["factor"]][a, k]
                assert math.isnan(got) if gated else got == f["value"]


def test_write_report_exports_each_chart_as_png(result, tmp_path):
    path = write_report(result, tmp_path / "r.html", title="t")
    assert path.read_text(encoding="utf-8").startswith("<!doctype html>")
    pngs = sorted(p.name for p in tmp_path.glob("r-*.png"))
    assert pngs == [
        f"r-{n}.png" for n in sorted(["equity", "drawdown", "weights", "cash", "factors"])
    ]
    for p in tmp_path.glob("r-*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_factor_rows_are_the_default_decisions_explanations(result):
    k = len(result.times) - 1
    rows = factor_rows(result, k)
    decision = result.methods[result.default_method].decisions[k]
    assert {r["agent"] for r in rows} == set(decision.agents)
    for r in rows:
        assert r["weight"] == decision.agents[r["agent"]]["weight"]
        assert set(r["factors"]) == {f["factor"] for f in decision.agents[r["agent"]]["factors"]}
