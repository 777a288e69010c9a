"""The README's screenshots, from real runs, in headless Debian chromium (tests/browserkit.py).

    ./dev serve &                                     # the dashboard on the demo fleet
    .venv/bin/python scripts/screenshot.py dashboard http://127.0.0.1:8750/ docs/dashboard.png

    .venv/bin/meta-supervisor backtest --scenario skill_blowups --seed 3 --cost-bps 2 \\
        --report /tmp/report/report.html
    .venv/bin/python scripts/screenshot.py report /tmp/report/report.html docs/report.png

Each page is awaited until it has drawn (the dashboard's table and chart, the report's charts);
the PNG is reduced to a palette so that it stays under 200 KB in the repository.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from browserkit import headless_chromium


def _save(png: bytes, out: Path, colors: int) -> None:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.quantize(colors=colors, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    print(f"{out}: {out.stat().st_size // 1024} KiB, {image.width}x{image.height}")


def dashboard(url: str, out: Path) -> None:
    """The dashboard at ``url`` (the whole page) once its table and chart are drawn."""
    with headless_chromium() as browser:
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(url)
        page.wait_for_selector("#allocation tbody tr[data-agent]")
        page.wait_for_selector("#weights-chart polygon.series", state="attached")
        _save(page.screenshot(full_page=True), out, colors=64)


def report(path: Path, out: Path) -> None:
    """The backtest report written by ``--report`` (first screen) once its charts are drawn."""
    with headless_chromium() as browser:
        page = browser.new_page(viewport={"width": 1100, "height": 1000})
        page.goto(path.resolve().as_uri())
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 7")
        _save(page.screenshot(full_page=False), out, colors=256)


if __name__ == "__main__":
    what, source, target = sys.argv[1:4]
    if what == "dashboard":
        dashboard(source, Path(target))
    elif what == "report":
        report(Path(source), Path(target))
    else:
        raise SystemExit(f"usage: {sys.argv[0]} dashboard URL OUT | report FILE OUT")
