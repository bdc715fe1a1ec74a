"""The queue in plain view, in headless Chromium: the /status/ page lists the online worker with what it
runs, and the waiting jobs with their places and ETAs; a waiting user's submission page shows its place
and follows it as the queue moves (submission-status.js polling status.json)."""
from datetime import timedelta
from pathlib import Path

import pytest
from submission_helpers import log_in
from django.utils import timezone

from leaderboard.submissions.models import EvaluationJob, Submission, Worker

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_status_page_shows_the_worker_and_the_places_and_a_submission_follows_its_place(
        live_server, browser, digits, make_user):
    now = timezone.now()
    ada, eve = make_user("ada"), make_user("eve")
    dataset = digits

    def submission(owner, name, public=False):
        return Submission.objects.create(owner=owner, model_name=name, source="builtin",
                                         architecture="efficientnet_lite0", is_public=public)

    history = submission(ada, "Earlier runs", public=True)
    # A queue of the test's own: the suite's live Celery worker (tests/submissions/conftest.py) consumes "cpu" and
    # reports itself online every few seconds, so on "cpu" it would share the ETAs below (and run the jobs)
    queue = "lab"
    # the median digits job took 120 s here: 59 s left of the running one, 59 + 120 = 179 s for the second in
    # line, "about 3 min" for as long as the page takes to load on a busy machine (up to 59 s)
    for seconds in (110, 120, 130):
        EvaluationJob.objects.create(submission=history, benchmark="digits", dataset=dataset, status="done",
                                     started_at=now - timedelta(seconds=seconds), finished_at=now)
    Worker.objects.create(name="celery@lab-box", queues=[queue], hardware="CPU: 2 cores", gpu=False,
                          started_at=now, seen_at=now)
    running = EvaluationJob.objects.create(
        submission=submission(eve, "Eve's running model"), benchmark="digits", dataset=dataset, status="running",
        worker="celery@lab-box", heartbeat_at=now, started_at=now - timedelta(seconds=61), sent_at=now,
        stage="extracting", done=300, total=898, queue=queue)
    ahead = EvaluationJob.objects.create(submission=submission(eve, "Eve's queued model"), benchmark="digits",
                                         dataset=dataset, sent_at=now, queue=queue)
    mine = submission(ada, "Ada's DINOv2-S")
    waiting = EvaluationJob.objects.create(submission=mine, benchmark="digits", dataset=dataset, sent_at=now,
                                           queue=queue)

    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    log_in(page, live_server, "ada")

    page.goto(f"{live_server.url}/status/")
    worker = page.locator("#workers tr[data-worker='celery@lab-box']")
    assert "CPU" in worker.inner_text() and "CPU: 2 cores" in worker.inner_text()
    assert f"job {running.pk}" in worker.inner_text() and "300/898" in worker.inner_text()
    assert "Eve's" not in page.content()          # other people's private submissions stay unnamed
    rows = page.locator("#queue-lab tbody tr")
    assert rows.count() == 2
    first, second = rows.nth(0).inner_text(), rows.nth(1).inner_text()
    assert first.startswith("1") and "a private submission" in first and "under a minute" in first
    assert second.startswith("2") and "Ada's DINOv2-S" in second and "yours" in second and "about 3 min" in second
    assert "1 worker · 1 running · 2 waiting" in page.locator("#queue-lab h3").inner_text()
    DOCS.mkdir(exist_ok=True)
    page.screenshot(path=str(DOCS / "status.png"), full_page=True)

    page.goto(f"{live_server.url}{mine.get_absolute_url()}")
    place = page.locator(f"[data-job='{waiting.pk}'] .job-place, .job-place").first
    assert place.inner_text() == "2nd in the 'lab' queue, starts in about 3 min"

    # The queue moves: the running job finishes, the one ahead starts. The page follows by itself.
    EvaluationJob.objects.filter(pk=running.pk).update(status="done", finished_at=timezone.now())
    EvaluationJob.objects.filter(pk=ahead.pk).update(status="running", worker="celery@lab-box",
                                                     heartbeat_at=timezone.now(), started_at=timezone.now())
    for _ in range(120):   # the CSP forbids wait_for_function's eval: poll from here
        if place.inner_text().startswith("1st"):
            break
        page.wait_for_timeout(250)
    assert place.inner_text().startswith("1st in the 'lab' queue, starts in")
    context.close()
