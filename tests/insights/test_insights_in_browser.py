"""In headless Chromium, under the site's Content-Security-Policy: the VOC 2007 page shows a paper's numbers beside
Shelfmark's measurements (one reproduced, one not), since 2014, and draws the state-of-the-art chart with
plotly.js; the model page and a version's citation run without a violation either. Saves docs/reproduced.png."""
from pathlib import Path

import pytest
from django.conf import settings
from insights_helpers import measure

from leaderboard.insights.services import reproduction_link
from leaderboard.registry.models import Dataset, Result
from leaderboard.registry.snapshot import load_snapshot

pytestmark = [pytest.mark.browser]

DOCS = Path(settings.BASE_DIR) / "docs"
# Runs before the page's own scripts (and outside its CSP): keeps every violation the page reports.
RECORD_VIOLATIONS = """window.__csp = [];
document.addEventListener('securitypolicyviolation', e =>
  window.__csp.push(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'} (${e.sourceFile}:${e.lineNumber})`));"""

# Pixels by which the page, or any .table-wrap box, is wider than what is shown (as tests/site/test_responsive_layout).
OVERFLOW = """() => {
  const root = document.documentElement;
  const boxes = Array.from(document.querySelectorAll('.table-wrap')).map(n => n.scrollWidth - n.clientWidth);
  return {page: root.scrollWidth - root.clientWidth, tables: Math.max(0, ...boxes)};
}"""


def test_the_dataset_page_shows_the_pairs_and_draws_the_chart_without_a_csp_violation(
        live_server, browser, transactional_db, make_user):
    load_snapshot(settings.BASE_DIR / "fixtures" / "snapshot")
    voc07 = Dataset.objects.get(slug="voc2007_cls")
    owner = make_user("ada")
    overfeat = measure(owner, voc07, 0.716, 0.709, 0.723, model_name="OverFeat fc + linear SVM (Shelfmark re-run)")
    jittered = measure(owner, voc07, 0.770, 0.763, 0.777, model_name="OverFeat + jittering (Shelfmark re-run)")
    measure(owner, voc07, 0.881, 0.875, 0.887, model_name="hf-hub:facebook/dinov2-small")
    paper = {r.method.name: r for r in Result.objects.filter(dataset=voc07, origin=Result.Origin.SNAPSHOT)}
    reproduction_link(owner, reported=paper["CNN-SVM (OverFeat fc layer 22 + linear SVM)"], measured=overfeat)
    reproduction_link(owner, reported=paper["CNNaug-SVM (OverFeat + jittering + power norm)"], measured=jittered)

    context = browser.new_context(viewport={"width": 1280, "height": 3200})
    context.add_init_script(RECORD_VIOLATIONS)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda message: message.type == "error" and problems.append(f"console: {message.text}"))
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))

    page.goto(f"{live_server.url}/datasets/voc2007_cls/")
    page.wait_for_selector("#sota-chart .main-svg", timeout=15000)          # plotly.js drew the step lines
    page.wait_for_selector("#board-chart .main-svg", timeout=15000)
    assert page.locator("#sota-chart .scatterlayer .trace").count() == 6      # 3 kinds: a line and its records
    pairs = page.locator("#reported-beside-measured tr.pair")
    assert pairs.count() == 2
    verdicts = sorted(pairs.locator(".verdict").all_inner_texts())
    assert verdicts == ["not reproduced (Δ = +2.3)", "reproduced"]
    assert "+5.7" in page.locator("#since-off_the_shelf").inner_text()       # 88.1 against 2014's 82.44
    top = page.locator("#reported-beside-measured").bounding_box()
    bottom = page.locator("#state-of-the-art").bounding_box()
    height = bottom["y"] + bottom["height"] - top["y"] + 16
    page.screenshot(path=str(DOCS / "reproduced.png"), full_page=True,
                    clip={"x": 0, "y": top["y"] - 8, "width": 1280, "height": height})
    page.hover("#sota-chart .scatterlayer .points path >> nth=0", force=True)   # plotly styles its hover label
    page.wait_for_selector("#sota-chart .hoverlayer .hovertext", timeout=5000)
    problems += [f"dataset page: {violation}" for violation in page.evaluate("window.__csp")]

    for path in [f"/models/{overfeat.method_id}/", "/leaderboards/voc2007_cls/v0/"]:
        page.goto(f"{live_server.url}{path}")
        problems += [f"{path}: {violation}" for violation in page.evaluate("window.__csp")]
    assert page.locator("#cite-bib").inner_text().startswith("@misc{shelfmark_voc2007_cls_v0,")
    context.close()
    assert problems == []

    phone = browser.new_page(viewport={"width": 390, "height": 844})   # no sideways scroll on a phone either
    for path in ["/datasets/voc2007_cls/", f"/models/{overfeat.method_id}/", "/leaderboards/voc2007_cls/v0/"]:
        phone.goto(f"{live_server.url}{path}")
        assert phone.evaluate(OVERFLOW) == {"page": 0, "tables": 0}, path
    phone.close()
