"""Reads of the job queue: the workers online, what waits in each queue, each queued job's place and
an ETA from recent throughput (the status page, /api/status/, a submission's page), and a user's
fair-use allowance (the form shows it before anything is uploaded)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta
from statistics import median

from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone

from .models import EvaluationJob, ExtractionShard, Submission, Worker

RECENT_JOBS = 20          # finished jobs per benchmark the ETA learns their duration from
DEFAULT_DURATION_S = 120  # a benchmark nobody evaluated here yet


def online_workers() -> list[Worker]:
    """Workers that reported themselves within three heartbeat intervals (a killed one ages out)."""
    since = timezone.now() - timedelta(seconds=3 * settings.SHELFMARK_HEARTBEAT_INTERVAL_S)
    return list(Worker.objects.filter(seen_at__gte=since))


def typical_durations() -> dict[str, float]:
    """Median seconds from start to finish of the last RECENT_JOBS done jobs of each benchmark."""
    done = (EvaluationJob.objects.filter(status=EvaluationJob.Status.DONE, started_at__isnull=False,
                                         finished_at__isnull=False)
            .order_by("-finished_at").values_list("benchmark", "started_at", "finished_at")[:50 * RECENT_JOBS])
    seconds: dict[str, list[float]] = {}
    for benchmark, started, finished in done:
        runs = seconds.setdefault(benchmark, [])
        if len(runs) < RECENT_JOBS:
            runs.append(max((finished - started).total_seconds(), 0.0))
    return {benchmark: median(runs) for benchmark, runs in seconds.items()}


@dataclass
class QueuedJob:
    job: EvaluationJob
    position: int               # 1 = next to start on its queue
    eta_s: float | None         # seconds until it starts, from recent throughput; None with no worker
    waiting_for_broker: bool


@dataclass
class QueueState:
    name: str
    workers: list[Worker] = field(default_factory=list)
    running: list[EvaluationJob] = field(default_factory=list)
    queued: list[QueuedJob] = field(default_factory=list)

    @property
    def length(self) -> int:
        return len(self.queued)


def queue_states() -> dict[str, QueueState]:
    """Every queue jobs are sent to (the settings' two, and any a job names), in first-in first-out order.

    A job's ETA: the expected remaining time of the running jobs and the expected durations of the jobs
    ahead of it, spread over the queue's online workers (each runs one job at a time)."""
    workers = online_workers()
    names = [settings.SHELFMARK_CPU_QUEUE, settings.SHELFMARK_GPU_QUEUE]
    active = list(EvaluationJob.objects.filter(status__in=(EvaluationJob.Status.QUEUED, EvaluationJob.Status.RUNNING))
                  .select_related("submission").order_by("created_at", "pk"))
    names += [job.queue for job in active if job.queue not in names]
    states = {name: QueueState(name, workers=[w for w in workers if name in w.queues]) for name in names}
    durations = typical_durations()
    now = timezone.now()

    def expected(job: EvaluationJob) -> float:
        return durations.get(job.benchmark, DEFAULT_DURATION_S)

    running, queued_status = EvaluationJob.Status.RUNNING, EvaluationJob.Status.QUEUED
    for state in states.values():
        state.running = [job for job in active if job.queue == state.name and job.status == running]
        ahead = sum(max(expected(job) - (now - (job.started_at or now)).total_seconds(), 0.0) for job in state.running)
        queued = [job for job in active if job.queue == state.name and job.status == queued_status]
        for position, job in enumerate(queued, start=1):
            slots = len(state.workers)
            eta = ahead / slots if slots else None
            state.queued.append(QueuedJob(job, position, eta, job.sent_at is None))
            ahead += expected(job)
    return states


def job_places(jobs) -> dict[int, QueuedJob]:
    """The place in its queue of each of `jobs` that is queued (a submission's page shows it)."""
    wanted = {job.pk for job in jobs if job.status == EvaluationJob.Status.QUEUED}
    if not wanted:
        return {}
    return {entry.job.pk: entry for state in queue_states().values() for entry in state.queued
            if entry.job.pk in wanted}


def describe_eta(seconds: float | None) -> str:
    """"about 4 min" in words; "" when there is no worker to run it."""
    if seconds is None:
        return ""
    if seconds < 60:
        return "under a minute"
    minutes = math.ceil(seconds / 60)
    if minutes < 90:
        return f"about {minutes} min"
    return f"about {minutes / 60:.1f} h"


# ---- fair use -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Allowance:
    """What a user may still submit: submissions in the last 24 hours and jobs queued or running at once."""

    submissions_today: int
    per_day: int          # 0 = no limit
    active_jobs: int
    at_once: int          # 0 = no limit
    exempt: bool          # staff

    @property
    def submissions_left(self) -> int | None:
        return None if self.exempt or not self.per_day else max(self.per_day - self.submissions_today, 0)

    def refusal(self, new_jobs: int = 1, *, new_submission: bool = True) -> str:
        """Why a submission of `new_jobs` jobs (or, not `new_submission`, jobs added to one) is refused
        now, or ""."""
        if self.exempt:
            return ""
        if new_submission and self.per_day and self.submissions_today >= self.per_day:
            return (f"You have made {self.submissions_today} submissions in the last 24 hours, the limit of this "
                    f"installation ({self.per_day}); try again later.")
        if self.at_once and self.active_jobs + new_jobs > self.at_once:
            return (f"You have {self.active_jobs} jobs queued or running and this submission would add {new_jobs}; "
                    f"at most {self.at_once} may wait at once. Try again when some have finished.")
        return ""


def allowance(user) -> Allowance:
    exempt = bool(getattr(user, "is_staff", False))
    if not getattr(user, "is_authenticated", False):
        return Allowance(0, settings.SHELFMARK_SUBMISSIONS_PER_DAY, 0, settings.SHELFMARK_JOBS_AT_ONCE, exempt)
    since = timezone.now() - timedelta(hours=24)
    counts = Submission.objects.filter(owner=user).aggregate(
        today=Count("pk", filter=Q(created_at__gte=since), distinct=True),
        active=Count("jobs", filter=Q(jobs__status__in=(EvaluationJob.Status.QUEUED, EvaluationJob.Status.RUNNING))))
    return Allowance(counts["today"], settings.SHELFMARK_SUBMISSIONS_PER_DAY, counts["active"],
                     settings.SHELFMARK_JOBS_AT_ONCE, exempt)


def recent_duplicate(owner, fingerprint: dict, protocols: dict[str, list[str]]):
    """The owner's submission of the same model, file and options with the same protocols on the same
    benchmarks (`protocols`: benchmark -> its protocols) made within SHELFMARK_DUPLICATE_WINDOW_S (a form
    sent twice), or None. One whose jobs all failed or were cancelled is no duplicate: sending it again
    is how its owner tries again."""
    since = timezone.now() - timedelta(seconds=settings.SHELFMARK_DUPLICATE_WINDOW_S)
    candidates = Submission.objects.filter(owner=owner, created_at__gte=since, **fingerprint).prefetch_related(
        "jobs").order_by("-created_at")
    wanted = {benchmark: sorted(names) for benchmark, names in protocols.items()}
    given_up = {EvaluationJob.Status.FAILED, EvaluationJob.Status.CANCELLED}
    for submission in candidates:
        jobs = sorted(submission.jobs.all(), key=lambda job: job.pk)
        if not jobs or all(job.status in given_up for job in jobs):
            continue
        first = {}
        for job in jobs:   # its first job per benchmark: later ones are re-runs and added protocols
            first.setdefault(job.benchmark, sorted(job.protocols))
        if first == wanted:
            return submission
    return None


# ---- the status page and /api/status/ -----------------------------------------------------------

def _job_line(job: EvaluationJob, user) -> dict:
    """A job as the status page lists it: its model's name only to those who may see the submission."""
    visible = job.submission.is_visible_to(user)
    return {"job": job.pk, "benchmark": job.benchmark,
            "submission": job.submission_id if visible else None,
            "model": job.submission.model_name if visible else "a private submission",
            "mine": bool(user.is_authenticated and job.submission.owner_id == user.pk)}


def status_summary(user) -> dict:
    """Workers online, each queue's running and waiting jobs with their places and ETAs."""
    states = queue_states()
    now = timezone.now()
    sharded = set(ExtractionShard.objects.pending().values_list("job_id", flat=True))
    current = {job.worker: dict(_job_line(job, user), stage=job.stage, done=job.done, total=job.total)
               for state in states.values() for job in state.running if job.pk not in sharded}
    shards = ExtractionShard.objects.filter(status=ExtractionShard.Status.RUNNING,
                                            job__status=EvaluationJob.Status.RUNNING).select_related("job__submission")
    for shard in shards.annotate(count=Count("job__shards")):   # a worker on one shard of a large job
        current[shard.worker] = dict(_job_line(shard.job, user), stage=f"extracting shard {shard.index + 1} of "
                                     f"{shard.count}", done=shard.done, total=shard.images)
    workers = [{"name": w.name, "queues": w.queues, "hardware": w.hardware, "gpu": w.gpu,
                "seen_seconds_ago": round((now - w.seen_at).total_seconds(), 1),
                "current_job": current.get(w.name)}
               for w in online_workers()]
    queues = []
    for state in states.values():
        if not (state.workers or state.running or state.queued):
            continue
        queues.append({
            "name": state.name, "workers": len(state.workers), "running": len(state.running),
            "queued": state.length, "waiting_for_broker": sum(entry.waiting_for_broker for entry in state.queued),
            "jobs": [dict(_job_line(entry.job, user), position=entry.position, eta_seconds=entry.eta_s,
                          eta=describe_eta(entry.eta_s), waiting_for_broker=entry.waiting_for_broker)
                     for entry in state.queued],
        })
    return {"generated_at": now.isoformat(), "workers": workers, "queues": queues,
            "heartbeat_timeout_seconds": settings.SHELFMARK_HEARTBEAT_TIMEOUT_S}
