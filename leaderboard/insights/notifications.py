"""Telling people by email, through Django's mail backend (the console in development, SMTP from settings).

`job_finished` runs after a job's transaction commits (leaderboard/submissions/services.py); `notify` is
the one door every app sends through (the contributions' review calls it too). Neither ever raises: a
user without an address, or a mail server that is down, costs a log line, never the job or the review.
"""
from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail

from leaderboard.engine import protocol_title
from leaderboard.submissions.models import EvaluationJob

log = logging.getLogger(__name__)

SUBJECT_MAX = 200
BODY_MAX = 20_000


def notify(user, subject: str, body: str) -> bool:
    """Email `user` (plain text). True when the backend took the message; False, and a log line, for nobody to
    write to (no user, inactive, no address) or a backend that failed."""
    address = (getattr(user, "email", "") or "").strip() if user is not None else ""
    if not address or not getattr(user, "is_active", False):
        return False
    subject = " ".join(str(subject).split())[:SUBJECT_MAX]   # one line: a header cannot carry a newline
    try:
        return send_mail(subject, str(body)[:BODY_MAX], None, [address], fail_silently=False) > 0
    except Exception as exc:   # SMTP down, refused, timed out, a bad address: the caller's work stands
        log.warning("could not email user %s (%s): %s", getattr(user, "pk", None), subject, exc)
        return False


def site_url(path: str) -> str:
    return settings.SHELFMARK_SITE_URL + path


def job_finished(job_id: int) -> bool:
    """The submitter's email when a job is done (its scores with their intervals) or failed (the message
    they see on the page, never the traceback). Nothing for a cancelled job; never raises."""
    try:
        job = (EvaluationJob.objects.select_related("submission__owner", "dataset__metric")
               .prefetch_related("job_results__result").get(pk=job_id))
        message = _job_message(job)
    except Exception:
        log.exception("could not write the email of job %s", job_id)
        return False
    if message is None:
        return False
    return notify(job.submission.owner, *message)


def _job_message(job: EvaluationJob) -> tuple[str, str] | None:
    submission, dataset = job.submission, job.dataset
    link = site_url(submission.get_absolute_url())
    what = f"{submission.model_name} on {dataset.name}"
    if job.status == EvaluationJob.Status.FAILED:
        return (f"Shelfmark: the evaluation of {what} failed",
                f"The evaluation of {what} (job {job.pk}) failed:\n\n    {job.error}\n\n"
                f"The submission's page has its log: {link}\n")
    if job.status != EvaluationJob.Status.DONE:
        return None
    unit = dataset.metric.unit
    results = sorted((jr.result for jr in job.job_results.all()), key=lambda result: result.pk)
    lines = []
    for result in results:
        interval = (f" (95% interval {result.ci_low:.2f}–{result.ci_high:.2f})"
                    if result.ci_low is not None and result.ci_high is not None else "")
        lines.append(f"- {protocol_title(result.protocol)}: {result.score:.2f} {unit}{interval}")
    headline = f": {results[0].score:.2f} {unit}" if results else ""
    board = (f"\nIts results are on the live board: {site_url(dataset.get_absolute_url())}\n" if submission.is_public
             else "\nThe submission is private: make it public from its page to put its results on the board.\n")
    return (f"Shelfmark: {what}{headline}",
            f"The evaluation of {what} (job {job.pk}) is done. {dataset.metric.name or dataset.metric.code}:\n\n"
            + "\n".join(lines) + "\n" + board +
            f"\nThe submission, with its reproduction bundles: {link}\n")
