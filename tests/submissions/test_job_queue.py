"""The job queue with a real Redis and a real Celery worker: crashes, broker outages, reruns, cancelling,
and the beat schedule that re-sends jobs that missed the broker."""
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from submission_helpers import wait_for

from leaderboard.registry.models import Result
from leaderboard.submissions import services
from leaderboard.submissions.models import EvaluationJob
from leaderboard.submissions.services import SubmissionRequest, submission_create

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]
REPO = Path(__file__).resolve().parents[2]


def tiny_onnx(path, *, channels=16):
    """A small convolutional ONNX graph, unique per call so the feature cache never has its features."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(int(uuid.uuid4().int % 2**32))
    weight = numpy_helper.from_array(rng.normal(size=(channels, 3, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w"], ["maps"], strides=[2, 2]),
         helper.make_node("Relu", ["maps"], ["relu"]),
         helper.make_node("GlobalAveragePool", ["relu"], ["features"])],
        "tiny_conv",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 224, 224])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", channels, 1, 1])],
        initializer=[weight],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def submit_onnx(owner, tmp_path, name="Tiny conv (ONNX)"):
    """A submission whose one job runs the SVM protocol alone: one result."""
    return submission_create(SubmissionRequest(owner=owner, model_name=name, source="onnx", benchmarks=["digits"],
                                               upload=tiny_onnx(tmp_path / f"{uuid.uuid4().hex}.onnx"),
                                               keep_upload=True, protocols=["svm"]))


def refreshed(job):
    job.refresh_from_db()
    return job


def test_a_killed_worker_child_finishes_the_job_exactly_once(worker, digits, make_user, tmp_path):
    submission = submit_onnx(make_user("ada"), tmp_path)
    job = submission.jobs.get()
    wait_for(lambda: refreshed(job).sent_at, 10, what="the broker to take the job")

    wait_for(lambda: refreshed(job).stage == "extracting" and 0 < job.done < job.total, 120,
             interval=0.05, what="extraction to start")
    children = worker.pool_children()
    assert len(children) == 1
    os.kill(children[0], signal.SIGKILL)
    killed_at = time.monotonic()

    wait_for(lambda: refreshed(job).is_finished, 180, what="the job to finish after the crash")
    recovery = time.monotonic() - killed_at
    print(f"\ncrashed worker: {recovery:.1f}s from SIGKILL to the finished result")
    assert job.status == EvaluationJob.Status.DONE, job.error
    assert job.attempts == 2
    assert Result.objects.filter(job=job).count() == 1
    assert Result.objects.filter(method__name="Tiny conv (ONNX)").count() == 1
    assert worker.pool_children() and worker.pool_children() != children

    # Running the task again (a redelivered message) changes nothing.
    from workers.tasks import evaluate_job

    assert evaluate_job.apply_async(args=[job.pk], queue="cpu").get(timeout=60) == "already finished"
    assert Result.objects.filter(method__name="Tiny conv (ONNX)").count() == 1


def test_a_job_waits_for_the_broker_and_is_requeued_when_it_is_back(worker, digits, make_user, celery_app,
                                                                     monkeypatch, client, features_npz):
    owner = make_user("grace")
    live_broker = celery_app.conf.broker_url
    monkeypatch.setattr(celery_app.conf, "broker_url", "redis://127.0.0.1:1/0")  # nothing listens there
    submission = submission_create(SubmissionRequest(owner=owner, model_name="Precomputed", source="features",
                                                     benchmarks=["digits"], upload=features_npz, keep_upload=True))
    job = submission.jobs.get()
    assert job.status == "queued" and job.sent_at is None

    client.force_login(owner)
    status = client.get(f"/submissions/{submission.pk}/status.json").json()["jobs"][0]
    assert status["status_label"] == "queued (waiting for broker)"
    assert "The job queue is unreachable" in client.get(submission.get_absolute_url()).content.decode()
    assert services.jobs_requeue_pending() == (0, 1)

    monkeypatch.setattr(celery_app.conf, "broker_url", live_broker)
    assert services.jobs_requeue_pending() == (1, 0)
    wait_for(lambda: refreshed(job).is_finished, 120, what="the requeued job to finish")
    assert job.status == "done", job.error
    assert services.jobs_requeue_pending() == (0, 0)


def test_an_engine_error_is_shown_without_retries_and_details_only_to_the_owner(
        worker, digits, make_user, features_npz, client, settings):
    owner = make_user("linus")
    submission = submission_create(SubmissionRequest(owner=owner, model_name="Vanishing features", source="features",
                                                     benchmarks=["digits"], upload=features_npz, keep_upload=True))
    job = submission.jobs.get()
    # The file disappears between validation and the run: the engine refuses with an EngineError.
    (settings.MEDIA_ROOT / submission.upload).unlink()
    wait_for(lambda: refreshed(job).is_finished, 60, what="the job to fail")
    assert job.status == "failed" and job.attempts == 1
    assert "features file not found" in job.error and "Traceback" in job.error_details

    services.submission_make_public(submission)
    client.force_login(make_user("someone-else"))
    status = client.get(f"/submissions/{submission.pk}/status.json").json()["jobs"][0]
    assert status["error"] == job.error
    assert "error_details" not in status


def test_cancelling_a_running_job_stops_it(worker, digits, make_user, tmp_path, client):
    owner = make_user("margaret")
    submission = submit_onnx(owner, tmp_path)
    job = submission.jobs.get()
    wait_for(lambda: refreshed(job).status == "running", 60, what="the job to start")

    client.force_login(owner)
    response = client.post(f"/jobs/{job.pk}/cancel/")
    assert response.status_code == 302
    assert refreshed(job).status == "cancelled"
    time.sleep(3)
    assert refreshed(job).status == "cancelled" and job.result is None
    assert not Result.objects.filter(method__name="Tiny conv (ONNX)").exists()


def test_submit_command_waits_and_prints_one_json_line(worker, digits, make_user, features_npz, capsys):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    make_user("ada")
    call_command("submit", "--user", "ada", "--model", "precomputed", "--features", str(features_npz),
                 "--benchmark", "digits", "--wait", "--timeout", "120")
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert 0.5 < line["score"] <= 1.0 and line["board_score"] == pytest.approx(line["score"] * 100)

    with pytest.raises(CommandError, match="refused: .*not a built-in model"):
        call_command("submit", "--user", "ada", "--model", "resnet18", "--benchmark", "digits", "--wait")


def test_beat_sends_the_requeue_task_on_its_schedule(redis_url, tmp_path):
    # was: requeue_pending's docstring said "periodic" and nothing scheduled it
    import redis

    own_db = redis_url.replace("/13", "/14") if redis_url.startswith("redis://") else \
        redis_url.replace("virtual_host=13", "virtual_host=14")   # no worker consumes this one
    broker = redis.Redis.from_url(own_db)
    broker.flushdb()
    env = {**os.environ, "REDIS_URL": own_db, "SHELFMARK_REQUEUE_INTERVAL_S": "1",
           "DJANGO_SETTINGS_MODULE": "leaderboard.settings"}
    beat = subprocess.Popen([sys.executable, "-m", "celery", "-A", "leaderboard", "beat", "--schedule",
                             str(tmp_path / "schedule"), "--loglevel", "INFO"], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        messages = wait_for(lambda: broker.lrange("cpu", 0, -1), 60, what="beat to send a message to 'cpu'")
    finally:
        beat.terminate()
        beat.wait(timeout=30)
    assert {json.loads(message)["headers"]["task"] for message in messages} == {"shelfmark.requeue_pending"}
    broker.flushdb()
