"""Reads of the submission flow: who sees which submission, and the live status of its jobs."""
from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from django.db.models import Q, QuerySet
from django.http import Http404
from django.template.defaultfilters import filesizeformat
from django.urls import reverse

from leaderboard import engine

from . import queue_selectors
from .models import EvaluationJob, JobResult, Submission

STAGE_LABELS = {
    "downloading": "downloading the model",
    "training": "training and scoring the protocols",
    "loading_model": "loading model",
    "extracting": "extracting features",
    "scoring": "scoring",
    "done": "done",
}
# Share of the progress bar each stage covers: extraction is most of the time.
SVM_SCHEMES = {"ovr": "one-vs-rest", "ovo": "one-vs-one"}
STAGE_SPAN = {"downloading": (0, 4), "loading_model": (4, 5), "extracting": (5, 85), "training": (85, 95),
              "scoring": (95, 100)}


def can_manage(user, submission: Submission) -> bool:
    return user.is_authenticated and (user.is_staff or user.pk == submission.owner_id)


def visible_submissions(user) -> QuerySet[Submission]:
    """Public submissions, plus the user's own (staff see all)."""
    submissions = Submission.objects.select_related("owner")
    if user.is_authenticated and user.is_staff:
        return submissions
    if user.is_authenticated:
        return submissions.filter(Q(is_public=True) | Q(owner=user))
    return submissions.filter(is_public=True)


def submission_for(user, pk: int) -> Submission:
    """The submission if `user` may see it; a private one is a 404 to everybody else."""
    try:
        return visible_submissions(user).get(pk=pk)
    except Submission.DoesNotExist:
        raise Http404("No such submission.") from None


def job_for(user, pk: int) -> EvaluationJob:
    job = EvaluationJob.objects.select_related("submission", "dataset__metric", "result").filter(pk=pk).first()
    if job is None or not job.submission.is_visible_to(user):
        raise Http404("No such job.")
    return job


def job_result_for(user, result_pk: int) -> JobResult:
    """One protocol's result of a job (by its registry Result's id), if `user` may see its submission."""
    job_result = JobResult.objects.select_related("job__submission", "job__dataset", "result").filter(
        result_id=result_pk).first()
    if job_result is None or not job_result.job.submission.is_visible_to(user):
        raise Http404("No such result.")
    return job_result


def visible_jobs_with_results(user) -> QuerySet[EvaluationJob]:
    """Evaluated results whose reproduction bundle `user` may download."""
    return EvaluationJob.objects.filter(
        result__isnull=False, submission__in=visible_submissions(user)
    ).select_related("submission", "dataset__metric", "result").order_by("-finished_at")


def job_percent(job: EvaluationJob) -> float:
    if job.status == EvaluationJob.Status.DONE:
        return 100.0
    start, end = STAGE_SPAN.get(job.stage, (0, 0))
    fraction = job.done / job.total if job.total else 0.0
    return round(start + (end - start) * min(fraction, 1.0), 1)


def job_counts(job: EvaluationJob) -> str:
    """"544/898" images, or "12.0 MB/45.5 MB" of a model being downloaded."""
    if not job.total or job.stage == "done":
        return ""
    if job.stage == "downloading":
        return f"{filesizeformat(job.done)}/{filesizeformat(job.total)}"
    return f"{job.done}/{job.total}"


def job_eta_seconds(job: EvaluationJob):
    if job.status != EvaluationJob.Status.RUNNING or job.stage != "extracting" or job.images_per_second <= 0:
        return None
    return round((job.total - job.done) / job.images_per_second, 1)


def job_protocol(job: EvaluationJob) -> str:
    """How the job scores its benchmark, in a few words ("linear SVMs, one-vs-one")."""
    kind = engine.benchmark_kind(job.benchmark)
    if kind == "classification":
        return f"linear SVMs, {SVM_SCHEMES.get(job.multiclass, job.multiclass)}"
    return "ranking by cosine similarity" if kind == "retrieval" else ""


def job_status_label(job: EvaluationJob) -> str:
    if job.waiting_for_broker:
        return "queued (waiting for broker)"
    return job.get_status_display()


def queue_place(job: EvaluationJob, place) -> dict | None:
    """A queued job's place in its queue, in numbers and in words ("2nd in the cpu queue, starts in
    about 4 min"); None for a job that is not waiting."""
    if place is None:
        return None
    eta = queue_selectors.describe_eta(place.eta_s)
    ordinal = _ordinal(place.position)
    label = f"{ordinal} in the '{job.queue}' queue"
    label += f", starts in {eta}" if eta else " (no worker is consuming this queue right now)"
    return {"queue": job.queue, "position": place.position, "eta_seconds": place.eta_s, "label": label,
            "status_url": reverse("queue-status")}


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def job_status(job: EvaluationJob, user, place=None) -> dict:
    """What the status page shows for one job (and its JSON endpoint returns); `place`: its
    `queue_selectors.QueuedJob` when it waits in a queue."""
    status = {
        "id": job.pk,
        "benchmark": job.benchmark,
        "dataset": job.dataset.name,
        "protocol": job_protocol(job),
        "status": job.status,
        "status_label": job_status_label(job),
        "waiting_for_broker": job.waiting_for_broker,
        "stage": job.stage,
        "stage_label": STAGE_LABELS.get(job.stage, job.stage.replace("_", " ")),
        "done": job.done,
        "total": job.total,
        "counts": job_counts(job),
        "percent": job_percent(job),
        "images_per_second": round(job.images_per_second, 1),
        "eta_seconds": job_eta_seconds(job),
        "message": job.message,
        "log_tail": job.log.splitlines()[-15:],
        "error": job.error,
        "hardware": job.hardware,
        "attempts": job.attempts,
        "queue_place": queue_place(job, place),
        "cancellable": not job.is_finished and can_manage(user, job.submission),
        "protocols": [{"name": name, "title": engine.protocol_title(name)} for name in job.protocols],
        "result": None,
        "results": [],
    }
    if can_manage(user, job.submission):
        status["error_details"] = job.error_details
    if job.result is not None:
        metric = job.dataset.metric
        status["result"] = {
            "score": job.result.score,
            "unit": metric.unit,
            "metric": metric.name or metric.code,
            "engine_score": job.evaluation.get("score"),
            "board_url": job.dataset.get_absolute_url() if _has_url("dataset-detail") else "",
            "bundle_url": reverse("job-bundle", args=[job.pk]),
        }
        status["results"] = [_protocol_result(job_result, metric) for job_result in job.job_results.all()]
    return status


def _protocol_result(job_result, metric) -> dict:
    result = job_result.result
    return {"protocol": job_result.protocol, "title": engine.protocol_title(job_result.protocol),
            "detail": result.protocol_detail, "score": result.score, "unit": metric.unit,
            "ci_low": result.ci_low, "ci_high": result.ci_high,
            "bundle_url": reverse("result-bundle", args=[result.pk])}


def submission_status(submission: Submission, user) -> dict:
    jobs = list(submission.jobs.select_related("dataset__metric", "result", "submission").prefetch_related(
        "job_results__result"))
    places = queue_selectors.job_places(jobs)
    return {
        "submission": submission.pk,
        "is_public": submission.is_public,
        "finished": all(job.is_finished for job in jobs),
        "jobs": [job_status(job, user, places.get(job.pk)) for job in jobs],
    }


def _has_url(name: str) -> bool:
    from django.urls import NoReverseMatch

    try:
        reverse(name, args=["x"])
        return True
    except NoReverseMatch:
        return False


@lru_cache(maxsize=1)
def model_names() -> dict:
    """The names the form's model fields suggest: built-ins, the engine's architectures, and the
    installed libraries' (timm:ARCH, open_clip:ARCH), read from the engine's index (no torch)."""
    return {"builtin": engine.builtin_models(), "engine": engine.engine_architectures(),
            "libraries": engine.library_architectures(), "readouts": engine.readouts()}


def model_preview(name: str) -> tuple[dict | None, str]:
    """What a model name or Hub id resolves to (family, preprocessing, readouts, commit), or why not."""
    try:
        return engine.model_preview(name), ""
    except engine.EngineError as exc:
        return None, str(exc)


def current_protocols(jobs: Iterable[EvaluationJob]) -> set[tuple[str, str]]:
    """(benchmark, protocol) pairs that need no new job: queued or running, or done at the protocol's
    current version. One rule for the page's offer and for `services.submission_add_protocols`.
    The jobs' `job_results__result` should be prefetched."""
    current = set()
    for job in jobs:
        if job.status in (EvaluationJob.Status.QUEUED, EvaluationJob.Status.RUNNING):
            current.update((job.benchmark, name) for name in job.protocols)
        elif job.status == EvaluationJob.Status.DONE:
            current.update((job.benchmark, jr.protocol) for jr in job.job_results.all()
                           if jr.result.provenance.get("protocol_version") == engine.protocol_version(jr.protocol))
    return current


def protocols_to_add(submission: Submission) -> list[tuple[str, str]]:
    """(name, title) of the protocols the submission's benchmarks offer that it has not run, or ran at
    an older version (`current_protocols`); benchmarks the engine no longer knows offer none."""
    jobs = list(submission.jobs.prefetch_related("job_results__result"))
    covered = current_protocols(jobs)
    names = []
    for benchmark in dict.fromkeys(job.benchmark for job in jobs):
        if engine.benchmark_kind(benchmark):
            names += [name for name in engine.offered_protocols(benchmark) if (benchmark, name) not in covered]
    return [(name, engine.protocol_title(name)) for name in dict.fromkeys(names)]
