"""Pages of the submission flow. Each view checks access, calls one service or selector, renders."""
from pathlib import Path

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_POST

from leaderboard.body_limit import accepts_uploads
from leaderboard.registry.models import HistoricalDownload

from . import queue_selectors, selectors, services
from .forms import SubmissionForm
from .uploads import SizeLimitedUploadHandler
from .validation import DuplicateSubmission, SubmissionRefused


@csrf_exempt  # the upload handler must be set before the CSRF check reads the body; checked just below
@accepts_uploads
def submission_new(request):
    request.upload_handlers = [SizeLimitedUploadHandler(request)]
    return _submission_new(request)


def _within_allowance(view):
    """Refuse a POST of a user whose fair-use allowance is spent before its body (the upload) is read:
    the page says why, with status 429, and nothing is stored."""

    def check(request, *args, **kwargs):
        allowance = queue_selectors.allowance(request.user)
        if request.method == "POST" and allowance.refusal():
            response = render(request, "submissions/new.html", {
                "form": SubmissionForm(), "allowance": allowance, "refusal": allowance.refusal()}, status=429)
            response["Connection"] = "close"   # the body is never read: the connection cannot be reused
            return response
        request.allowance = allowance
        return view(request, *args, **kwargs)

    return check


@login_required  # first: an anonymous POST is redirected before its body (the upload) is read
@_within_allowance  # then: a spent allowance is refused before the body is read
@csrf_protect
def _submission_new(request):
    context = {"allowance": request.allowance, "refusal": request.allowance.refusal()}
    if request.method != "POST":
        return render(request, "submissions/new.html", {"form": SubmissionForm(), **context})
    form = SubmissionForm(request.POST, request.FILES)
    refusal = getattr(request, "upload_refusal", None)
    if refusal:
        form.is_valid()
        form.add_error("upload", refusal)
    elif form.is_valid():
        try:
            submission = services.submission_create(form.to_request(request.user))
        except DuplicateSubmission as exc:
            messages.info(request, str(exc))
            return redirect(exc.submission)
        except SubmissionRefused as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, _received(submission))
            return redirect(submission)
    return render(request, "submissions/new.html", {"form": form, **context}, status=400)


def _received(submission) -> str:
    if any(job.waiting_for_broker for job in submission.jobs.all()):
        return ("Submission received: its jobs are queued, waiting for the job queue (it is unreachable just now); "
                "they will start by themselves when it is back.")
    return "Submission received: its jobs are queued."


@login_required
def model_names(request):
    """The names the form's model fields suggest (a datalist, filled by the form script)."""
    response = JsonResponse(selectors.model_names())
    response["Cache-Control"] = "private, max-age=3600"
    return response


@login_required
def model_preview(request):
    """What a model name or Hub id resolves to, shown before the submission is queued."""
    about, error = selectors.model_preview(request.GET.get("name", "")[:300])
    return JsonResponse(about if about is not None else {"error": error}, status=200 if about else 400)


def submission_list(request):
    submissions = selectors.visible_submissions(request.user).prefetch_related("jobs")
    return render(request, "submissions/list.html", {"submissions": submissions})


def submission_detail(request, pk: int):
    submission = selectors.submission_for(request.user, pk)
    return render(request, "submissions/detail.html", {
        "submission": submission,
        "status": selectors.submission_status(submission, request.user),
        "can_manage": selectors.can_manage(request.user, submission),
        "protocols_to_add": selectors.protocols_to_add(submission),
    })


@require_POST
@login_required
def submission_add_protocols(request, pk: int):
    """Score a submission's features with more protocols (from the feature cache): one job per benchmark.

    A client that accepts JSON (and not HTML) gets the jobs queued, each with its status URL, or the
    refusal with status 400, instead of the page's redirect."""
    submission = selectors.submission_for(request.user, pk)
    if not selectors.can_manage(request.user, submission):
        raise PermissionDenied
    wants_json = "application/json" in request.headers.get("Accept", "") and not request.accepts("text/html")
    try:
        jobs = services.submission_add_protocols(submission, request.POST.getlist("protocol"))
    except SubmissionRefused as exc:
        if wants_json:
            return JsonResponse({"error": str(exc)}, status=400)
        messages.error(request, str(exc))
        return redirect(submission)
    if wants_json:
        status_url = reverse("submission-status", args=[submission.pk])
        return JsonResponse({"queued": [{"job": job.pk, "benchmark": job.benchmark, "protocols": job.protocols,
                                         "status_url": status_url} for job in jobs]})
    if jobs:
        messages.success(request, f"Queued {len(jobs)} job(s) scoring the cached features with the new protocols.")
    else:
        messages.info(request, "Those protocols have run already (or none was chosen).")
    return redirect(submission)


def submission_status(request, pk: int):
    submission = selectors.submission_for(request.user, pk)
    response = JsonResponse(selectors.submission_status(submission, request.user))
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@login_required
def submission_make_public(request, pk: int):
    submission = selectors.submission_for(request.user, pk)
    if not selectors.can_manage(request.user, submission):
        raise PermissionDenied
    services.submission_make_public(submission)
    messages.success(request, "The submission and its results are now public.")
    return redirect(submission)


@require_POST
@login_required
def job_cancel(request, pk: int):
    job = selectors.job_for(request.user, pk)
    if not selectors.can_manage(request.user, job.submission):
        raise PermissionDenied
    if services.job_cancel(job):
        messages.info(request, f"Job on {job.benchmark} cancelled.")
    return redirect(job.submission)


def job_bundle(request, pk: int):
    """The reproduction bundle of a job's headline result, written once and then served from disk."""
    job = selectors.job_for(request.user, pk)
    if job.result_id is None:
        raise Http404("This job has no result yet.")
    try:
        path: Path = services.job_bundle(job)
    except services.BundleUnavailable as exc:
        raise Http404(str(exc)) from None
    return FileResponse(open(path, "rb"), as_attachment=True, filename=path.name, content_type="application/zip")


def result_bundle(request, pk: int):
    """The reproduction bundle of one protocol's result (recomputes its score and its interval)."""
    job_result = selectors.job_result_for(request.user, pk)
    try:
        path: Path = services.result_bundle(job_result)
    except services.BundleUnavailable as exc:
        raise Http404(str(exc)) from None
    return FileResponse(open(path, "rb"), as_attachment=True, filename=path.name, content_type="application/zip")


def downloads(request):
    evaluated = selectors.visible_jobs_with_results(request.user)
    historical = HistoricalDownload.objects.select_related("dataset").order_by("pk")
    return render(request, "submissions/downloads.html", {"evaluated": evaluated, "historical": historical})


def queue_status(request):
    """The queue in plain view: workers online, what runs and waits in each queue, places and ETAs."""
    summary = queue_selectors.status_summary(request.user)
    response = render(request, "submissions/status.html", {"summary": summary})
    response["Cache-Control"] = "no-store"
    return response
