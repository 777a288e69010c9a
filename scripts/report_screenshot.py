"""The README's screenshot of the backtest report, from a real run, in headless chromium.

    .venv/bin/meta-supervisor backtest --scenario skill_blowups --seed 3 --cost-bps 2 \\
        --report /tmp/report/report.html
    .venv/bin/python scripts/report_screenshot.py /tmp/report/report.html docs/report.png

Debian's chromium (``apt-get install chromium``) driven by playwright; the page is the one
``--report`` wrote, opened from disk (nothing fetched). The PNG is reduced to a 256-colour
palette so that it stays under 200 KB.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def main(report: Path, out: Path) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 1000})
        page.goto(report.resolve().as_uri())
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 7")
        png = page.screenshot(full_page=False)
        browser.close()
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256)
    image.save(out, optimize=True)
    print(f"{out}: {out.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
