"""Screenshot of the dashboard for the README: ``python scripts/dashboard_screenshot.py URL OUT``.

Drives Debian's chromium (headless, loopback only) with playwright, waits until the allocation
table and the chart are drawn, and writes a palette PNG (small enough for the repository).
Used on ``./dev serve``'s demo fleet: ``docs/dashboard.png``.
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
    "--no-proxy-server",
]


def main(url: str, out: Path) -> None:
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(url)
        page.wait_for_selector("#allocation tbody tr[data-agent]")
        page.wait_for_selector("#weights-chart polygon.series", state="attached")
        shot = page.screenshot(full_page=True)
        browser.close()
    image = Image.open(io.BytesIO(shot)).convert("RGB")
    image.quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    print(f"{out}: {out.stat().st_size // 1024} KiB, {image.width}x{image.height}")


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
