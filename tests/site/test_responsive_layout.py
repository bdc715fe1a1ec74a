"""The browsing pages fit a phone (390 px) and a desktop (1280 px): no sideways page scroll, readable charts."""

import pytest
from snapshot_source import SNAPSHOT_DIR

from leaderboard.registry.snapshot import load_snapshot

PAGES = ["/", "/datasets/mit67/", "/datasets/ilsvrc2012_cls/", "/references/", "/overview/", "/api/docs/"]
PHONE, DESKTOP = {"width": 390, "height": 844}, {"width": 1280, "height": 900}

pytestmark = [
    pytest.mark.browser,
]

# Pixels by which the page, or any .table-wrap box, is wider than what is shown.
OVERFLOW = """() => {
  const root = document.documentElement;
  const boxes = Array.from(document.querySelectorAll('.table-wrap')).map(n => n.scrollWidth - n.clientWidth);
  return {page: root.scrollWidth - root.clientWidth, tables: Math.max(0, ...boxes)};
}"""

# Tick labels of a plotly chart that stick out of the chart's box (cut off on screen).
CUT_LABELS = """(id) => {
  const chart = document.getElementById(id).getBoundingClientRect();
  return Array.from(document.querySelectorAll('#' + id + ' .ytick text, #' + id + ' .xtick text'))
    .filter(t => { const r = t.getBoundingClientRect(); return r.left < chart.left - 1 || r.right > chart.right + 1; })
    .map(t => t.textContent);
}"""



def test_pages_fit_phone_and_desktop(live_server, browser, transactional_db):
    load_snapshot(SNAPSHOT_DIR)
    for viewport in (PHONE, DESKTOP):
        page = browser.new_page(viewport=viewport)
        errors: list[str] = []
        page.on("pageerror", lambda error, errors=errors: errors.append(str(error)))
        for path in PAGES:
            page.goto(f"{live_server.url}{path}")
            assert page.evaluate(OVERFLOW) == {"page": 0, "tables": 0}, (path, viewport)
        assert errors == []
        page.close()


def test_phone_board_rows_are_compact_and_chart_labels_fit(live_server, browser, transactional_db):
    load_snapshot(SNAPSHOT_DIR)
    page = browser.new_page(viewport=PHONE)
    page.goto(f"{live_server.url}/datasets/mit67/")
    page.wait_for_selector("#board-chart .main-svg", timeout=15000)
    # Every result shows its score on screen, and a row is a few lines, not a column of single words.
    for row in page.locator("table.board tbody tr").all():
        score = row.locator("td.score").bounding_box()
        assert score["x"] + score["width"] <= PHONE["width"], row.inner_text()
        assert row.bounding_box()["height"] < 260, row.inner_text()
    assert page.evaluate(CUT_LABELS, "board-chart") == []

    # A long name is shortened on the axis; the hover text keeps it whole.
    hover = page.evaluate("document.getElementById('board-chart').data.flatMap(t => t.customdata)")
    assert any("Caffe/AlexNet + multi-scale orderless VLAD pooling" in text for text in hover)

    # Turning the phone into a desktop redraws the chart with longer labels, still inside the box.
    page.set_viewport_size(DESKTOP)
    for _ in range(50):   # the CSP refuses wait_for_function's eval: poll with evaluate (CDP, not the page)
        if page.evaluate("Number(document.getElementById('board-chart').dataset.drawnWidth) > 1000"):
            break
        page.wait_for_timeout(100)
    else:
        raise AssertionError("the chart was not redrawn at the desktop width")
    assert page.evaluate(CUT_LABELS, "board-chart") == []

    page.set_viewport_size(PHONE)
    page.goto(f"{live_server.url}/overview/")
    page.wait_for_selector("#overview-scene_recognition .main-svg", timeout=15000)
    for chart in page.locator(".chart").all():
        assert page.evaluate(CUT_LABELS, chart.get_attribute("id")) == []
