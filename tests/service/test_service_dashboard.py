"""The dashboard in a real headless browser (Debian's chromium, driven by playwright): it loads
with no console error, shows the allocation table and the chart, and a cycle committed from the
shell appears without a reload."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from browserkit import headless_chromium
from servekit import Server, demo_fleet, server_env, serving

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with headless_chromium() as launched:
        yield launched


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    demo_fleet(tmp_path / "fleet")
    with serving(tmp_path / "fleet", "--read-open") as running:
        yield running


def _open(browser: Any, url: str) -> tuple[Any, list[str]]:
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    problems: list[str] = []
    page.on(
        "console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type == "error" else None
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} {r.failure}"))
    page.goto(url)
    return page, problems


def test_dashboard_shows_the_allocation_and_follows_new_cycles(
    browser: Any, server: Server
) -> None:
    page, problems = _open(browser, server.base + "/")
    page.wait_for_selector("#allocation tbody tr[data-agent]")
    rows = page.locator("#allocation tbody tr[data-agent]")
    assert rows.count() == 8
    atlas = page.locator('#allocation tr[data-agent="atlas"]').inner_text()
    assert "25.00%" in atlas
    assert "capped" in atlas
    page.wait_for_selector("#weights-chart polygon.series", state="attached")
    entries = server.client.get("/v1/history").json()["points"]
    ever_allocated = {agent for e in entries for agent, w in e["weights"].items() if w > 0}
    # one band per agent that ever held capital, plus cash on top
    assert page.locator("#weights-chart polygon.series").count() == len(ever_allocated) + 1
    assert page.locator('#weights-chart [data-series="cash"]').count() == 1
    assert page.locator("#gross-chart .series").count() == 2
    assert "error_rate" in page.locator("#gated").inner_text()
    assert "hydra" in page.locator("#overrides").inner_text()
    assert "decision 1" in page.locator("#changes").inner_text()
    assert page.get_attribute("body", "data-seq") == "2"
    page.evaluate("window.__not_reloaded = true")

    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "meta_supervisor",
            "allocate",
            "--root",
            str(server.root),
            "--as-of",
            "2026-01-15T06:00:00Z",
        ],
        env=server_env(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr.decode()
    page.wait_for_selector('body[data-seq="3"]', state="attached", timeout=30_000)
    assert page.evaluate("window.__not_reloaded === true")  # updated in place
    assert "2026-01-15T06:00:00Z" in page.locator("#as-of").inner_text()
    assert "decision 2" in page.locator("#changes").inner_text()
    assert problems == []


def test_agent_page_and_api_page_load_cleanly(browser: Any, server: Server) -> None:
    page, problems = _open(browser, server.base + "/#/agent/cygnus")
    page.wait_for_selector("#factors-chart .series", state="attached")
    assert "cvar" in page.locator("main").inner_text()
    page.goto(server.base + "/docs")
    page.wait_for_selector("section h2 code")
    assert "/v1/allocation" in page.locator("main").inner_text()
    assert problems == []
