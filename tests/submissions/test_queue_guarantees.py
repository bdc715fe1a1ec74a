"""No job stuck or lost, the queue in plain view, fair use: the rules of leaderboard/submissions/queue.py
and queue_selectors.py on database rows (the real worker, broker and Redis outages: test_job_queue.py)."""
import io
import os
from datetime import timedelta

import numpy as np
import pytest
from django.core.management import call_command
from django.utils import timezone
from submission_helpers import digits_features, features_post

from leaderboard.submissions import queue, queue_selectors, services
from leaderboard.submissions.models import EvaluationJob, Submission, Worker
from leaderboard.submissions.services import SubmissionRequest, job_begin, submission_create
from leaderboard.submissions.uploads import SizeLimitedUploadHandler

pytestmark = pytest.mark.django_db


@pytest.fixture
def submission(make_user, digits, features_npz):
    return submission_create(SubmissionRequest(owner=make_user("ada"), model_name="Precomputed", source="features",
                                               benchmarks=["digits"], upload=features_npz, keep_upload=True))


def _running(job, *, heartbeat_age_s: float, worker="celery@lost-host", attempts=1):
    beat = timezone.now() - timedelta(seconds=heartbeat_age_s)
    EvaluationJob.objects.filter(pk=job.pk).update(status=EvaluationJob.Status.RUNNING, attempts=attempts,
                                                   heartbeat_at=beat, started_at=beat, worker=worker)
    job.refresh_from_db()
    return job


def test_a_job_whose_heartbeat_stopped_is_queued_again_under_a_new_task_id(submission, settings,
                                                                            django_capture_on_commit_callbacks):
    settings.SHELFMARK_HEARTBEAT_TIMEOUT_S = 120
    job = _running(submission.jobs.get(), heartbeat_age_s=121)
    fresh = _running(EvaluationJob.objects.create(submission=submission, benchmark="digits", dataset=job.dataset,
                                                  task_id="fresh-task"), heartbeat_age_s=30)
    old_task = job.task_id
    with django_capture_on_commit_callbacks() as sends:
        assert queue.jobs_requeue_stale() == (1, 0)
    job.refresh_from_db()
    assert job.status == "queued" and job.task_id != old_task and job.sent_at is None
    assert "no sign of life from its worker for 120 s: queued again (attempt 2 of 3 next)" in job.log
    assert len(sends) == 1                                   # its message goes out when the transaction commits
    assert EvaluationJob.objects.get(pk=fresh.pk).status == "running"   # beating: left alone

    # the lost attempt's message, delivered late, is dropped; the new one starts attempt 2
    assert job_begin(job.pk, task_id=old_task) is None
    begun = job_begin(job.pk, task_id=job.task_id, worker="celery@other-host")
    assert begun.status == "running" and begun.attempts == 2 and begun.worker == "celery@other-host"


def test_after_the_last_attempt_a_lost_job_fails_with_a_message_saying_why(submission, settings):
    settings.SHELFMARK_JOB_MAX_ATTEMPTS = 3
    job = _running(submission.jobs.get(), heartbeat_age_s=999, attempts=3)
    assert queue.jobs_requeue_stale() == (0, 1)
    job.refresh_from_db()
    assert job.status == "failed" and job.finished_at is not None
    assert job.error.startswith("The worker running this job stopped 3 times")
    # a job whose pool process is killed each time (out of memory) is redelivered by Celery itself:
    # the attempt past the last is refused too
    other = _running(EvaluationJob.objects.create(submission=submission, benchmark="digits", dataset=job.dataset,
                                                  task_id="t"), heartbeat_age_s=30, attempts=3)  # its process gone
    assert job_begin(other.pk, task_id="t") is None
    other.refresh_from_db()
    assert other.status == "failed" and "stopped 3 times without finishing" in other.error


def test_a_restarted_worker_requeues_the_jobs_its_previous_process_ran_at_once(submission, settings):
    settings.SHELFMARK_HEARTBEAT_INTERVAL_S = 10
    mine = _running(submission.jobs.get(), heartbeat_age_s=25, worker="celery@box")
    beating = _running(EvaluationJob.objects.create(submission=submission, benchmark="digits",
                                                    dataset=mine.dataset, task_id="b"), heartbeat_age_s=5,
                       worker="celery@box")
    elsewhere = _running(EvaluationJob.objects.create(submission=submission, benchmark="digits",
                                                      dataset=mine.dataset, task_id="c"), heartbeat_age_s=25,
                         worker="celery@other")
    assert queue.jobs_requeue_lost_on("celery@box") == 1
    statuses = {job.pk: job.status for job in EvaluationJob.objects.all()}
    assert statuses[mine.pk] == "queued"
    assert statuses[beating.pk] == statuses[elsewhere.pk] == "running"   # not that worker's, or still alive


def test_a_worker_restarted_within_seconds_requeues_a_job_whose_process_is_gone(submission, settings):
    # was: a worker restarted 9 s after its main process was SIGKILLed saw a 15 s old heartbeat, "alive",
    # and the job waited for the 120 s heartbeat timeout
    import subprocess
    import sys

    settings.SHELFMARK_HEARTBEAT_INTERVAL_S = 10
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lost = _running(submission.jobs.get(), heartbeat_age_s=3, worker="celery@box")
    EvaluationJob.objects.filter(pk=lost.pk).update(worker_pid=dead.pid)
    alive = _running(EvaluationJob.objects.create(submission=submission, benchmark="digits", dataset=lost.dataset,
                                                  task_id="b", worker_pid=os.getpid()), heartbeat_age_s=3,
                     worker="celery@box")

    assert queue.jobs_requeue_lost_on("celery@box") == 1
    assert EvaluationJob.objects.get(pk=lost.pk).status == "queued"
    assert EvaluationJob.objects.get(pk=alive.pk).status == "running"


def test_a_queued_job_whose_message_the_broker_lost_is_sent_again_under_a_new_task_id(
        submission, celery_app, settings, django_capture_on_commit_callbacks):
    # was: a Redis restarted without saving lost the queued messages; their jobs stayed "queued" for ever
    settings.SHELFMARK_CPU_QUEUE = "lost-messages"          # no worker consumes it: messages stay put
    held = submission.jobs.get()
    EvaluationJob.objects.filter(pk=held.pk).update(queue="lost-messages")
    assert queue.job_send(held.pk)
    lost = EvaluationJob.objects.create(submission=submission, benchmark="digits", dataset=held.dataset,
                                        queue="lost-messages", task_id="message-that-redis-forgot")
    long_ago = timezone.now() - timedelta(minutes=5)
    EvaluationJob.objects.filter(pk__in=[held.pk, lost.pk]).update(sent_at=long_ago)
    just_sent = EvaluationJob.objects.create(submission=submission, benchmark="digits", dataset=held.dataset,
                                             queue="lost-messages", task_id="on-its-way", sent_at=timezone.now())
    try:
        assert held.task_id in queue.broker_task_ids(["lost-messages"])
        with django_capture_on_commit_callbacks(execute=True):
            assert queue.jobs_resend_lost_messages() == 1
        lost.refresh_from_db()
        assert lost.task_id != "message-that-redis-forgot" and lost.sent_at is not None
        assert "the broker no longer holds its message" in lost.log
        assert lost.task_id in queue.broker_task_ids(["lost-messages"])        # sent, for real
        assert EvaluationJob.objects.get(pk=held.pk).sent_at == long_ago     # held: untouched
        assert EvaluationJob.objects.get(pk=just_sent.pk).task_id == "on-its-way"   # within the grace
        assert queue.jobs_resend_lost_messages() == 0
    finally:
        with celery_app.connection_for_write() as broker:
            broker.default_channel.queue_purge("lost-messages")


def test_the_heartbeat_and_the_progress_of_a_stale_attempt_touch_nothing(submission):
    job = _running(submission.jobs.get(), heartbeat_age_s=50)
    assert queue.JobHeartbeat(job.pk, "not-the-current-task").beat() is False
    assert queue.JobHeartbeat(job.pk, job.task_id).beat() is True
    job.refresh_from_db()
    assert (timezone.now() - job.heartbeat_at).total_seconds() < 5

    from workers.contract import Progress

    writer = services.ProgressWriter(job.pk, task_id="not-the-current-task")
    with pytest.raises(services.JobCancelled, match="queued again"):
        writer(Progress("extracting", 1, 10))


def test_queued_jobs_have_places_and_an_eta_from_recent_durations(submission, make_user, settings):
    settings.SHELFMARK_HEARTBEAT_INTERVAL_S = 10
    now = timezone.now()
    dataset = submission.jobs.get().dataset
    for seconds in (50, 60, 70):   # three done digits jobs: the median took 60 s
        EvaluationJob.objects.create(submission=submission, benchmark="digits", dataset=dataset, status="done",
                                     started_at=now - timedelta(seconds=seconds), finished_at=now)
    Worker.objects.create(name="celery@a", queues=["cpu"], hardware="CPU", started_at=now, seen_at=now)
    Worker.objects.create(name="celery@gone", queues=["cpu"], hardware="CPU", started_at=now,
                          seen_at=now - timedelta(minutes=5))                     # aged out
    first = submission.jobs.filter(status="queued").get()
    EvaluationJob.objects.filter(pk=first.pk).update(sent_at=now)
    second = EvaluationJob.objects.create(submission=submission, benchmark="digits", dataset=dataset, sent_at=now)
    stranger = submission_create(SubmissionRequest(owner=make_user("eve"), model_name="Eve's secret model",
                                                   source="builtin", architecture="efficientnet_lite0",
                                                   benchmarks=["digits"]))

    cpu = queue_selectors.queue_states()["cpu"]
    assert [w.name for w in cpu.workers] == ["celery@a"]
    assert [(e.job.pk, e.position, e.eta_s) for e in cpu.queued] == [
        (first.pk, 1, 0.0), (second.pk, 2, 60.0), (stranger.jobs.get().pk, 3, 120.0)]
    summary = queue_selectors.status_summary(submission.owner)
    lines = summary["queues"][0]["jobs"]
    assert [line["model"] for line in lines] == ["Precomputed", "Precomputed", "a private submission"]
    assert lines[1]["eta"] == "about 1 min" and lines[0]["mine"] and not lines[2]["mine"]
    assert [w["name"] for w in summary["workers"]] == ["celery@a"] and lines[2]["submission"] is None

    from leaderboard.submissions.selectors import submission_status

    def places():
        return {job["id"]: job["queue_place"] for job in submission_status(submission, submission.owner)["jobs"]}

    assert places()[first.pk]["label"] == "1st in the 'cpu' queue, starts in under a minute"
    assert places()[second.pk]["label"] == "2nd in the 'cpu' queue, starts in about 1 min"
    assert {places()[job.pk] for job in submission.jobs.filter(status="done")} == {None}
    Worker.objects.all().delete()
    assert places()[first.pk]["label"] == "1st in the 'cpu' queue (no worker is consuming this queue right now)"


def test_the_status_page_lists_workers_and_places_and_hides_private_names(client, submission, make_user):
    now = timezone.now()
    Worker.objects.create(name="celery@gpu-box", queues=["gpu"], hardware="GPU: NVIDIA H200", gpu=True,
                          started_at=now, seen_at=now)
    client.force_login(make_user("eve"))
    page = client.get("/status/")
    assert page.status_code == 200 and page["Cache-Control"] == "no-store"
    html = page.content.decode()
    assert "celery@gpu-box" in html and "GPU: NVIDIA H200" in html
    assert "a private submission" in html and "Precomputed" not in html


def test_api_status_gives_the_same_queue_as_json_and_never_a_private_name(client, submission, make_user):
    now = timezone.now()
    Worker.objects.create(name="celery@box", queues=["cpu"], hardware="CPU: 2 cores", started_at=now, seen_at=now)
    job = submission.jobs.get()
    running = EvaluationJob.objects.create(submission=submission, benchmark="digits", dataset=job.dataset,
                                           status="running", worker="celery@box", heartbeat_at=now, started_at=now,
                                           stage="extracting", done=3, total=9)
    client.force_login(submission.owner)     # the API reads no session: the owner is anonymous there

    status = client.get("/api/status/")
    assert status.status_code == 200 and status["Cache-Control"] == "no-store"
    body = status.json()
    [worker] = body["workers"]
    assert worker["name"] == "celery@box" and worker["gpu"] is False and worker["queues"] == ["cpu"]
    assert worker["current_job"]["job"] == running.pk and worker["current_job"]["done"] == 3
    assert worker["current_job"]["model"] == "a private submission"
    [cpu] = body["queues"]
    assert (cpu["name"], cpu["workers"], cpu["running"], cpu["queued"]) == ("cpu", 1, 1, 1)
    assert cpu["jobs"][0]["job"] == job.pk and cpu["jobs"][0]["position"] == 1
    assert cpu["jobs"][0]["waiting_for_broker"] is True and "Precomputed" not in status.content.decode()


# ---- fair use -----------------------------------------------------------------------------------

def test_the_form_shows_the_allowance_and_a_spent_one_is_refused_before_the_upload_is_read(
        client, make_user, digits, settings, tmp_path, monkeypatch, session_media):
    settings.SHELFMARK_SUBMISSIONS_PER_DAY, settings.SHELFMARK_JOBS_AT_ONCE = 2, 10
    owner = make_user("ada")
    client.force_login(owner)
    page = client.get("/submissions/new/").content.decode()
    assert "<strong>2</strong> of 2 submissions left in the last 24 hours" in page
    content = digits_features(tmp_path / "f.npz").read_bytes()
    assert features_post(client, content, model_name="one").status_code == 302
    assert features_post(client, content, model_name="two").status_code == 302

    read = []
    monkeypatch.setattr(SizeLimitedUploadHandler, "receive_data_chunk",
                        lambda self, data, start: read.append(len(data)) or data)
    refused = features_post(client, content, model_name="three")
    assert refused.status_code == 429 and read == []            # not a byte of the upload was read
    assert "You have made 2 submissions in the last 24 hours" in refused.content.decode()
    assert "disabled" in refused.content.decode() and Submission.objects.count() == 2

    staff = make_user("root")
    staff.is_staff = True
    staff.save()
    monkeypatch.undo()
    client.force_login(staff)
    assert features_post(client, content, model_name="staff are exempt").status_code == 302


def test_too_many_jobs_at_once_is_refused_with_the_numbers(make_user, digits, features_npz, settings):
    settings.SHELFMARK_JOBS_AT_ONCE = 1
    owner = make_user("ada")
    request = {"owner": owner, "source": "features", "benchmarks": ["digits"], "upload": features_npz,
               "keep_upload": True}
    submission_create(SubmissionRequest(model_name="first", **request))
    with pytest.raises(services.SubmissionRefused, match="You have 1 jobs queued or running .* at most 1"):
        submission_create(SubmissionRequest(model_name="second", **request))


def test_the_same_form_sent_twice_makes_one_submission(client, make_user, digits, tmp_path):
    client.force_login(make_user("ada"))
    content = digits_features(tmp_path / "f.npz").read_bytes()
    first = features_post(client, content)
    again = features_post(client, content)
    assert Submission.objects.count() == 1
    assert again.status_code == 302 and again["Location"] == first["Location"]
    assert "already received as #" in client.get(again["Location"]).content.decode()
    other = digits_features(tmp_path / "g.npz", dim=9).read_bytes()   # another file: a new submission
    features_post(client, other)
    assert Submission.objects.count() == 2


def test_a_resubmission_with_other_protocols_or_after_a_failure_is_a_new_submission(client, make_user, digits,
                                                                                   tmp_path):
    client.force_login(make_user("ada"))
    content = digits_features(tmp_path / "f.npz").read_bytes()
    features_post(client, content, protocols=["svm"])
    features_post(client, content, protocols=["svm", "knn"])      # other protocols: wanted, not a repeat
    assert Submission.objects.count() == 2
    features_post(client, content, protocols=["knn", "svm"])      # the same, in another order: a repeat
    assert Submission.objects.count() == 2
    EvaluationJob.objects.update(status="failed")
    features_post(client, content, protocols=["svm"])             # trying again after a failure
    assert Submission.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_two_copies_of_a_form_at_once_make_one_submission(make_user, digits, tmp_path):
    """A double click: two requests at once, each checked under the owner's row lock, one after the other."""
    import threading

    from django.db import connection

    owner = make_user("ada")
    files = [digits_features(tmp_path / f"f{i}.npz") for i in range(2)]   # the same bytes, two uploads
    start, outcomes = threading.Barrier(2), []

    def submit(path):
        try:
            start.wait()
            submission_create(SubmissionRequest(owner=owner, model_name="Twice", source="features",
                                                benchmarks=["digits"], upload=path, keep_upload=True, dedupe=True))
            outcomes.append("created")
        except services.DuplicateSubmission:
            outcomes.append("duplicate")
        finally:
            connection.close()

    threads = [threading.Thread(target=submit, args=(path,)) for path in files]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(outcomes) == ["created", "duplicate"] and Submission.objects.count() == 1


def test_protocols_added_to_a_submission_count_towards_the_jobs_at_once(submission, settings):
    settings.SHELFMARK_JOBS_AT_ONCE = 1               # its one job is queued: no room for another
    with pytest.raises(services.SubmissionRefused, match="at most 1 may wait at once"):
        services.submission_add_protocols(submission, ["knn"])
    submission.owner.is_staff = True
    submission.owner.save()
    EvaluationJob.objects.filter(submission=submission).update(status="done")
    settings.SHELFMARK_JOBS_AT_ONCE = 0
    assert services.submission_add_protocols(submission, ["knn"])


# ---- bodies refused unread, re-runs -------------------------------------------------------------

def test_a_body_over_the_limit_is_refused_from_its_headers(client, make_user, settings, monkeypatch):
    settings.SHELFMARK_MAX_UPLOAD_BYTES = 1000
    read = []
    monkeypatch.setattr(SizeLimitedUploadHandler, "receive_data_chunk",
                        lambda self, data, start: read.append(len(data)) or data)
    client.force_login(make_user("ada"))
    big = client.generic("POST", "/submissions/new/", b"x" * 10, CONTENT_TYPE="multipart/form-data; boundary=x",
                         CONTENT_LENGTH=str(3 * 2**30))
    assert big.status_code == 413 and big["Connection"] == "close" and read == []
    assert "3.0\xa0GB, more than the upload limit of 1000\xa0bytes; nothing of it was read" in big.content.decode()
    chunked = client.generic("POST", "/submissions/new/", b"", HTTP_TRANSFER_ENCODING="chunked")
    assert chunked.status_code == 411
    assert client.get("/").status_code == 200


def test_a_staff_re_run_keeps_the_earlier_result_in_the_history(submission, make_user):
    from workers.contract import EvaluationResult

    job = submission.jobs.get()
    EvaluationJob.objects.filter(pk=job.pk).update(status="running", protocols=["svm"])

    def evaluation(score):
        entry = {"name": "svm", "title": "svm", "version": "shelfmark-protocols/1.0", "metric": "mean_class_accuracy",
                 "score": score, "per_class": {}, "settings": {"protocol": "svm"}, "artifacts": {}}
        return EvaluationResult(benchmark="digits", metric="mean_class_accuracy", score=score, protocols=[entry],
                                provenance={"git_commit": "abc", "model": {}})

    services.job_complete(job.pk, evaluation(0.5), duration_s=1.0)
    out = io.StringIO()
    call_command("rerun", str(job.pk), "--fresh", stdout=out)
    rerun = submission.jobs.exclude(pk=job.pk).get()
    assert out.getvalue().strip() == f"job {job.pk}: re-run queued as job {rerun.pk} on 'cpu'"
    assert rerun.protocols == ["svm"] and not rerun.use_feature_cache and f"re-run of job {job.pk}" in rerun.log
    EvaluationJob.objects.filter(pk=rerun.pk).update(status="running")
    services.job_complete(rerun.pk, evaluation(0.75), duration_s=1.0)
    services.submission_make_public(submission)
    history = {jr.job_id: (jr.superseded, jr.result.is_public, jr.result.score)
               for jr in submission.jobs.get(pk=job.pk).job_results.all() | rerun.job_results.all()}
    assert history == {job.pk: (True, False, 50.0), rerun.pk: (False, True, 75.0)}
    assert np.isclose(rerun.job_results.get().result.score, 75.0)


def test_the_admin_re_run_action_queues_a_new_job_for_staff_only(client, submission, make_user):
    job = submission.jobs.get()
    EvaluationJob.objects.filter(pk=job.pk).update(status="done")
    form = {"action": "rerun", "_selected_action": [job.pk]}

    client.force_login(make_user("mallory"))
    client.post("/admin/submissions/evaluationjob/", form)
    assert submission.jobs.count() == 1                      # not staff: the admin sends them to log in

    client.force_login(_superuser(make_user))
    response = client.post("/admin/submissions/evaluationjob/", form, follow=True)
    assert response.status_code == 200
    rerun = submission.jobs.exclude(pk=job.pk).get()
    assert rerun.status == "queued" and rerun.use_feature_cache and f"re-run of job {job.pk}" in rerun.log
    assert EvaluationJob.objects.get(pk=job.pk).status == "done"   # the earlier job and its result stay


def _superuser(make_user):
    user = make_user("root", staff=True)
    user.is_superuser = True
    user.save()
    return user


# ---- one copy of a job at a time ----------------------------------------------------------------

def test_senders_at_once_send_a_job_once(submission, celery_app, settings):
    # was: every sender (the web's commit hook, beat, each worker's timer) sent what it found unsent
    job = submission.jobs.get()
    EvaluationJob.objects.filter(pk=job.pk).update(queue="send-once", sent_at=None)
    try:
        assert queue.job_send(job.pk) is True
        assert queue.job_send(job.pk) is False          # claimed already: not sent again
        assert queue.jobs_requeue_pending() == (0, 0)
        with celery_app.connection_for_write() as broker:
            assert broker.default_channel.client.llen("send-once") == 1
    finally:
        with celery_app.connection_for_write() as broker:
            broker.default_channel.queue_purge("send-once")


def test_a_second_copy_of_a_running_jobs_message_is_dropped_unless_its_process_is_gone(submission, settings):
    import subprocess
    import sys

    settings.SHELFMARK_HEARTBEAT_INTERVAL_S = 10
    job = submission.jobs.get()
    first = job_begin(job.pk, task_id=job.task_id, worker="celery@box", pid=os.getpid())
    assert first.attempts == 1
    # a duplicate delivery while this process runs it, here or elsewhere: dropped
    assert job_begin(job.pk, task_id=job.task_id, worker="celery@box", pid=os.getpid() + 1) is None
    assert job_begin(job.pk, task_id=job.task_id, worker="celery@elsewhere", pid=1234) is None
    # redelivered after its pool process died (acks_late): taken, as the next attempt
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    EvaluationJob.objects.filter(pk=job.pk).update(worker_pid=dead.pid)
    again = job_begin(job.pk, task_id=job.task_id, worker="celery@box", pid=os.getpid())
    assert again.attempts == 2
    # from another machine: taken once its heartbeat is two intervals old
    EvaluationJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=21))
    assert job_begin(job.pk, task_id=job.task_id, worker="celery@elsewhere", pid=1234).attempts == 3


def test_a_retry_after_a_transient_error_continues_the_attempt(submission, settings):
    job = submission.jobs.get()
    assert job_begin(job.pk, task_id=job.task_id, worker="celery@box", pid=os.getpid()).attempts == 1
    assert services.job_release(job.pk, job.task_id, "transient error, retrying: database away") is True
    released = EvaluationJob.objects.get(pk=job.pk)
    assert released.status == "queued" and released.attempts == 0
    assert job_begin(job.pk, task_id=job.task_id, worker="celery@box", pid=os.getpid()).attempts == 1
    assert services.job_release(job.pk, "another-task", "retrying") is False   # not this attempt's job


def test_a_stale_attempt_that_finishes_late_records_nothing(submission):
    from workers.contract import EvaluationResult

    job = submission.jobs.get()
    job_begin(job.pk, task_id=job.task_id, worker="celery@box", pid=os.getpid())
    entry = {"name": "svm", "title": "svm", "version": "shelfmark-protocols/1.0", "metric": "mean_class_accuracy",
             "score": 0.9, "per_class": {}, "settings": {"protocol": "svm"}, "artifacts": {}}
    late = EvaluationResult(benchmark="digits", metric="mean_class_accuracy", score=0.9, protocols=[entry],
                            provenance={"git_commit": "abc", "model": {}})
    services.job_complete(job.pk, late, duration_s=1.0, task_id="the-lost-attempts-task")
    job.refresh_from_db()
    assert job.status == "running" and job.result_id is None and not job.job_results.exists()


def test_a_running_jobs_heartbeat_keeps_its_worker_listed(submission, settings):
    # a solo-pool worker runs the job on the loop that would report it: the heartbeat reports it instead
    long_ago = timezone.now() - timedelta(minutes=10)
    Worker.objects.create(name="celery@gpu", queues=["gpu"], hardware="GPU", gpu=True, started_at=long_ago,
                          seen_at=long_ago)
    job = submission.jobs.get()
    job_begin(job.pk, task_id=job.task_id, worker="celery@gpu", pid=os.getpid())
    assert queue.JobHeartbeat(job.pk, job.task_id, worker="celery@gpu").beat() is True
    assert [w.name for w in queue_selectors.online_workers()] == ["celery@gpu"]
