"""Every page works under the Content-Security-Policy in headless Chromium: charts draw, scripts run, and
the console shows no violation (settings.SHELFMARK_CSP admits the local plotly.js and the inline styles it
sets, and no inline script)."""
import pytest
from django.utils import timezone
from snapshot_source import SNAPSHOT_DIR

from leaderboard.registry.snapshot import load_snapshot

pytestmark = [pytest.mark.browser]

VISITOR_PAGES = ["/", "/?kind=off_the_shelf", "/overview/", "/datasets/mit67/", "/datasets/ilsvrc2012_cls/",
                 "/references/", "/api/docs/", "/api/results/?dataset=mit67", "/leaderboards/mit67/",
                 "/leaderboards/mit67/v0/", "/leaderboards/mit67/diff/?a=0&b=0", "/submissions/", "/downloads/",
                 "/status/", "/accounts/login/", "/accounts/signup/", "/no-such-page/"]
MEMBER_PAGES = ["/submissions/new/", "/admin/", "/admin/registry/result/", "/admin/registry/dataset/1/change/"]
CHARTS = {"/overview/", "/datasets/mit67/", "/datasets/ilsvrc2012_cls/"}

# Runs before the page's own scripts (and outside its CSP): keeps every violation the page reports.
RECORD_VIOLATIONS = """window.__csp = [];
document.addEventListener('securitypolicyviolation', e =>
  window.__csp.push(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'} (${e.sourceFile}:${e.lineNumber})`));"""


def visit(page, url: str, problems: list[str]) -> None:
    response = page.goto(url)
    assert "content-security-policy" in response.headers, url
    if any(url.endswith(chart) for chart in CHARTS):
        page.wait_for_selector(".main-svg", timeout=15000)   # plotly.js drew
        # Its hover label styles itself too. plotly's drag layer lies over the bars (it takes the pointer
        # events, with its inline styles applied): move the mouse to the bar without waiting for it.
        page.hover(".main-svg .bars path >> nth=0", force=True)
        page.wait_for_selector(".hoverlayer .hovertext", timeout=5000)
    problems += [f"{url}: {violation}" for violation in page.evaluate("window.__csp")]


def test_every_page_runs_under_the_csp_without_a_violation(live_server, browser, transactional_db, make_user):
    from leaderboard.registry.models import Dataset
    from leaderboard.submissions.models import EvaluationJob, Submission

    load_snapshot(SNAPSHOT_DIR)
    owner = make_user("ada", staff=True)
    owner.is_superuser = True
    owner.save()
    submission = Submission.objects.create(owner=owner, model_name="ResNet-18 (weights)", source="weights",
                                           architecture="resnet18")
    EvaluationJob.objects.create(submission=submission, benchmark="mit67", dataset=Dataset.objects.get(slug="mit67"),
                                 status="running", sent_at=timezone.now(), stage="extracting", done=5, total=9)

    context = browser.new_context()
    context.add_init_script(RECORD_VIOLATIONS)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda message: message.type == "error" and problems.append(f"console: {message.text}"))
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))

    for path in VISITOR_PAGES:
        visit(page, f"{live_server.url}{path}", problems)

    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", "ada")
    page.fill("input[name=password]", "a-long-test-password")
    page.click("form.form button[type=submit]")
    page.wait_for_load_state()
    assert "Log out (ada)" in page.content()
    for path in [*MEMBER_PAGES, submission.get_absolute_url()]:
        visit(page, f"{live_server.url}{path}", problems)
    page.wait_for_timeout(1500)    # the status page polls status.json (connect-src)
    problems += [f"status page: {violation}" for violation in page.evaluate("window.__csp")]
    context.close()
    # The 404 page answers 404 by design; Chromium logs that status as a console error.
    assert [p for p in problems if "404 (Not Found)" not in p] == []
