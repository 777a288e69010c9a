"""Headless Debian chromium, driven by playwright: the one launch used by the browser tests
and by the screenshot script (scripts/screenshot.py imports it).

``./dev test`` installs Debian's ``chromium`` package when it is missing (never a browser
download). A missing browser is a failure naming the fix, not a skipped test.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
#: Loopback only: no proxy, no background traffic, no first-run pages, no GPU, no sandbox (root).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-proxy-server",
]


@contextmanager
def headless_chromium() -> Iterator[Any]:
    """A launched playwright browser on Debian's chromium; closed on exit."""
    if not CHROMIUM.is_file():
        raise AssertionError(
            f"{CHROMIUM} is missing: `apt-get install chromium` as root (./dev test does it)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
