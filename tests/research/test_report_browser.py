"""The HTML tearsheet in a real headless browser (Debian's chromium, driven by playwright; the
``./dev`` script installs chromium when it is missing): it renders every chart with no console
error and requests nothing beyond the file itself, i.e. it works offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from browserkit import headless_chromium
from meta_supervisor.research.backtest import run_fleet
from meta_supervisor.research.report import write_report
from meta_supervisor.research.simulate import Blowup, FleetSpec, simulate_fleet

CHARTS = 7  # equity, drawdown, rolling Sharpe, turnover, contribution, weights, heatmap


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = FleetSpec(n_agents=6, days=6, skilled_share=0.5, blowups=(Blowup("momentum", 80.0),))
    result = run_fleet(
        simulate_fleet(spec, 3),
        every_hours=12.0,
        warmup_hours=48.0,
        progress=False,
        baseline_names=["equal_weight"],
    )
    path = tmp_path_factory.mktemp("report") / "report.html"
    return write_report(result, path, title="browser check", cost_bps=1.0, png=False)


def test_report_renders_offline_with_no_console_error(report: Path) -> None:
    errors: list[str] = []
    requests: list[str] = []
    with headless_chromium() as browser:
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(report.as_uri())
        page.wait_for_function(
            f"document.querySelectorAll('.js-plotly-plot').length === {CHARTS}",
            timeout=60_000,
        )
        # every chart drew its data (an SVG layer with traces), not an empty frame
        drawn = page.evaluate(
            "[...document.querySelectorAll('.js-plotly-plot')]"
            ".filter(d => d.querySelector('.main-svg') && d.data && d.data.length > 0).length"
        )
        # the heatmap's factor menu switches the trace shown
        page.click("#factors-heatmap .updatemenu-header-group")
        menu = page.locator("#factors-heatmap .updatemenu-item-text", has_text="drawdown")
        menu.first.click()
        shown = page.evaluate(
            "document.getElementById('factors-heatmap').data"
            ".filter(t => t.visible === true).map(t => t.name)"
        )
        shot = page.screenshot(full_page=False)
    assert errors == []
    assert [u for u in requests if not u.startswith("file://")] == []
    assert drawn == CHARTS
    assert shown == ["drawdown"]  # the default profile's (select) factors
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"
