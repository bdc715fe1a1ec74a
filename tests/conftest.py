"""Shared test set-up. Feature folders add their own conftest.py (tests/site, tests/workers, ...)."""
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CHROMIUM = Path("/usr/bin/chromium")
# Debian's chromium, as root, on a machine whose only network is the loopback.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture
def browser():
    """Headless Chromium through Playwright's sync API (never a downloaded browser build)."""
    if not CHROMIUM.exists():
        pytest.skip("needs Chromium at /usr/bin/chromium (apt install chromium)")
    # Playwright's sync API runs an event loop in this thread; Django's ORM would otherwise refuse to run.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
