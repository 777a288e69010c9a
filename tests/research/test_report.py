"""The HTML report is self-contained (nothing fetched) and the charts export to PNG."""

from __future__ import annotations

import re

import pytest

from meta_supervisor.research.backtest import run_fleet
from meta_supervisor.research.report import factor_rows, render_html, write_report
from meta_supervisor.research.simulate import Blowup, FleetSpec, simulate_fleet


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


def test_html_is_self_contained_and_names_every_method(result):
    page = render_html(result, title="t")
    # Nothing to fetch: no script, stylesheet, image or font from elsewhere.
    assert not re.search(
        r"<script[^>]*src=|<link[^>]*href=|<img[^>]*src=\"?http|@import|url\(http", page
    )
    assert page.count("<svg") == 5
    for name in result.methods:
        assert f"<b>{name}</b>" in page
    assert "Accounting" in page and "matured_at" in page


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
