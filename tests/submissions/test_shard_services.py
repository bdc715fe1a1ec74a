"""A large job's extraction in shards, on database rows (leaderboard/submissions/shards.py): planned into
shards sent as one group, the last shard in sends the scoring step exactly once, a shard whose worker died
is sent again alone, a failed shard fails the job saying which, progress is the sum of the shards'.
Three real workers on an ImageNet replica: test_sharded_imagenet.py."""
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.utils import timezone

from leaderboard.submissions import queue, shards
from leaderboard.submissions.models import EvaluationJob, ExtractionShard
from leaderboard.submissions.services import JobCancelled, SubmissionRequest, job_begin, submission_create
from workers.contract import Progress

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(make_user, digits, settings):
    settings.SHELFMARK_SHARD_SIZE = 300   # digits' 898 + 899 images: 3 + 3 shards
    submission = submission_create(SubmissionRequest(owner=make_user("ada"), model_name="Lite0", source="builtin",
                                                     architecture="efficientnet_lite0", benchmarks=["digits"]))
    job = submission.jobs.get()
    return job_begin(job.pk, task_id=job.task_id, worker="celery@planner", pid=1)


def _start(job, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as sends:
        assert shards.job_shards_start(job.pk, job.task_id) is True
    job.refresh_from_db()
    return sends


def _finish(shard, worker="celery@a", pid=11):
    begun = shards.shard_begin(shard.pk, task_id=shard.task_id, worker=worker, pid=pid)
    assert begun is not None
    return shards.shard_complete(shard.pk, begun.task_id, {"seconds": 1.5, "images_per_second": 200.0})


def test_a_large_job_is_planned_into_shards_and_waits_for_them(job, django_capture_on_commit_callbacks):
    sends = _start(job, django_capture_on_commit_callbacks)
    assert len(sends) == 1   # one group of shard tasks, sent after the commit
    planned = list(job.shards.values_list("split", "start", "stop"))
    assert planned == [("train", 0, 300), ("train", 300, 600), ("train", 600, 898),
                       ("test", 0, 300), ("test", 300, 600), ("test", 600, 899)]
    assert job.status == "running" and job.stage == "extracting" and job.total == 1797 and job.done == 0
    assert "in 6 shards" in job.log
    assert len(set(job.shards.values_list("task_id", flat=True))) == 6

    # A job waiting for its shards has no heartbeat of its own: the reaper leaves it alone.
    EvaluationJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert queue.jobs_requeue_stale() == (0, 0)


def test_a_small_job_runs_in_its_own_task(job, settings):
    settings.SHELFMARK_SHARD_SIZE = 5000
    assert shards.job_shards_start(job.pk, job.task_id) is False
    assert not ExtractionShard.objects.exists()


def test_the_last_shard_in_sends_the_scoring_step_exactly_once(job, django_capture_on_commit_callbacks):
    _start(job, django_capture_on_commit_callbacks)
    first, *rest = list(job.shards.all())
    assert _finish(first)
    assert shards.shard_complete(first.pk, first.task_id, {}) is False   # a second copy of its message
    job.refresh_from_db()
    assert job.status == "running" and job.done == 300 and job.message.startswith("shards: 1 of 6 done")
    with django_capture_on_commit_callbacks(execute=False) as sends:
        for shard in rest:
            _finish(shard, worker=f"celery@{shard.index % 3}")
    job.refresh_from_db()
    assert job.status == "queued" and job.sent_at is None and len(sends) == 1   # the scoring step, once
    assert job.attempts == 0   # the planning attempt is not counted against the job
    assert "6 shards extracted (1797 images" in job.log and "on 4 worker(s)" in job.log
    scoring = job_begin(job.pk, task_id=job.task_id, worker="celery@a", pid=12)
    assert scoring is not None and shards.job_shards_start(job.pk, job.task_id) is False   # all in: score now


def test_a_shard_whose_worker_died_is_sent_again_alone(job, django_capture_on_commit_callbacks, settings):
    _start(job, django_capture_on_commit_callbacks)
    done, lost, *_ = list(job.shards.all())
    _finish(done)
    begun = shards.shard_begin(lost.pk, task_id=lost.task_id, worker="celery@gone", pid=99)
    old = timezone.now() - timedelta(seconds=settings.SHELFMARK_HEARTBEAT_TIMEOUT_S + 5)
    ExtractionShard.objects.filter(pk=lost.pk).update(heartbeat_at=old)
    with django_capture_on_commit_callbacks(execute=False):
        assert shards.shards_requeue_stale() == (1, 0)
    lost.refresh_from_db()
    assert lost.status == "queued" and lost.task_id != begun.task_id and lost.sent_at is None
    assert job.shards.filter(status="done").count() == 1 and job.shards.get(pk=done.pk).seconds == 1.5
    assert shards.shard_begin(lost.pk, task_id=begun.task_id, worker="celery@late") is None   # its old message
    again = shards.shard_begin(lost.pk, task_id=lost.task_id, worker="celery@b", pid=5)
    assert again.attempts == 2
    job.refresh_from_db()
    assert job.status == "running" and "shard 2 (no sign of life" in job.log and "sent again, alone" in job.log


def test_a_shard_that_fails_fails_the_job_and_stops_the_others(job, django_capture_on_commit_callbacks):
    _start(job, django_capture_on_commit_callbacks)
    broken, running, waiting, *_ = list(job.shards.all())
    for shard in (broken, running):
        shards.shard_begin(shard.pk, task_id=shard.task_id, worker="celery@a", pid=7)
    shards.shard_fail(broken.pk, broken.task_id, "cannot read image digit0042")
    job.refresh_from_db()
    assert job.status == "failed"
    assert job.error.startswith("Extraction shard 1 of 6 (train, images 1-300) failed: cannot read image digit0042")
    with pytest.raises(JobCancelled, match="no longer running"):
        shards.ShardProgress(running.pk, running.task_id, interval=0)(Progress("extracting", 10, 300))
    assert shards.shard_begin(waiting.pk, task_id=waiting.task_id, worker="celery@b") is None


def test_the_jobs_progress_is_the_sum_of_its_shards(job, django_capture_on_commit_callbacks):
    _start(job, django_capture_on_commit_callbacks)
    one, two, three, *_ = list(job.shards.all())
    _finish(one)
    for shard, done, rate in ((two, 120, 40.0), (three, 30, 25.0)):
        shards.shard_begin(shard.pk, task_id=shard.task_id, worker="celery@a", pid=7)
        shards.ShardProgress(shard.pk, shard.task_id, interval=0)(Progress("extracting", done, 300, rate))
    job.refresh_from_db()
    assert (job.done, job.total, job.images_per_second) == (450, 1797, 65.0)
    assert job.message == "shards: 1 of 6 done, 2 running"
    with pytest.raises(JobCancelled, match="sent again"):
        shards.ShardProgress(two.pk, "an-old-task-id", interval=0)(Progress("extracting", 130, 300))


def test_cancelling_a_sharded_job_revokes_its_shards(job, django_capture_on_commit_callbacks, monkeypatch):
    from leaderboard.submissions import services

    _start(job, django_capture_on_commit_callbacks)
    revoked = []
    monkeypatch.setattr(services, "_revoke", revoked.append)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.job_cancel(job)
    assert set(revoked) == {job.task_id, *job.shards.values_list("task_id", flat=True)}


def test_the_status_page_shows_which_shard_each_worker_runs(job, django_capture_on_commit_callbacks, client):
    from leaderboard.submissions.models import Worker

    _start(job, django_capture_on_commit_callbacks)
    now = timezone.now()
    for name in ("celery@planner", "celery@a"):
        Worker.objects.create(name=name, queues=["cpu"], hardware="CPU", started_at=now, seen_at=now)
    second = job.shards.get(index=1)
    shards.shard_begin(second.pk, task_id=second.task_id, worker="celery@a", pid=7)
    shards.ShardProgress(second.pk, second.task_id, interval=0)(Progress("extracting", 40, 300, 20.0))
    workers = {w["name"]: w["current_job"] for w in client.get("/api/status/").json()["workers"]}
    assert workers["celery@a"]["stage"] == "extracting shard 2 of 6" and workers["celery@a"]["done"] == 40
    assert workers["celery@planner"] is None   # it planned the job; no process of its own runs it now
    assert "extracting shard 2 of 6 40/300" in client.get("/status/").content.decode()


def test_a_restarted_worker_sends_again_at_once_the_shard_its_dead_process_ran(job, django_capture_on_commit_callbacks):
    _start(job, django_capture_on_commit_callbacks)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lost, alive, *_ = list(job.shards.all())
    shards.shard_begin(lost.pk, task_id=lost.task_id, worker="celery@box", pid=dead.pid)
    shards.shard_begin(alive.pk, task_id=alive.task_id, worker="celery@box", pid=os.getpid())
    with django_capture_on_commit_callbacks(execute=False):
        assert shards.shards_requeue_lost_on("celery@box") == 1
    assert job.shards.get(pk=lost.pk).status == "queued" and job.shards.get(pk=alive.pk).status == "running"


def test_a_late_copy_of_the_planning_message_is_dropped(job, django_capture_on_commit_callbacks, settings):
    _start(job, django_capture_on_commit_callbacks)
    old = timezone.now() - timedelta(seconds=10 * settings.SHELFMARK_HEARTBEAT_INTERVAL_S)
    EvaluationJob.objects.filter(pk=job.pk).update(heartbeat_at=old)   # no process beats a job waiting for shards
    assert job_begin(job.pk, task_id=job.task_id, worker="celery@other", pid=2) is None
    job.refresh_from_db()
    assert job.attempts == 1 and job.stage == "extracting"


def test_the_plan_stands_for_a_worker_with_another_shard_size(job, django_capture_on_commit_callbacks, settings):
    from leaderboard import engine

    _start(job, django_capture_on_commit_callbacks)
    for shard in job.shards.all():
        _finish(shard)
    job.refresh_from_db()
    settings.SHELFMARK_SHARD_SIZE = 200   # the scoring step lands on a worker set up otherwise
    scoring = job_begin(job.pk, task_id=job.task_id, worker="celery@b", pid=3)
    assert shards.job_shards_start(scoring.pk, scoring.task_id) is False   # all in: score, never plan again
    assert job.shards.count() == 6 and engine.job_spec(scoring).shard_size == 300


def test_a_stopped_job_stops_its_shards(job, django_capture_on_commit_callbacks):
    from leaderboard.submissions.services import job_fail

    _start(job, django_capture_on_commit_callbacks)
    running = job.shards.first()
    shards.shard_begin(running.pk, task_id=running.task_id, worker="celery@a", pid=7)
    job_fail(job.pk, "the model broke")
    assert set(job.shards.values_list("status", flat=True)) == {"failed"}
