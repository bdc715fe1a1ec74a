"""Protocols chosen on the form: one result per protocol on the board, each with its interval and rank
group; more protocols added to a finished submission score the cached features without extracting."""
import pytest
from submission_helpers import wait_for

from leaderboard.boards.selectors import board_rows
from leaderboard.registry.models import Result
from leaderboard.submissions.models import EvaluationJob, Submission
from leaderboard.submissions.services import SubmissionRequest, submission_add_protocols, submission_create
from leaderboard.submissions.validation import SubmissionRefused

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def finished(job, timeout=240):
    wait_for(lambda: EvaluationJob.objects.get(pk=job.pk).is_finished, timeout, what=f"job {job.pk} to finish")
    job.refresh_from_db()
    assert job.status == "done", job.error + job.error_details
    return job


def test_picking_knn_and_the_linear_probe_puts_both_on_the_board_with_intervals_and_rank_groups(
        worker, client, make_user, digits, features_npz):
    owner = make_user("ada")
    client.force_login(owner)
    with open(features_npz, "rb") as upload:
        response = client.post("/submissions/new/", {
            "model_name": "Noisy one-hot", "source": "features", "benchmarks": ["digits"], "kind": "off_the_shelf",
            "protocols": ["knn", "linear_probe"], "upload": upload})
    assert response.status_code == 302
    submission = Submission.objects.get()
    job = finished(submission.jobs.get())
    assert job.protocols == ["knn", "linear_probe"]
    assert sorted(job.job_results.values_list("protocol", flat=True)) == ["knn", "linear_probe"]
    client.post(f"/submissions/{submission.pk}/make-public/")

    rows = [r for r in board_rows(digits) if r.origin == Result.Origin.EVALUATED]
    assert {r.protocol for r in rows} == {"knn", "linear_probe"}
    for row in rows:
        assert row.ci_low < row.score < row.ci_high and row.rank_group
    page = client.get(digits.get_absolute_url()).content.decode()
    assert "weighted k-NN (k = 20)" in page and "linear probe (logistic regression)" in page and "±" in page
    status = client.get(f"/submissions/{submission.pk}/status.json").json()["jobs"][0]
    assert [r["protocol"] for r in status["results"]] == ["knn", "linear_probe"]
    bundle = client.get(status["results"][1]["bundle_url"])
    assert bundle.status_code == 200 and bundle["Content-Type"] == "application/zip"


def test_a_protocol_added_later_scores_the_cached_features_without_extracting(worker, client, make_user, digits,
                                                                             tmp_path):
    from test_job_queue import tiny_onnx

    owner = make_user("grace")
    submission = submission_create(SubmissionRequest(
        owner=owner, model_name="Tiny conv", source=Submission.Source.ONNX, benchmarks=["digits"],
        upload=tiny_onnx(tmp_path / "tiny.onnx"), keep_upload=True, protocols=["knn"]))
    first = finished(submission.jobs.get())
    assert first.evaluation["throughput"]["images_extracted"] == 1797

    client.force_login(owner)
    response = client.post(f"/submissions/{submission.pk}/protocols/", {"protocol": ["linear_probe", "knn"]})
    assert response.status_code == 302
    again = finished(submission.jobs.exclude(pk=first.pk).get())
    assert again.protocols == ["linear_probe"]                       # knn had run: not again
    assert again.evaluation["throughput"]["images_extracted"] == 0   # every feature from the cache
    assert again.evaluation["timings"]["extracting"] < first.evaluation["timings"]["extracting"] / 10
    assert submission_add_protocols(submission, ["knn", "linear_probe"]) == []
    with pytest.raises(SubmissionRefused, match="Unknown protocol 'magic'"):
        submission_add_protocols(submission, ["magic"])
