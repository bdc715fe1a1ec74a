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

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_ready

from workers.contract import EVALUATE_JOB_TASK, REQUEUE_PENDING_TASK
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

    transient = _transient_errors()
    try:
        job = services.job_begin(job_id, hardware=hardware_label())
    except transient as exc:
        raise self.retry(exc=exc, countdown=2 ** self.request.retries) from exc
    if job is None:
        return "already finished"
    started = time.monotonic()
    try:
        evaluation = run_evaluation(engine.job_spec(job), services.ProgressWriter(job_id))
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
            services.job_note(job_id, f"transient error, retrying: {exc}")
            raise self.retry(exc=exc, countdown=2 ** self.request.retries) from exc
        services.job_fail(job_id, f"The evaluation failed after {self.max_retries} retries: {exc}",
                          traceback.format_exc())
        return "failed"
    except Exception:
        log.exception("job %s: unexpected error", job_id)
        services.job_fail(job_id, INTERNAL_ERROR, traceback.format_exc())
        return "failed"
    services.job_complete(job_id, evaluation, duration_s=time.monotonic() - started)
    services.board_warm(job_id)
    return "done"


@shared_task(name=REQUEUE_PENDING_TASK)
def requeue_pending() -> tuple[int, int]:
    """Re-send jobs the broker never took. Scheduled by celery beat every SHELFMARK_REQUEUE_INTERVAL_S
    (leaderboard/celery.py; `./shelfmark up` runs beat inside its worker, docker-compose as a service);
    also run by `manage.py requeue_pending` and when a worker starts."""
    from leaderboard.submissions.services import jobs_requeue_pending

    return jobs_requeue_pending()


@worker_ready.connect
def requeue_on_worker_start(sender=None, **kwargs) -> None:
    """A worker coming up re-sends what waited for the broker while none was running."""
    from leaderboard.submissions.services import jobs_requeue_pending

    try:
        sent, waiting = jobs_requeue_pending()
        if sent or waiting:
            log.info("requeued %d pending job(s), %d still waiting", sent, waiting)
    except Exception:  # never keep a worker from starting
        log.exception("requeue on worker start failed")
