"""End to end in headless Chromium: a new user signs up and proposes a paper's number with its BibTeX; a
moderator reviews it on its page and accepts it; it is on the live board, in the next published version
(the diff naming its contributor) and on its own page with its history. Screenshots of what each sees go
to docs/contribute.png and docs/moderate.png."""
import time
from pathlib import Path

import pytest
from contribution_helpers import DINO_BIB
from django.utils import timezone

from leaderboard.contributions import services
from leaderboard.contributions.forms import ProposalForm
from leaderboard.contributions.models import Proposal
from leaderboard.registry.models import LeaderboardVersion

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DOCS = Path(__file__).resolve().parents[2] / "docs"
PASSWORD = "a-long-test-password"


def log_in(page, live_server, username):
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("form.form button[type=submit]")
    page.wait_for_load_state()


def watch_console(page) -> list[str]:
    """Errors the page logs (a Content-Security-Policy refusal among them)."""
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    return errors


def more_states(contributor, moderator):
    """Three more proposals of the contributor, in the other states, for the screenshot of their page."""
    def propose(**fields):
        form = ProposalForm({"dataset": "mit67", "kind": "off_the_shelf", "paper": "arXiv:2304.07193",
                             "location": "Table 10"} | fields)
        assert form.is_valid(), form.errors
        return services.propose(contributor, form.proposal_data())

    propose(method_name="DINOv2 ViT-L/14 (frozen)", score="86.9", paper_protocol="linear_probe")
    asked = propose(method_name="DINOv2 ViT-B/14 k-NN", score="81.0", paper_protocol="knn")
    services.request_changes(asked, moderator, "Table 10 has 81.4 for ViT-B/14 with k-NN: please check the row")
    rejected = propose(method_name="DINOv2 ViT-g/14 (fine-tuned)", score="92.0", paper_protocol="fine_tuned",
                       kind="specialized")
    services.reject(rejected, moderator, "The paper reports no fine-tuned number on MIT67")


def test_propose_accept_board_version_and_history(live_server, browser, board, make_user):
    from django.contrib.auth.models import Group

    moderator = make_user("mona", staff=True)
    moderator.groups.add(Group.objects.get(name="moderators"))
    started = time.monotonic()

    # A new user signs up and proposes DINOv2's number with the paper's BibTeX.
    contributor_view = browser.new_context(viewport={"width": 1280, "height": 900})
    page = contributor_view.new_page()
    errors = watch_console(page)
    page.goto(f"{live_server.url}/accounts/signup/")
    page.fill("input[name=username]", "newton")
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.click("form.form button[type=submit]")
    page.wait_for_load_state()
    page.click("nav >> text=My contributions")
    page.wait_for_url("**/contributions/mine/")
    assert "No contributions yet" in page.inner_text("main")
    page.click("#propose")
    page.wait_for_url("**/contributions/new/")
    page.select_option("select[name=dataset]", "mit67")
    page.fill("input[name=method_name]", "DINOv2 ViT-g/14 (frozen)")
    page.fill("input[name=score]", "88.1")
    page.fill("input[name=location]", "Table 10")
    page.check("input[name=kind][value=off_the_shelf]")
    page.check("input[name=paper_protocol][value=linear_probe]")
    page.fill("textarea[name=bibtex]", DINO_BIB)
    page.click("#proposal-form button[type=submit]")
    page.wait_for_url("**/contributions/*/")
    assert "waiting for review" in page.inner_text(".submission-meta")
    assert "Rank 1 of 2" in page.inner_text("main")
    proposal = Proposal.objects.get()
    assert proposal.contributor.username == "newton" and proposal.bibtex_key == "Oquab2023"

    # The moderator finds it in the queue, checks it on its page, and accepts it.
    moderator_view = browser.new_context(viewport={"width": 1280, "height": 900})
    review = moderator_view.new_page()
    errors += watch_console(review)
    log_in(review, live_server, "mona")
    review.goto(f"{live_server.url}/contributions/review/")
    assert "DINOv2 ViT-g/14 (frozen)" in review.inner_text("table.review-queue")
    review.click(f"#proposal-{proposal.pk} >> text=Review")
    review.wait_for_url(f"**/contributions/{proposal.pk}/*")
    review.click("details.proposal-bibtex summary")
    review.check("input[name=decision][value=accept]")
    review.fill("textarea[name=reason]", "Checked against Table 10 of the paper")
    DOCS.mkdir(exist_ok=True)
    review.screenshot(path=str(DOCS / "moderate.png"), full_page=True)
    review.click("#review-submit")
    review.wait_for_url("**/contributions/review/")
    assert "is on the MIT Indoor 67 board" in review.inner_text("ul.messages")
    result = Proposal.objects.get().result
    assert result is not None and result.is_public

    # On the live board, marked reported, first.
    review.goto(f"{live_server.url}/datasets/mit67/")
    row = review.locator(f"#result-{result.pk}")
    assert "DINOv2 ViT-g/14 (frozen)" in row.inner_text() and "reported by a paper" in row.inner_text()
    assert review.locator("table.board tbody tr").first.get_attribute("id") == f"result-{result.pk}"

    # The next published version freezes it; the diff names its contributor and links its history.
    review.goto(f"{live_server.url}/leaderboards/mit67/")
    review.fill("#publish-note", "DINOv2 from its paper")
    review.click("#publish")
    review.wait_for_url("**/leaderboards/mit67/v1/")
    assert "DINOv2 ViT-g/14 (frozen)" in review.inner_text("table.frozen")
    assert LeaderboardVersion.objects.get(dataset=board.dataset, number=1).entries.filter(result=result).exists()
    review.goto(f"{live_server.url}/leaderboards/mit67/diff/?a=0&b=1")
    assert "Contributed by newton" in review.inner_text(".diff-contributors")
    review.click(".diff-added >> text=DINOv2 ViT-g/14 (frozen)")
    review.wait_for_url(f"**/results/{result.pk}/")
    history = review.inner_text("ol.history")
    assert "proposed" in history and "newton" in history and "Checked against Table 10" in history
    assert "v1" in review.inner_text(".published-in") and "Oquab2023" in review.inner_text("ul.refs")

    # The contributor's page shows where each proposal stands.
    more_states(Proposal.objects.get().contributor, moderator)
    page.goto(f"{live_server.url}/contributions/mine/")
    states = page.inner_text("table.proposals")
    for state in ("accepted", "waiting for review", "changes requested", "rejected"):
        assert state in states
    assert f"on the board: result #{result.pk}" in states and "Edit and send again" in states
    page.screenshot(path=str(DOCS / "contribute.png"), full_page=True)

    assert errors == [], errors
    print(f"\npropose -> accepted -> published -> history: {time.monotonic() - started:.1f}s at {timezone.now()}")
    contributor_view.close()
    moderator_view.close()
