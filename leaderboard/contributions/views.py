"""Pages of contributions: propose (one, or a CSV batch with its preview), your proposals, a proposal with
its history (and, for moderators, the review form), the moderators' queue, and a result's own page."""
import hashlib

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.template.defaultfilters import filesizeformat
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_POST

from leaderboard.submissions.uploads import SizeLimitedUploadHandler

from . import selectors, services
from .batch import MAX_BIB_BYTES, MAX_CSV_BYTES, MAX_ROWS, REQUIRED, decode, read_batch
from .forms import BatchForm, EditForm, ProposalForm, ReviewForm
from .models import Proposal

BATCH_SESSION_KEY = "contribution-batch"
MAX_BATCH_UPLOAD_BYTES = MAX_CSV_BYTES + MAX_BIB_BYTES   # both files of one upload, together


@login_required
def proposal_new(request):
    form = ProposalForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            proposal = services.propose(request.user, form.proposal_data())
        except services.ProposalRefused as refusal:
            form.add_error(None, str(refusal))
        else:
            messages.success(request, f"Proposal #{proposal.pk} stored: a moderator reviews it next.")
            return redirect(proposal)
    return render(request, "contributions/new.html", {"form": form}, status=400 if form.errors else 200)


def _batch_context(batch=None, **extra) -> dict:
    return {"form": BatchForm(), "batch": batch, "max_rows": MAX_ROWS, "max_csv": MAX_CSV_BYTES,
            "max_bib": MAX_BIB_BYTES, "required": REQUIRED, **extra}


@csrf_exempt  # the upload handler must be set before the CSRF check reads the body; checked just below
def proposal_batch(request):
    """Upload: every row checked and shown, nothing stored. "Store N proposals" then stores the good rows of
    the file kept in the session (read again: a row that went bad since is not stored).

    The upload stops being read once its files pass the CSV's and the .bib's limits together (not marked
    `accepts_uploads`: a chunked body here keeps the form fields' 1 MiB, more than these files need)."""
    request.upload_handlers = [SizeLimitedUploadHandler(request, limit=MAX_BATCH_UPLOAD_BYTES)]
    return _proposal_batch(request)


@login_required  # first: an anonymous POST is redirected before its body (the upload) is read
@csrf_protect
def _proposal_batch(request):
    if request.method == "POST" and request.POST.get("step") == "store":
        return _store_batch(request)
    if request.method != "POST":
        return render(request, "contributions/batch.html", _batch_context())
    form = BatchForm(request.POST, request.FILES)
    if getattr(request, "upload_refusal", None):
        form.is_valid()
        form.add_error("csv_file", f"The files are larger than {filesizeformat(MAX_BATCH_UPLOAD_BYTES)} together "
                                   f"(at most {filesizeformat(MAX_CSV_BYTES)} of CSV and "
                                   f"{filesizeformat(MAX_BIB_BYTES)} of BibTeX): the upload was not read further.")
        return render(request, "contributions/batch.html", _batch_context(form=form), status=400)
    if not form.is_valid():
        return render(request, "contributions/batch.html", _batch_context(form=form), status=400)
    csv_text, error = decode(form.cleaned_data["csv_file"], MAX_CSV_BYTES, "CSV file")
    bib_text, bib_error = ("", "")
    if form.cleaned_data["bib_file"]:
        bib_text, bib_error = decode(form.cleaned_data["bib_file"], MAX_BIB_BYTES, "BibTeX file")
    if error or bib_error:
        form.add_error("csv_file" if error else "bib_file", error or bib_error)
        return render(request, "contributions/batch.html", _batch_context(form=form), status=400)
    batch = read_batch(csv_text, bib_text, contributor=request.user)
    token = hashlib.sha256(f"{csv_text}\0{bib_text}".encode()).hexdigest()[:32]
    request.session[BATCH_SESSION_KEY] = {"token": token, "csv": csv_text, "bib": bib_text,
                                          "name": form.cleaned_data["csv_file"].name[:200]}
    return render(request, "contributions/batch.html", _batch_context(batch, token=token),
                  status=200 if batch.good else 400)


def _store_batch(request):
    kept = request.session.get(BATCH_SESSION_KEY) or {}
    if not kept or kept.get("token") != request.POST.get("token"):
        messages.error(request, "That batch is no longer at hand: upload the file again.")
        return redirect("proposal-batch")
    batch = read_batch(kept["csv"], kept["bib"], contributor=request.user)
    good = batch.good
    if str(len(good)) != request.POST.get("count"):
        messages.error(request, f"The batch changed since its preview: {len(good)} rows can be stored now. "
                                "Check them again below.")
        return render(request, "contributions/batch.html", _batch_context(batch, token=kept["token"]), status=409)
    try:
        stored = services.propose_batch(request.user, [row.data for row in good], batch=kept["token"])
    except services.ProposalRefused as refusal:
        messages.error(request, str(refusal))
        return render(request, "contributions/batch.html", _batch_context(batch, token=kept["token"]), status=400)
    del request.session[BATCH_SESSION_KEY]
    messages.success(request, f"Stored {len(stored)} proposals from {kept['name']}: moderators review them next.")
    return redirect("proposal-mine")


@login_required
def proposal_mine(request):
    proposals = list(selectors.proposals_of(request.user))
    counts = {status: sum(1 for p in proposals if p.status == status) for status in Proposal.Status.values}
    return render(request, "contributions/mine.html", {
        "proposals": proposals, "counts": counts, "statuses": Proposal.Status.choices,
        "is_moderator": selectors.is_moderator(request.user),
        "waiting": selectors.queue_counts()[Proposal.Status.PENDING] if selectors.is_moderator(request.user) else 0,
    })


def _detail(request, proposal: Proposal, review_form: ReviewForm | None = None, status: int = 200,
            changed: str = ""):
    can_review = (selectors.is_moderator(request.user) and proposal.contributor_id != request.user.pk
                  and proposal.status == Proposal.Status.PENDING)
    return render(request, "contributions/detail.html", {
        "proposal": proposal, "history": selectors.proposal_history(proposal),
        "place": selectors.place_on_board(proposal) if proposal.status != Proposal.Status.ACCEPTED else None,
        "can_review": can_review, "changed": changed,
        "review_form": review_form or (ReviewForm.for_proposal(proposal) if can_review else None),
        "can_edit": proposal.is_open and proposal.contributor_id == request.user.pk,
    }, status=status)


@login_required
def proposal_detail(request, pk: int):
    return _detail(request, selectors.proposal_for(request.user, pk))


@login_required
def proposal_edit(request, pk: int):
    proposal = selectors.proposal_for(request.user, pk)
    if proposal.contributor_id != request.user.pk:
        raise PermissionDenied("Only its contributor edits a proposal.")
    if not proposal.is_open:
        messages.error(request, f"Proposal #{proposal.pk} was {proposal.get_status_display()}: it is closed.")
        return redirect(proposal)
    form = EditForm(request.POST or None, initial=ProposalForm.initial_for(proposal))
    if request.method == "POST" and form.is_valid():
        try:
            services.edit(proposal, request.user, form.proposal_data(), form.cleaned_data["comment"])
        except services.ProposalRefused as refusal:
            form.add_error(None, str(refusal))
        else:
            messages.success(request, f"Proposal #{proposal.pk} saved: it waits for review again.")
            return redirect(proposal)
    return render(request, "contributions/new.html", {"form": form, "proposal": proposal},
                  status=400 if form.errors else 200)


@require_POST
@login_required
def proposal_review(request, pk: int):
    if not selectors.is_moderator(request.user):
        raise PermissionDenied("Only moderators review proposals.")
    proposal = selectors.proposal_for(request.user, pk)
    form = ReviewForm(request.POST)
    if form.is_valid():
        try:
            outcome = services.review(proposal, request.user, form.cleaned_data["decision"],
                                      form.cleaned_data["reason"], version=form.cleaned_data["version"])
        except services.ProposalChanged as refusal:
            # Shown as it stands now, with a fresh form: the decision is made again, on what the page shows.
            proposal.refresh_from_db()
            return _detail(request, proposal, status=409, changed=str(refusal))
        except services.ReviewRefused as refusal:
            form.add_error(None, str(refusal))
        else:
            if form.cleaned_data["decision"] == "accept":
                messages.success(request, f"Accepted: {proposal.method_name} is on the {proposal.dataset.name} "
                                          f"board (result #{outcome.pk}).")
            else:
                messages.success(request, f"Proposal #{proposal.pk}: {outcome.get_status_display()}.")
            return redirect("proposal-queue")
    proposal.refresh_from_db()
    return _detail(request, proposal, form, status=400)


@login_required
def proposal_queue(request):
    if not selectors.is_moderator(request.user):
        raise PermissionDenied("The review queue is for moderators.")
    status = request.GET.get("status", Proposal.Status.PENDING)
    if status not in Proposal.Status.values:
        status = Proposal.Status.PENDING
    return render(request, "contributions/queue.html", {
        "proposals": selectors.review_queue(status)[:500], "status": status, "statuses": Proposal.Status.choices,
        "counts": selectors.queue_counts(),
    })


def result_detail(request, pk: int):
    """A result's own page: the number, its reference with BibTeX, where it came from and every revision."""
    result = selectors.result_for(request.user, pk)
    proposal = getattr(result, "proposal", None)
    return render(request, "contributions/result.html", {
        "result": result, "history": selectors.result_history(result), "versions": selectors.published_in(result),
        "proposal": proposal if proposal and (proposal.contributor_id == request.user.pk
                                              or selectors.is_moderator(request.user)) else None,
    })
