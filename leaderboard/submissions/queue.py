"""The job queue's guarantees: every job reaches a worker, and no job stays "running" for a worker that died.

- A job is written (queued) before its message is sent; `job_send` tries the broker once, fast, and
  a job the broker did not take keeps `sent_at` empty.
- A running attempt writes `heartbeat_at` every SHELFMARK_HEARTBEAT_INTERVAL_S (`JobHeartbeat`, a
  thread of the process that runs the task: it stops when that process dies).
- `reaper.requeue_jobs` sends what waited for the broker, and queues again (a new `task_id`, one more
  attempt) every running job whose heartbeat is older than SHELFMARK_HEARTBEAT_TIMEOUT_S; after
  SHELFMARK_JOB_MAX_ATTEMPTS attempts the job fails with a message saying so. It runs on celery
  beat's schedule (leaderboard/celery.py) and on each worker's own timer (workers/tasks.py:
  `QueueWatch`, in the worker's main process, so a busy pool never delays it), and when a worker starts.
- A message of a lost attempt that the broker delivers later names an old `task_id`: `services.job_begin`
  drops it, so a job is never run twice at once, and finishes exactly once.
- A queued job whose message the broker no longer holds (Redis restarted without saving) is sent again
  under a new task id (`jobs_resend_lost_messages`, Redis brokers).
- Workers report themselves (`worker_seen`): the status page lists those seen lately.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError

from leaderboard import engine
from leaderboard.celery import app as celery_app

from .joblog import append
from .models import EvaluationJob, ExtractionShard, Worker

log = logging.getLogger(__name__)

WAITING_FOR_BROKER = "waiting for the broker"


# ---- sending ------------------------------------------------------------------------------------

@contextlib.contextmanager
def broker_connection():
    """A fresh connection to the broker configured now, tried once: a dead broker fails within
    CELERY_BROKER_CONNECTION_TIMEOUT instead of holding up the caller with retries."""
    with celery_app.connection_for_write() as broker:
        broker.ensure_connection(max_retries=0, timeout=settings.CELERY_BROKER_CONNECTION_TIMEOUT)
        yield broker


def job_send(job_id: int) -> bool:
    """Send a queued job's message; True if the broker took it. A broker outage is logged, not raised,
    and costs the caller at most the broker's connect timeout (CELERY_BROKER_CONNECTION_TIMEOUT).

    The job is claimed first (`sent_at` written where it was empty), so that of several senders at once
    (the web's commit hook, beat, every worker's timer) exactly one sends it; a failed send gives the
    claim back."""
    job = EvaluationJob.objects.filter(pk=job_id, status=EvaluationJob.Status.QUEUED, sent_at__isnull=True).first()
    if job is None:
        return False
    mine = EvaluationJob.objects.filter(pk=job.pk, task_id=job.task_id, status=EvaluationJob.Status.QUEUED,
                                        sent_at__isnull=True)
    if not mine.update(sent_at=timezone.now()):
        return False   # another sender claimed it
    try:
        with broker_connection() as broker:
            celery_app.send_task(engine.EVALUATE_JOB_TASK, args=[job.pk], queue=job.queue, task_id=job.task_id,
                                 retry=False, connection=broker, ignore_result=True)
    except (BrokerError, RedisError, OSError, RuntimeError) as exc:
        log.warning("job %s stays queued, the broker is unreachable: %s", job.pk, exc)
        EvaluationJob.objects.filter(pk=job.pk, task_id=job.task_id, status=EvaluationJob.Status.QUEUED).update(
            sent_at=None, message=WAITING_FOR_BROKER)
        return False
    EvaluationJob.objects.filter(pk=job.pk, task_id=job.task_id).update(message="")
    return True


def jobs_requeue_pending() -> tuple[int, int]:
    """Send every queued job the broker never took. Returns (sent, still waiting)."""
    pending = EvaluationJob.objects.filter(status=EvaluationJob.Status.QUEUED, sent_at__isnull=True)
    sent = 0
    for job_id in list(pending.order_by("pk").values_list("pk", flat=True)):
        if not job_send(job_id):
            break   # the broker is down: the others would wait just the same
        sent += 1
    return sent, pending.count()


# ---- heartbeats ---------------------------------------------------------------------------------

class JobHeartbeat:
    """Write the job's `heartbeat_at` every `interval` seconds from a thread, while the block runs.

    Only the attempt that owns the job (its `task_id`, status running) is touched, so a stale attempt
    can never keep a job alive that was queued again. The thread closes its database connection."""

    model = EvaluationJob   # ShardHeartbeat: the same for an extraction shard

    def __init__(self, job_id: int, task_id: str, interval: float | None = None, worker: str = ""):
        self.job_id, self.task_id, self.worker = job_id, task_id, worker
        self.interval = float(interval if interval is not None else settings.SHELFMARK_HEARTBEAT_INTERVAL_S)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-job-{job_id}", daemon=True)

    def beat(self) -> bool:
        """One heartbeat; it also keeps the worker listed as online (a solo-pool worker runs the job on
        the loop that would report it, see workers/tasks.py: QueueWatch)."""
        now = timezone.now()
        alive = bool(self.model.objects.filter(pk=self.job_id, task_id=self.task_id,
                                               status=self.model.Status.RUNNING).update(heartbeat_at=now))
        if alive and self.worker:
            Worker.objects.filter(name=self.worker).update(seen_at=now)
        return alive

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                try:
                    self.beat()
                except Exception as exc:   # the database away for a moment: the next beat tries again
                    log.warning("heartbeat of job %s not written: %s", self.job_id, exc)
        finally:
            connection.close()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)
        return False


class ShardHeartbeat(JobHeartbeat):
    """A running extraction shard's heartbeat (shards.py), written as a job's is."""

    model = ExtractionShard


# ---- requeueing lost jobs -----------------------------------------------------------------------

def silent(model, cutoff) -> Q:
    """Running rows of `model` (jobs, extraction shards) whose attempt has not beaten its heartbeat since
    `cutoff` (or, never having beaten it, started before)."""
    return Q(status=model.Status.RUNNING) & (
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff))


def _stale(cutoff) -> Q:
    """Running jobs whose heartbeat stopped; a job waiting for its extraction shards has none of its own
    (its shards are watched one by one: shards.py)."""
    waiting_for_shards = Exists(ExtractionShard.objects.pending().filter(job=OuterRef("pk")))
    return silent(EvaluationJob, cutoff) & ~Q(waiting_for_shards)


def job_requeue_lost(job_id: int, *, cutoff, reason: str) -> str:
    """Queue a running job again whose worker is gone (its heartbeat is older than `cutoff`), or fail it
    after SHELFMARK_JOB_MAX_ATTEMPTS attempts. Returns "requeued", "failed" or "" (it was not lost)."""
    with transaction.atomic():
        job = EvaluationJob.objects.select_for_update().filter(_stale(cutoff), pk=job_id).first()
        if job is None:
            return ""
        if job.attempts >= settings.SHELFMARK_JOB_MAX_ATTEMPTS:
            job.status = EvaluationJob.Status.FAILED
            job.finished_at = timezone.now()
            job.error = (f"The worker running this job stopped {job.attempts} times ({reason}), so it was not "
                         "tried again. This happens when the worker runs out of memory or its machine goes away; "
                         "staff can re-run it.")
            job.log = append(job.log, f"failed: {reason}, attempt {job.attempts} of "
                                      f"{settings.SHELFMARK_JOB_MAX_ATTEMPTS}")
            job.save()
            return "failed"
        job.status = EvaluationJob.Status.QUEUED
        job.task_id = str(uuid.uuid4())    # a late message of the lost attempt is recognised and dropped
        job.sent_at = None
        job.stage, job.message = "", f"{reason}: queued again"
        job.log = append(job.log, f"{reason}: queued again (attempt {job.attempts + 1} of "
                                  f"{settings.SHELFMARK_JOB_MAX_ATTEMPTS} next)")
        job.save()
        transaction.on_commit(lambda: job_send(job_id))
    return "requeued"


def jobs_requeue_stale(*, now=None) -> tuple[int, int]:
    """Running jobs whose heartbeat stopped more than SHELFMARK_HEARTBEAT_TIMEOUT_S ago: (requeued, failed)."""
    timeout = settings.SHELFMARK_HEARTBEAT_TIMEOUT_S
    cutoff = (now or timezone.now()) - timedelta(seconds=timeout)
    outcomes = [job_requeue_lost(job_id, cutoff=cutoff, reason=f"no sign of life from its worker for {timeout} s")
                for job_id in EvaluationJob.objects.filter(_stale(cutoff)).values_list("pk", flat=True)]
    return outcomes.count("requeued"), outcomes.count("failed")


def jobs_requeue_lost_on(worker_name: str) -> int:
    """A worker that starts again under its name (on the same machine): the jobs its previous process was
    running are lost, queued again at once instead of after the heartbeat timeout."""
    running = EvaluationJob.objects.filter(status=EvaluationJob.Status.RUNNING)
    return requeue_lost_on(worker_name, running,
                           lambda pk, reason, cutoff: job_requeue_lost(pk, cutoff=cutoff, reason=reason))


def requeue_lost_on(worker_name: str, running, requeue) -> int:
    """Of the `running` rows (jobs or extraction shards) of worker `worker_name`, those whose attempt is lost
    queued again by `requeue(pk, reason, cutoff)`. Lost: the process that ran the attempt is gone (its pid,
    recorded when it began), or nothing has beaten its heartbeat for two intervals (a row without a pid)."""
    now = timezone.now()
    cutoff = now - timedelta(seconds=2 * settings.SHELFMARK_HEARTBEAT_INTERVAL_S)
    requeued = 0
    for pk, pid in running.filter(worker=worker_name).values_list("pk", "worker_pid"):
        gone = pid is not None and not process_alive(pid)
        requeued += requeue(pk, "its worker restarted", now if gone else cutoff) == "requeued"
    return requeued


def attempt_gone(job, worker: str, pid: int | None) -> bool:
    """Whether the running attempt of `job` (or of an extraction shard) is gone: its process was on this
    worker and has died, or its heartbeat stopped two intervals ago (another machine's process)."""
    if job.worker == worker and job.worker_pid and job.worker_pid != pid and not process_alive(job.worker_pid):
        return True
    stale = timezone.now() - timedelta(seconds=2 * settings.SHELFMARK_HEARTBEAT_INTERVAL_S)
    beat = job.heartbeat_at or job.started_at
    return beat is None or beat < stale


def process_alive(pid: int) -> bool:
    """Whether a process of this machine runs under `pid`."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # another user's process: alive
        return True
    return True


# ---- messages the broker lost --------------------------------------------------------------------

MESSAGES_READ_AT_MOST = 50_000   # per queue: a site with more waiting jobs skips the check


def broker_task_ids(queues) -> set[str] | None:
    """The task ids of every message the Redis broker holds for `queues`: waiting in a queue's lists (one
    per priority step) or delivered and not yet acknowledged (kombu's `unacked` hash, which also holds
    what workers prefetched). None when the broker is not Redis, is unreachable, or holds too many."""
    try:
        with broker_connection() as broker:
            channel = broker.default_channel
            client = getattr(channel, "client", None)
            if client is None or not hasattr(channel, "_q_for_pri"):
                return None
            raws = []
            for name in queues:
                for key in dict.fromkeys(channel._q_for_pri(name, step) for step in channel.priority_steps):
                    if client.llen(key) > MESSAGES_READ_AT_MOST:
                        return None
                    raws += [json.loads(raw) for raw in client.lrange(key, 0, -1)]
            raws += [json.loads(raw)[0] for raw in client.hvals(channel.unacked_key)]
    except (BrokerError, RedisError, OSError, RuntimeError, ValueError, LookupError, TypeError):
        return None
    return {str((raw.get("headers") or {}).get("id") or (raw.get("properties") or {}).get("correlation_id"))
            for raw in raws if isinstance(raw, dict)}


def jobs_resend_lost_messages() -> int:
    """Queued jobs the broker took but no longer holds (Redis restarted without saving, or was flushed):
    sent again under a new task id, so that the old message, should it turn up, is dropped by
    `services.job_begin`. A job only just sent may be on its way to a worker: it counts after a grace."""
    cutoff = timezone.now() - timedelta(seconds=settings.SHELFMARK_HEARTBEAT_INTERVAL_S)
    sent = EvaluationJob.objects.filter(status=EvaluationJob.Status.QUEUED, sent_at__lt=cutoff)
    candidates = list(sent.values_list("pk", "task_id", "queue"))
    if not candidates:
        return 0
    held = broker_task_ids(sorted({queue for _, _, queue in candidates}))
    if held is None:
        return 0
    resent = 0
    for job_id, task_id, _ in candidates:
        if task_id in held:
            continue
        with transaction.atomic():
            job = (EvaluationJob.objects.select_for_update()
                   .filter(pk=job_id, task_id=task_id, status=EvaluationJob.Status.QUEUED).first())
            if job is None:
                continue
            job.task_id, job.sent_at = str(uuid.uuid4()), None
            job.log = append(job.log, "the broker no longer holds its message (it restarted without saving?): "
                                      "sent again")
            job.save(update_fields=["task_id", "sent_at", "log"])
            transaction.on_commit(lambda job_id=job_id: job_send(job_id))
        resent += 1
    return resent


# ---- workers ------------------------------------------------------------------------------------

def worker_seen(name: str, *, queues: list[str], hardware: str, gpu: bool, pid: int, started_at) -> None:
    """A worker's report of itself (from its main process, every heartbeat interval)."""
    close_old_connections()
    Worker.objects.update_or_create(name=name, defaults={
        "queues": list(queues), "hardware": hardware[:200], "gpu": gpu, "pid": pid, "started_at": started_at,
        "seen_at": timezone.now()})


def worker_gone(name: str) -> None:
    """A worker shutting down cleanly leaves the list at once (a killed one ages out of it)."""
    Worker.objects.filter(name=name).delete()
