"""A large job's extraction in shards (workers/shards.py): planned by the job's task, sent as a Celery group
to every worker of the job's queue, each shard begun, beaten and finished like a job; the last shard in
sends the job's scoring step, which reads every shard's features from the shared feature cache.

That is a chord whose count lives in the database rather than in Celery's: Celery's chord needs a result
backend (the site runs without one, so a broker outage never stalls the form) and never fires when one
of its header tasks is lost. Here each shard has the job queue's guarantees (queue.py): a heartbeat, a
reaper that sends a shard whose worker died again, alone (the shards already in stay in), an attempts
limit; and the callback is an ordinary job message, sent exactly once under the job's row lock.

While its shards run, a job is "running" at stage "extracting" with no process of its own: the reaper
leaves it alone as long as it has shards to wait for (queue.py `_stale`), its progress is the sum of its
shards'. A failed shard fails the job; the others stop at their next progress report.
"""
from __future__ import annotations

import contextlib
import logging
import time
import uuid
from datetime import timedelta

from celery import group
from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q, Sum
from django.db.models.functions import Greatest
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError

from leaderboard import engine
from leaderboard.celery import app as celery_app

from .joblog import append
from .models import EvaluationJob, ExtractionShard
from .queue import attempt_gone, broker_connection, broker_task_ids, job_send, requeue_lost_on, silent

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 1.0


def _locked(job_id: int) -> EvaluationJob | None:
    """The job row, locked: every change to a job's shards takes the job's lock first (one order, no deadlock)."""
    return EvaluationJob.objects.select_for_update().filter(pk=job_id).first()


@contextlib.contextmanager
def _locked_shard(shard_id: int, condition: Q | None = None):
    """(job, shard) inside a transaction, both rows locked, the job's first; (None, None) when the shard is
    gone (or does not meet `condition`)."""
    job_id = ExtractionShard.objects.filter(pk=shard_id).values_list("job_id", flat=True).first()
    with transaction.atomic():
        job = _locked(job_id) if job_id is not None else None
        shard = (ExtractionShard.objects.select_for_update().filter(condition or Q(), pk=shard_id).first()
                 if job is not None else None)
        yield (job, shard) if shard is not None else (None, None)


def _shard_key(split: str, start: int, stop: int, jitter) -> tuple:
    return split, int(start), int(stop), jitter or ""


# ---- planning and sending -------------------------------------------------------------------------

def job_shards_start(job_id: int, task_id: str) -> bool:
    """Called by a job's task once it began. True: the job's extraction now runs as shards (the task ends
    here; the last shard sends the job again). False: the task goes on and runs it all itself (a small
    benchmark, or every shard is in already, the chord's callback)."""
    job = EvaluationJob.objects.select_related("submission").get(pk=job_id)
    if job.shards.exists():
        # planned before (the job's scoring step, or a planner that died after planning): the plan stands,
        # whatever this worker's own shard size; its scoring reads those shards (engine.job_spec)
        wanted = [_shard_key(s.split, s.start, s.stop, s.jitter) for s in job.shards.order_by("index")]
    else:
        wanted = [_shard_key(**shard) for shard in engine.job_shard_plan(job)]
    if len(wanted) <= 1:
        return False
    with transaction.atomic():
        job = _locked(job_id)
        if job is None or job.status != EvaluationJob.Status.RUNNING or job.task_id != task_id:
            return True   # cancelled or queued again meanwhile: this attempt stops
        if not job.shards.exists():
            ExtractionShard.objects.bulk_create([
                ExtractionShard(job=job, index=i, split=split, start=start, stop=stop, jitter=jitter,
                                task_id=str(uuid.uuid4()))
                for i, (split, start, stop, jitter) in enumerate(wanted)])
        if not job.shards.pending().exists():
            return False
        images = sum(stop - start for _, start, stop, _ in wanted)
        job.stage, job.total = "extracting", images
        job.done = job.shards.filter(status=ExtractionShard.Status.DONE).aggregate(n=Sum("done"))["n"] or 0
        job.message = f"{len(wanted)} shards of up to {settings.SHELFMARK_SHARD_SIZE} images"
        job.worker_pid, job.heartbeat_at = None, timezone.now()   # no process holds the job while its shards run
        job.log = append(job.log, f"extraction of {images} images in {len(wanted)} shards, on every worker of "
                                  f"the '{job.queue}' queue")
        job.save()
        transaction.on_commit(lambda: shards_send(job_id))
    return True


def shards_send(job_id: int) -> int:
    """Send the job's queued shards that the broker has not taken, as one Celery group; how many were sent.

    Each shard is claimed first (`sent_at` written where it was empty) so that of several senders at once
    exactly one sends it; a failed send gives the claims back, and the reaper's schedule tries again."""
    job = EvaluationJob.objects.filter(pk=job_id, status=EvaluationJob.Status.RUNNING).first()
    if job is None:
        return 0
    claimed = []
    for shard_id, shard_task in job.shards.filter(status=ExtractionShard.Status.QUEUED, sent_at__isnull=True) \
                                          .values_list("pk", "task_id"):
        if ExtractionShard.objects.filter(pk=shard_id, task_id=shard_task, sent_at__isnull=True).update(
                sent_at=timezone.now()):
            claimed.append((shard_id, shard_task))
    if not claimed:
        return 0
    signatures = [celery_app.signature(engine.EXTRACT_SHARD_TASK, args=[shard_id], queue=job.queue,
                                       task_id=shard_task, ignore_result=True) for shard_id, shard_task in claimed]
    try:
        with broker_connection() as broker:
            group(signatures).apply_async(connection=broker, retry=False)
    except (BrokerError, RedisError, OSError, RuntimeError) as exc:
        log.warning("job %s: %d shards stay queued, the broker is unreachable: %s", job_id, len(claimed), exc)
        for shard_id, shard_task in claimed:
            ExtractionShard.objects.filter(pk=shard_id, task_id=shard_task).update(sent_at=None)
        return 0
    return len(claimed)


# ---- the worker's side ----------------------------------------------------------------------------

def shard_begin(shard_id: int, *, task_id: str, worker: str = "", pid: int | None = None) -> ExtractionShard | None:
    """Mark a shard running for this attempt; None when the message must be dropped (the job finished or was
    queued again, the shard is done or was sent again under another task id, or another live process runs
    it). The attempt past SHELFMARK_JOB_MAX_ATTEMPTS fails the shard, and with it the job."""
    with _locked_shard(shard_id) as (job, shard):
        if shard is None or job.status != EvaluationJob.Status.RUNNING or shard.status not in ExtractionShard.PENDING:
            return None
        if task_id and shard.task_id != task_id:
            return None
        if shard.status == ExtractionShard.Status.RUNNING and not attempt_gone(shard, worker, pid):
            return None
        if shard.attempts >= settings.SHELFMARK_JOB_MAX_ATTEMPTS:
            _fail(job, shard, f"its worker stopped {shard.attempts} times (out of memory, or its machine went "
                              "away), so it was not tried again; staff can re-run the job")
            return None
        shard.attempts += 1
        shard.status = ExtractionShard.Status.RUNNING
        shard.started_at = shard.started_at or timezone.now()
        shard.sent_at = shard.sent_at or timezone.now()
        shard.heartbeat_at = timezone.now()
        shard.worker, shard.worker_pid, shard.done, shard.images_per_second = worker, pid, 0, 0.0
        shard.save()
        if shard.attempts > 1:
            job.log = append(job.log, f"shard {shard.index + 1} started again on {worker or 'a worker'} "
                                      f"(attempt {shard.attempts} of {settings.SHELFMARK_JOB_MAX_ATTEMPTS})")
            job.save(update_fields=["log", "updated_at"])
    return shard


class ShardProgress:
    """The engine's progress callback for a shard: the shard's count, and the job's as the sum of its shards'
    (~1 write a second). Raises JobCancelled when the job stopped or the shard was sent again."""

    def __init__(self, shard_id: int, task_id: str, interval: float = PROGRESS_INTERVAL_S):
        self.shard_id, self.task_id, self.interval = shard_id, task_id, interval
        self._last = 0.0

    def __call__(self, progress) -> None:
        from .services import JobCancelled

        now = time.monotonic()
        if now - self._last < self.interval:
            return
        self._last = now
        shard = self._check(JobCancelled)   # every stage: a stopped job stops its shards while they load too
        if progress.stage == "extracting":
            ExtractionShard.objects.filter(pk=self.shard_id, task_id=self.task_id).update(
                done=min(progress.done, shard.images), images_per_second=progress.images_per_second,
                heartbeat_at=timezone.now())
            job_progress_update(shard.job_id)

    def _check(self, cancelled) -> ExtractionShard:
        shard = ExtractionShard.objects.select_related("job").filter(pk=self.shard_id).first()
        if shard is None or shard.job.status != EvaluationJob.Status.RUNNING:
            raise cancelled(f"shard {self.shard_id}: its job is no longer running")
        if shard.task_id != self.task_id or shard.status != ExtractionShard.Status.RUNNING:
            raise cancelled(f"shard {self.shard_id} was sent again: this attempt stops")
        return shard


def job_progress_update(job_id: int) -> None:
    """A sharded job's progress, from its shards': images done, the running shards' summed rate."""
    shards = ExtractionShard.objects.filter(job_id=job_id).aggregate(
        done=Sum("done"), total=Count("pk"), finished=Count("pk", filter=Q(status=ExtractionShard.Status.DONE)),
        running=Count("pk", filter=Q(status=ExtractionShard.Status.RUNNING)),
        rate=Sum("images_per_second", filter=Q(status=ExtractionShard.Status.RUNNING)))
    EvaluationJob.objects.filter(pk=job_id, status=EvaluationJob.Status.RUNNING, stage="extracting").update(
        done=shards["done"] or 0, images_per_second=round(shards["rate"] or 0.0, 2), updated_at=timezone.now(),
        message=f"shards: {shards['finished']} of {shards['total']} done, {shards['running']} running")


def shard_complete(shard_id: int, task_id: str, outcome: dict) -> bool:
    """Record a finished shard; the last one in sends the job's scoring step (the chord's callback), once.
    False when this attempt no longer owns the shard (it was sent again, or the job stopped)."""
    with _locked_shard(shard_id) as (job, shard):
        if shard is None or shard.task_id != task_id or shard.status != ExtractionShard.Status.RUNNING:
            return False
        shard.status, shard.finished_at = ExtractionShard.Status.DONE, timezone.now()
        shard.done, shard.seconds = shard.images, float(outcome.get("seconds", 0.0))
        shard.images_per_second = float(outcome.get("images_per_second", 0.0))
        shard.save()
        if job.status != EvaluationJob.Status.RUNNING:
            return True
        if job.shards.pending().exists():
            job_progress_update(job.pk)
            return True
        _send_scoring_step(job)
    return True


def _send_scoring_step(job: EvaluationJob) -> None:
    """All shards in (the job's row is locked): queue the job again, its scoring step reads them from the cache."""
    shards = job.shards.aggregate(images=Sum("done"), seconds=Sum("seconds"), workers=Count("worker", distinct=True),
                                  count=Count("pk"))
    job.status = EvaluationJob.Status.QUEUED
    job.task_id, job.sent_at = str(uuid.uuid4()), None
    job.attempts = max(job.attempts - 1, 0)   # the planning attempt finished its part: not a failed attempt
    job.stage, job.done, job.total = "", shards["images"] or 0, shards["images"] or 0
    job.message = f"all {shards['count']} shards extracted: scoring next"
    job.log = append(job.log, f"{shards['count']} shards extracted ({shards['images']} images, "
                              f"{shards['seconds']:.1f} s of extraction on {shards['workers']} worker(s)): "
                              "queued for scoring")
    job.save()
    job_id = job.pk
    transaction.on_commit(lambda: job_send(job_id))


def shard_fail(shard_id: int, task_id: str, message: str, details: str = "") -> None:
    """A shard that cannot be extracted (the model or an image is broken): the job fails, saying which."""
    with _locked_shard(shard_id) as (job, shard):
        if shard is not None and shard.task_id == task_id and shard.status == ExtractionShard.Status.RUNNING:
            _fail(job, shard, message, details)


def _fail(job: EvaluationJob, shard: ExtractionShard, message: str, details: str = "") -> None:
    from .services import job_fail

    shard.status, shard.finished_at = ExtractionShard.Status.FAILED, timezone.now()
    shard.save()
    count = job.shards.count()
    job_fail(job.pk, f"Extraction shard {shard.index + 1} of {count} ({shard.split}, images {shard.start + 1}-"
                     f"{shard.stop}) failed: {message}", details)


def shard_release(shard_id: int, task_id: str, line: str) -> bool:
    """Before our own retry of a shard (a transient error): queued again under the same task id, which the
    retry re-sends, and the attempt given back. False when the attempt no longer owns the shard."""
    with transaction.atomic():
        updated = ExtractionShard.objects.filter(pk=shard_id, task_id=task_id,
                                                 status=ExtractionShard.Status.RUNNING).update(
            status=ExtractionShard.Status.QUEUED, attempts=Greatest(F("attempts") - 1, 0))
    if updated:
        log.info("shard %s: %s", shard_id, line)
    return bool(updated)


# ---- the reaper ----------------------------------------------------------------------------------

def _requeue(shard_id: int, reason: str, *, cutoff) -> str:
    """Send a running shard again whose worker is gone (heartbeat older than `cutoff`), alone; after the
    last attempt its job fails. Returns "requeued", "failed" or ""."""
    with _locked_shard(shard_id, silent(ExtractionShard, cutoff)) as (job, shard):
        if shard is None or job.status != EvaluationJob.Status.RUNNING:
            return ""
        if shard.attempts >= settings.SHELFMARK_JOB_MAX_ATTEMPTS:
            _fail(job, shard, f"its worker stopped {shard.attempts} times ({reason}), so it was not tried again; "
                              "staff can re-run the job")
            return "failed"
        shard.status, shard.task_id, shard.sent_at = ExtractionShard.Status.QUEUED, str(uuid.uuid4()), None
        shard.done, shard.images_per_second = 0, 0.0
        shard.save()
        job.log = append(job.log, f"shard {shard.index + 1} ({reason}): sent again, alone")
        job.save(update_fields=["log", "updated_at"])
        job_id = job.pk
        transaction.on_commit(lambda: shards_send(job_id))
    return "requeued"


def shards_requeue_stale(*, now=None) -> tuple[int, int]:
    """Running shards whose heartbeat stopped SHELFMARK_HEARTBEAT_TIMEOUT_S ago: (sent again, failed)."""
    timeout = settings.SHELFMARK_HEARTBEAT_TIMEOUT_S
    cutoff = (now or timezone.now()) - timedelta(seconds=timeout)
    outcomes = [_requeue(pk, f"no sign of life from its worker for {timeout} s", cutoff=cutoff)
                for pk in ExtractionShard.objects.filter(silent(ExtractionShard, cutoff)).values_list("pk", flat=True)]
    return outcomes.count("requeued"), outcomes.count("failed")


def shards_requeue_lost_on(worker_name: str) -> int:
    """A worker starting again under its name: its previous process's shards are sent again at once."""
    running = ExtractionShard.objects.filter(status=ExtractionShard.Status.RUNNING)
    return requeue_lost_on(worker_name, running, lambda pk, reason, cutoff: _requeue(pk, reason, cutoff=cutoff))


def shards_send_pending() -> int:
    """Send the queued shards the broker never took (it was down), and again those whose message it lost
    (Redis restarted without saving): every running job's."""
    cutoff = timezone.now() - timedelta(seconds=settings.SHELFMARK_HEARTBEAT_INTERVAL_S)
    waiting = ExtractionShard.objects.filter(status=ExtractionShard.Status.QUEUED,
                                             job__status=EvaluationJob.Status.RUNNING)
    sent_long_ago = list(waiting.filter(sent_at__lt=cutoff).values_list("pk", "task_id", "job__queue"))
    if sent_long_ago:
        held = broker_task_ids(sorted({queue for _, _, queue in sent_long_ago}))
        for pk, task_id, _ in sent_long_ago if held is not None else ():
            if task_id not in held:
                ExtractionShard.objects.filter(pk=pk, task_id=task_id, status=ExtractionShard.Status.QUEUED).update(
                    task_id=str(uuid.uuid4()), sent_at=None)
    sent = 0
    for job_id in set(waiting.filter(sent_at__isnull=True).values_list("job_id", flat=True)):
        sent += shards_send(job_id)
    return sent
