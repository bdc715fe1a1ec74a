"""The queue in plain view, in headless Chromium: the /status/ page lists the online worker with what it
runs, and the waiting jobs with their places and ETAs; a waiting user's submission page shows its place
and follows it as the queue moves (submission-status.js polling status.json)."""
import time
from datetime import timedelta
from pathlib import Path

import pytest
from submission_helpers import log_in
from django.utils import timezone

from leaderboard.submissions.models import EvaluationJob, Submission, Worker
from leaderboard.submissions.queue_selectors import describe_eta

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_status_page_shows_the_worker_and_the_places_and_a_submission_follows_its_place(
        live_server, browser, digits, make_user):
    now, started = timezone.now(), time.monotonic()
    ada, eve = make_user("ada"), make_user("eve")
    dataset = digits

    def submission(owner, name, public=False):
        return Submission.objects.create(owner=owner, model_name=name, source="builtin",
                                         architecture="efficientnet_lite0", is_public=public)

    history = submission(ada, "Earlier runs", public=True)
    # the median digits job took 120 s here: 59 s left of the running one, 59 + 120 = 179 s for the second in
    # line ("about 3 min") at `now`, less as the seconds pass; a busy machine may take long enough to load the
    # pages that the words change while it does, so the words expected are those of the seconds before and after

    def second_in_line(read):
        before = time.monotonic() - started
        text = read()
        after = time.monotonic() - started
        expected = {describe_eta(max(59 - seconds, 0) + 120) for seconds in (before, after)}
        assert any(words in text for words in expected), (text, expected)
        return text

    for seconds in (110, 120, 130):
        EvaluationJob.objects.create(submission=history, benchmark="digits", dataset=dataset, status="done",
                                     started_at=now - timedelta(seconds=seconds), finished_at=now)
    Worker.objects.create(name="celery@lab-box", queues=["cpu"], hardware="CPU: 2 cores", gpu=False,
                          started_at=now, seen_at=now)
    running = EvaluationJob.objects.create(
        submission=submission(eve, "Eve's running model"), benchmark="digits", dataset=dataset, status="running",
        worker="celery@lab-box", heartbeat_at=now, started_at=now - timedelta(seconds=61), sent_at=now,
        stage="extracting", done=300, total=898)
    ahead = EvaluationJob.objects.create(submission=submission(eve, "Eve's queued model"), benchmark="digits",
                                         dataset=dataset, sent_at=now)
    mine = submission(ada, "Ada's DINOv2-S")
    waiting = EvaluationJob.objects.create(submission=mine, benchmark="digits", dataset=dataset, sent_at=now)

    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    log_in(page, live_server, "ada")

    rows = page.locator("#queue-cpu tbody tr")

    def status_page():
        page.goto(f"{live_server.url}/status/")
        return rows.nth(1).inner_text()

    second = second_in_line(status_page)
    worker = page.locator("#workers tr[data-worker='celery@lab-box']")
    assert "CPU" in worker.inner_text() and "CPU: 2 cores" in worker.inner_text()
    assert f"job {running.pk}" in worker.inner_text() and "300/898" in worker.inner_text()
    assert "Eve's" not in page.content()          # other people's private submissions stay unnamed
    assert rows.count() == 2
    first = rows.nth(0).inner_text()
    assert first.startswith("1") and "a private submission" in first and "under a minute" in first
    assert second.startswith("2") and "Ada's DINOv2-S" in second and "yours" in second
    assert "1 worker · 1 running · 2 waiting" in page.locator("#queue-cpu h3").inner_text()
    DOCS.mkdir(exist_ok=True)
    page.screenshot(path=str(DOCS / "status.png"), full_page=True)

    place = page.locator(f"[data-job='{waiting.pk}'] .job-place, .job-place").first

    def submission_page():
        page.goto(f"{live_server.url}{mine.get_absolute_url()}")
        return place.inner_text()

    assert second_in_line(submission_page).startswith("2nd in the 'cpu' queue, starts in about ")

    # The queue moves: the running job finishes, the one ahead starts. The page follows by itself.
    EvaluationJob.objects.filter(pk=running.pk).update(status="done", finished_at=timezone.now())
    EvaluationJob.objects.filter(pk=ahead.pk).update(status="running", worker="celery@lab-box",
                                                     heartbeat_at=timezone.now(), started_at=timezone.now())
    for _ in range(120):   # the CSP forbids wait_for_function's eval: poll from here
        if place.inner_text().startswith("1st"):
            break
        page.wait_for_timeout(250)
    assert place.inner_text().startswith("1st in the 'cpu' queue, starts in")
    context.close()
