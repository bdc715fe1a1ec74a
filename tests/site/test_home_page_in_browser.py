"""One real browser walk (headless Chromium): home -> a dataset's candidates -> a reference; a chart draws."""
from pathlib import Path

import pytest
from django.conf import settings
from snapshot_source import SNAPSHOT_DIR

from leaderboard.registry.snapshot import load_snapshot

ARTIFACTS = Path(settings.BASE_DIR) / "test-artifacts"

pytestmark = [
    pytest.mark.browser,
]



def test_home_candidates_reference_and_chart(live_server, browser, transactional_db):
    load_snapshot(SNAPSHOT_DIR)
    page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    page.goto(f"{live_server.url}/")
    row = page.locator("#dataset-mit67")
    candidates = row.locator("details.candidates")
    assert not candidates.locator("table").is_visible()
    candidates.locator("summary").click()
    assert candidates.locator("table").is_visible()
    assert candidates.locator("tbody tr").count() == 5

    candidates.locator("a", has_text="[3]").first.click()
    page.wait_for_url("**/references/#ref-Gong2014")
    reference = page.locator("#ref-Gong2014")
    assert reference.is_visible()
    assert "Multi-scale Orderless Pooling" in reference.inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "site-reference.png"))

    page.goto(f"{live_server.url}/datasets/mit67/")
    page.wait_for_selector("#board-chart .main-svg", timeout=15000)  # plotly.js from our static files drew it
    assert page.locator("#board-chart .bars path").count() == 5
    page.screenshot(path=str(ARTIFACTS / "site-dataset-mit67.png"), full_page=True)
    assert errors == []
