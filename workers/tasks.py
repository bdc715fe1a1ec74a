"""Celery tasks that drive the engine: the only module of workers/ that imports Django.

Queues are settings (SHELFMARK_CPU_QUEUE, SHELFMARK_GPU_QUEUE): a job goes to the GPU queue when
SHELFMARK_GPU_WORKER says a GPU worker consumes it. Start a worker with `celery -A leaderboard
worker -Q cpu` (CPU machine) or `-Q gpu --pool solo` (GPU machine). A task takes a job id, loads
fresh state and calls the submission services; with acks_late it may run twice, and the services
make the second run a no-op once a Result exists. The site reaches these tasks by name only
(workers/contract.py), so nothing on the web side imports this module.
"""
from __future__ import annotations

import logging
import time
import traceback

import os

from celery import bootsteps, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_ready

from workers.contract import EVALUATE_JOB_TASK, EXTRACT_SHARD_TASK, REQUEUE_JOBS_TASK
from workers.provenance import hardware_label

log = logging.getLogger(__name__)

INTERNAL_ERROR = "internal error, staff have the details"


def _transient_errors() -> tuple[type[BaseException], ...]:
    """Errors worth a retry: the broker or the database away for a moment, a data file unreadable."""
    from django.db import OperationalError as DatabaseUnavailable
    from kombu.exceptions import OperationalError as BrokerUnavailable
    from redis.exceptions import ConnectionError as RedisConnectionError

    return (RedisConnectionError, BrokerUnavailable, DatabaseUnavailable, OSError)


@shared_task(bind=True, name=EVALUATE_JOB_TASK, max_retries=3, acks_late=True, reject_on_worker_lost=True)
def evaluate_job(self, job_id: int) -> str:
    """Evaluate one (submission, benchmark) job and record its result on the live board."""
    from leaderboard import engine
    from leaderboard.submissions import services
    from workers.contract import EngineError
    from workers.evaluate import run_evaluation

    from leaderboard.submissions.queue import JobHeartbeat
    from leaderboard.submissions.shards import job_shards_start

    transient = _transient_errors()
    task_id = self.request.id or ""
    try:
        job = services.job_begin(job_id, hardware=hardware_label(), task_id=task_id,
                                 worker=self.request.hostname or "", pid=os.getpid())
    except transient as exc:
        raise self.retry(exc=exc, countdown=2 ** self.request.retries) from exc
    if job is None:
        return "already finished"
    started = time.monotonic()
    try:
        with JobHeartbeat(job_id, task_id, worker=self.request.hostname or ""):
            if job_shards_start(job_id, task_id):   # a large benchmark: its shards first, on every worker
                return "extracting in shards"
            evaluation = run_evaluation(engine.job_spec(job), services.ProgressWriter(job_id, task_id=task_id))
    except services.JobCancelled:
        return "cancelled"
    except EngineError as exc:
        services.job_fail(job_id, str(exc) or type(exc).__name__, traceback.format_exc())
        return "failed"
    except SoftTimeLimitExceeded:
        services.job_fail(job_id, "The evaluation ran past its time limit.", traceback.format_exc())
        return "failed"
    except transient as exc:
        if self.request.retries < self.max_retries:
            if not services.job_release(job_id, task_id, f"transient error, retrying: {exc}"):
                return "lost its job"   # queued again or cancelled meanwhile: nothing to retry
            raise self.retry(exc=exc, countdown=2 ** self.request.retries) from exc
        services.job_fail(job_id, f"The evaluation failed after {self.max_retries} retries: {exc}",
                          traceback.format_exc())
        return "failed"
    except Exception:
        log.exception("job %s: unexpected error", job_id)
        services.job_fail(job_id, INTERNAL_ERROR, traceback.format_exc())
        return "failed"
    services.job_complete(job_id, evaluation, duration_s=time.monotonic() - started, task_id=task_id)
    services.board_warm(job_id)
    return "done"


@shared_task(bind=True, name=EXTRACT_SHARD_TASK, max_retries=3, acks_late=True, reject_on_worker_lost=True)
def extract_shard(self, shard_id: int) -> str:
    """Extract one shard of a large job into the shared feature cache (workers/shards.py); the last shard
    in sends the job's scoring step (leaderboard/submissions/shards.py)."""
    from leaderboard import engine
    from leaderboard.submissions import shards
    from leaderboard.submissions.queue import ShardHeartbeat
    from leaderboard.submissions.services import JobCancelled
    from workers.contract import EngineError

    transient = _transient_errors()
    task_id = self.request.id or ""
    try:
        shard = shards.shard_begin(shard_id, task_id=task_id, worker=self.request.hostname or "", pid=os.getpid())
    except transient as exc:
        raise self.retry(exc=exc, countdown=2 ** self.request.retries) from exc
    if shard is None:
        return "dropped"
    try:
        with ShardHeartbeat(shard_id, task_id, worker=self.request.hostname or ""):
            outcome = engine.shard_extract(shard.job, {"split": shard.split, "start": shard.start, "stop": shard.stop,
                                                       "jitter": shard.jitter or None},
                                           shards.ShardProgress(shard_id, task_id))
    except JobCancelled:
        return "cancelled"
    except EngineError as exc:
        shards.shard_fail(shard_id, task_id, str(exc) or type(exc).__name__, traceback.format_exc())
        return "failed"
    except SoftTimeLimitExceeded:
        shards.shard_fail(shard_id, task_id, "it ran past its time limit", traceback.format_exc())
        return "failed"
    except transient as exc:
        if self.request.retries < self.max_retries and shards.shard_release(shard_id, task_id, f"retrying: {exc}"):
            raise self.retry(exc=exc, countdown=2 ** self.request.retries) from exc
        shards.shard_fail(shard_id, task_id, f"{exc} (after {self.request.retries} retries)", traceback.format_exc())
        return "failed"
    except Exception:
        log.exception("shard %s: unexpected error", shard_id)
        shards.shard_fail(shard_id, task_id, INTERNAL_ERROR, traceback.format_exc())
        return "failed"
    shards.shard_complete(shard_id, task_id, outcome)
    return "done"


@shared_task(name=REQUEUE_JOBS_TASK)
def requeue_jobs() -> dict:
    """Queue again the jobs whose worker died and send those that waited for the broker
    (leaderboard/submissions/queue.py). Scheduled by celery beat every SHELFMARK_REQUEUE_INTERVAL_S
    (leaderboard/celery.py); each worker's `QueueWatch` runs the same, and so does
    `manage.py requeue_pending`."""
    from leaderboard.submissions.reaper import requeue_jobs as requeue

    return requeue()


def _queues(worker) -> list[str]:
    try:
        return sorted(worker.app.amqp.queues.consume_from)
    except Exception:   # before the consumer set them up
        return []


class QueueWatch(bootsteps.StartStopStep):
    """In the worker's main process (which never runs a task under the prefork pool, so it is free
    even when every pool process is busy): report this worker every SHELFMARK_HEARTBEAT_INTERVAL_S
    for the status page, and run the requeue every SHELFMARK_REQUEUE_INTERVAL_S."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.timer_ref = None
        self.started_at = None
        self.last_requeue = 0.0

    def start(self, worker):
        from django.conf import settings
        from django.utils import timezone

        self.started_at = timezone.now()
        self.tick(worker)   # listed at once, not one interval later
        self.timer_ref = worker.timer.call_repeatedly(float(settings.SHELFMARK_HEARTBEAT_INTERVAL_S), self.tick,
                                                      (worker,), priority=10)

    def stop(self, worker):
        from leaderboard.submissions.queue import worker_gone

        if self.timer_ref is not None:
            self.timer_ref.cancel()
        try:
            worker_gone(worker.hostname)
        except Exception:
            log.exception("could not remove worker %s from the list", worker.hostname)

    def tick(self, worker):
        from django.conf import settings

        from leaderboard.submissions.reaper import requeue_jobs as requeue
        from leaderboard.submissions.queue import worker_seen

        try:
            queues = _queues(worker)
            gpu = settings.SHELFMARK_GPU_QUEUE in queues
            # a prefork parent must not touch CUDA (its children could not use it): the GPU worker runs solo
            worker_seen(worker.hostname, queues=queues, hardware=hardware_label("auto" if gpu else "cpu"), gpu=gpu,
                        pid=os.getpid(), started_at=self.started_at)
            if time.monotonic() - self.last_requeue >= settings.SHELFMARK_REQUEUE_INTERVAL_S:
                self.last_requeue = time.monotonic()
                outcome = requeue()
                if any(outcome.values()):
                    log.info("requeue: %s", outcome)
        except Exception:   # the database away for a moment: the next tick tries again
            log.exception("queue watch tick failed")


@worker_ready.connect
def requeue_on_worker_start(sender=None, **kwargs) -> None:
    """A worker coming up: the jobs its previous process was running are queued again at once (no
    need to wait for their heartbeat to time out), and what waited for the broker is sent."""
    from leaderboard.submissions.queue import jobs_requeue_lost_on
    from leaderboard.submissions.reaper import requeue_jobs as requeue
    from leaderboard.submissions.shards import shards_requeue_lost_on

    try:
        lost = (jobs_requeue_lost_on(sender.hostname) + shards_requeue_lost_on(sender.hostname)
                if sender is not None else 0)
        outcome = requeue()
        if lost or any(outcome.values()):
            log.info("worker start: %d lost job(s) of this worker queued again; %s", lost, outcome)
    except Exception:  # never keep a worker from starting
        log.exception("requeue on worker start failed")
