"""End to end in headless Chromium: submit EfficientNet-Lite0 on digits through the form, watch it
run, see it on the live board, publish, open the permalink, download the bundle and reproduce it."""
import json
import os
import subprocess
import sys
import time
import zipfile

import pytest
from submission_helpers import log_in

from leaderboard.registry.models import Result
from leaderboard.submissions.models import EvaluationJob

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.services, pytest.mark.django_db(transaction=True)]

@pytest.fixture
def page(browser):
    context = browser.new_context(accept_downloads=True)
    yield context.new_page()
    context.close()


def test_submit_watch_publish_and_reproduce(worker, live_server, page, digits, make_user, tmp_path):
    make_user("ada", staff=True)
    log_in(page, live_server, "ada")

    page.goto(f"{live_server.url}/submissions/new/")
    page.fill("input[name=model_name]", "EfficientNet-Lite0 (built-in)")
    page.check("input[name=source][value=builtin]")
    page.fill("input[name=builtin_model]", "efficientnet_lite0")
    page.check("input[name=benchmarks][value=digits]")
    for extra in ("knn", "linear_probe"):   # the paper's SVMs alone: one result (test_protocol_choice has more)
        page.uncheck(f"input[name=protocols][value={extra}]")
    submitted = time.monotonic()
    page.click("#submission-form button[type=submit]")
    page.wait_for_url("**/submissions/*/")

    # The status page updates by itself: progress to 100 %, then the score.
    seen_stages = set()
    deadline = time.monotonic() + 900
    while page.locator(".job-status").get_attribute("data-status") not in ("done", "failed", "cancelled"):
        seen_stages.add(page.locator(".job-stage").inner_text())
        assert time.monotonic() < deadline, "the job did not finish"
        page.wait_for_timeout(250)
    elapsed = time.monotonic() - submitted
    job = EvaluationJob.objects.get()
    print(f"\nsubmit -> result (digits, efficientnet_lite0, {job.evaluation.get('throughput')}): {elapsed:.1f}s")
    assert job.status == "done", job.error
    assert page.locator(".job-percent").inner_text() == "100%"
    assert page.locator(".job-score").inner_text() == f"{job.result.score:.2f}"
    assert seen_stages & {"loading model", "extracting features", "training SVMs", "scoring"}

    # The result is private until made public; then it is on the live board with its provenance.
    result = Result.objects.get(origin="evaluated")
    assert not result.is_public and result.kind == "off_the_shelf"
    assert result.score == pytest.approx(job.evaluation["score"] * 100)
    for key in ("model", "code_version", "protocol_version", "hardware", "duration_s", "date"):
        assert result.provenance[key], key
    page.click("#make-public")
    page.wait_for_load_state()
    page.goto(f"{live_server.url}/datasets/digits/")
    assert "EfficientNet-Lite0 (built-in)" in page.content()

    # Publish version 1 (staff button) and open its permalink.
    page.goto(f"{live_server.url}/leaderboards/digits/")
    page.click("#publish")
    page.wait_for_url("**/leaderboards/digits/v1/")
    assert "EfficientNet-Lite0 (built-in)" in page.locator("table.frozen").inner_text()
    page.goto(f"{live_server.url}/leaderboards/digits/diff/?a=0&b=1")
    assert "EfficientNet-Lite0 (built-in)" in page.locator(".diff-added").inner_text()

    # The reproduction bundle recomputes the same score with numpy and scikit-learn alone.
    page.goto(f"{live_server.url}/submissions/{job.submission_id}/")
    with page.expect_download() as download:
        page.click("text=reproduction bundle")
    bundle = tmp_path / "bundle.zip"
    download.value.save_as(bundle)
    with zipfile.ZipFile(bundle) as archive:
        assert {"features.npz", "splits.json", "protocol.json", "provenance.json", "reproduce.py",
                "SHA256SUMS"} <= set(archive.namelist())
        archive.extractall(tmp_path / "bundle")
    run = subprocess.run([sys.executable, "reproduce.py"], cwd=tmp_path / "bundle", capture_output=True,
                         text=True, timeout=300, env={**os.environ, "PYTHONPATH": ""})
    assert run.returncode == 0, run.stdout + run.stderr
    reproduced = json.loads(run.stdout)
    assert reproduced["score"] == pytest.approx(job.evaluation["score"], abs=1e-6)
