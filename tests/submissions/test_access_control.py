"""Who may see and do what: private submissions, owners' actions, staff moderation, forged POSTs,
and markup in names escaped wherever it is shown."""
import io
import zipfile

import numpy as np
import pytest
from django.test import Client
from django.urls import reverse

from leaderboard.registry.models import Method, Result
from leaderboard.submissions.models import EvaluationJob, JobResult
from leaderboard.submissions.services import SubmissionRequest, submission_create


@pytest.fixture
def private_submission(make_user, digits):
    return submission_create(SubmissionRequest(owner=make_user("ada"), model_name="Secret net", source="builtin",
                                               architecture="efficientnet_lite0", benchmarks=["digits"]))


@pytest.fixture
def ada(make_user):
    return make_user("ada")


@pytest.fixture
def finished_private_job(ada, digits, tmp_path):
    """A done job of Ada's private submission, with the artifacts a bundle is made from."""
    submission = submission_create(SubmissionRequest(owner=ada, model_name="Secret net", source="builtin",
                                                     architecture="efficientnet_lite0", benchmarks=["digits"]))
    job = submission.jobs.get()
    features = tmp_path / "features.npz"
    np.savez(features, train_ids=np.array(["a"]), test_ids=np.array(["b"]), train=np.ones((1, 2)))
    job.result = Result.objects.create(dataset=digits, method=Method.objects.create(name="Secret net"), score=91.0,
                                       metric=digits.metric, origin=Result.Origin.EVALUATED, is_public=False,
                                       owner=ada, provenance={"submission": submission.pk})
    job.status = EvaluationJob.Status.DONE
    job.evaluation = {"artifacts": {"features.npz": str(features)}, "protocol": {}, "score": 0.91,
                      "metric": "mean_class_accuracy",
                      "protocols": [{"name": "svm", "settings": {"protocol": "svm"}, "score": 0.91,
                                     "metric": "mean_class_accuracy"}]}
    job.save()
    JobResult.objects.create(job=job, result=job.result, protocol="svm")
    return job


def test_a_private_submission_is_a_404_for_other_users(client, make_user, private_submission):
    url = private_submission.get_absolute_url()
    client.force_login(make_user("eve"))
    assert client.get(url).status_code == 404
    assert client.get(f"{url}status.json").status_code == 404
    assert "Secret net" not in client.get("/submissions/").content.decode()

    client.force_login(private_submission.owner)
    assert client.get(url).status_code == 200
    client.force_login(make_user("staff", staff=True))
    assert client.get(url).status_code == 200


def test_make_public_is_for_the_owner(client, make_user, private_submission):
    url = f"/submissions/{private_submission.pk}/make-public/"
    client.force_login(make_user("eve"))
    assert client.post(url).status_code == 404
    client.force_login(private_submission.owner)
    assert client.post(url).status_code == 302
    private_submission.refresh_from_db()
    assert private_submission.is_public
    client.logout()
    assert client.get(private_submission.get_absolute_url()).status_code == 200


def test_staff_hiding_takes_a_public_submissions_results_off_the_board(client, digits, private_submission):
    from leaderboard.boards.selectors import board_rows
    from leaderboard.submissions.models import Submission
    from leaderboard.submissions.services import submission_make_public, submissions_hide

    job = private_submission.jobs.get()
    job.result = Result.objects.create(dataset=digits, method=Method.objects.create(name="Secret net"), score=87.4,
                                       metric=digits.metric, kind=Result.Kind.OFF_THE_SHELF,
                                       origin=Result.Origin.EVALUATED, is_public=False)
    job.save()
    JobResult.objects.create(job=job, result=job.result, protocol="svm")
    submission_make_public(private_submission)
    assert "Secret net" in [row.method.name for row in board_rows(digits)]

    submissions_hide(Submission.objects.filter(pk=private_submission.pk))
    private_submission.refresh_from_db()
    assert not private_submission.is_public
    assert "Secret net" not in [row.method.name for row in board_rows(digits)]


def test_another_user_cannot_reach_a_private_submission(client, make_user, finished_private_job):
    job, submission = finished_private_job, finished_private_job.submission
    queued = EvaluationJob.objects.create(submission=submission, benchmark="other", dataset=job.dataset)
    urls = {
        "status": reverse("submission-status", args=[submission.pk]),
        "bundle": reverse("job-bundle", args=[job.pk]),
    }
    client.force_login(make_user("eve"))
    assert client.get(urls["status"]).status_code == 404
    assert client.get(urls["bundle"]).status_code == 404
    assert client.post(reverse("job-cancel", args=[queued.pk])).status_code == 404
    assert client.post(reverse("submission-make-public", args=[submission.pk])).status_code == 404
    client.logout()
    assert client.get(urls["bundle"]).status_code == 404
    assert client.get(urls["status"]).status_code == 404

    client.force_login(submission.owner)   # the same requests work for the owner
    response = client.get(urls["bundle"])
    assert response.status_code == 200
    assert "features.npz" in zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))).namelist()
    queued.refresh_from_db()
    assert queued.status == EvaluationJob.Status.QUEUED
    submission.refresh_from_db()
    assert not submission.is_public


def test_on_a_public_submission_others_can_read_but_not_cancel(client, make_user, finished_private_job):
    submission = finished_private_job.submission
    submission.is_public = True
    submission.save()
    queued = EvaluationJob.objects.create(submission=submission, benchmark="other",
                                          dataset=finished_private_job.dataset,
                                          error_details="Traceback: /srv/secret/path")
    client.force_login(make_user("eve"))

    status = client.get(reverse("submission-status", args=[submission.pk])).json()
    assert client.post(reverse("job-cancel", args=[queued.pk])).status_code == 403
    queued.refresh_from_db()
    assert queued.status == EvaluationJob.Status.QUEUED
    assert all("error_details" not in job and not job["cancellable"] for job in status["jobs"])
    assert "/srv/secret/path" not in client.get(submission.get_absolute_url()).content.decode()


def test_state_changing_posts_need_the_csrf_token(make_user, finished_private_job):
    submission = finished_private_job.submission
    queued = EvaluationJob.objects.create(submission=submission, benchmark="other",
                                          dataset=finished_private_job.dataset)
    client = Client(enforce_csrf_checks=True)
    client.force_login(submission.owner)
    assert client.post(reverse("submission-make-public", args=[submission.pk])).status_code == 403
    assert client.post(reverse("job-cancel", args=[queued.pk])).status_code == 403
    client.force_login(make_user("boss", staff=True))
    versions = submission.jobs.first().dataset.versions.count()
    assert client.post("/leaderboards/digits/publish/").status_code == 403

    submission.refresh_from_db()
    queued.refresh_from_db()
    assert not submission.is_public
    assert queued.status == EvaluationJob.Status.QUEUED
    assert submission.jobs.first().dataset.versions.count() == versions


def test_a_method_name_with_markup_is_escaped_on_the_public_board(client, digits):
    method = Method.objects.create(name='</script><script>alert("x")</script>')
    Result.objects.create(dataset=digits, method=method, score=95.0, metric=digits.metric,
                          kind=Result.Kind.OFF_THE_SHELF, origin=Result.Origin.EVALUATED, is_public=True)

    page = client.get(digits.get_absolute_url()).content.decode()

    assert '<script>alert("x")' not in page
    assert "\\u003C/script\\u003E\\u003Cscript\\u003Ealert" in page   # json_script escapes < and >
