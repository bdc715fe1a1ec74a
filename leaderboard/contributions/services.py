"""Writes of contributions: proposing a paper's number (one, or a CSV batch at once), the contributor's edits,
and the review that accepts (a public Result on the live board), rejects or sends a proposal back.

Every step is a `Revision` with its author, time and reason; an accepted proposal's steps become the
history of the result it made. Views and tests all go through these functions.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import Max
from django.urls import reverse
from django.utils import timezone

from leaderboard.insights.notifications import notify, site_url
from leaderboard.registry.models import Dataset, Method, Reference, Result
from leaderboard.registry.snapshot import (
    OUTSIDE_ORDER_START,
    display_authors,
    entry_bibtex,
    plain_text,
    reference_url,
)

from .models import MODERATORS, Proposal, Revision
from .papers import ENTRY_TYPE, Paper, parse_bibtex
from .selectors import duplicate_of, is_moderator, known_reference

MAX_OPEN_PROPOSALS = 500     # per contributor, waiting for review or for their changes
MAX_REASON_CHARS = 2000
EDITABLE = ("dataset", "method_name", "score", "kind", "paper_protocol", "location", "note",
            "doi", "arxiv_id", "bibtex_key", "paper_title")


class ProposalRefused(ValueError):
    """The proposal is not stored: the message says why (a duplicate, too many open proposals)."""


class ReviewRefused(ValueError):
    """The review is not recorded: not a moderator, the contributor's own proposal, or no longer open."""


class ProposalChanged(ReviewRefused):
    """The proposal changed since the moderator's page showed it: they look again before deciding."""


@dataclass
class ProposalData:
    """What a contributor proposes, validated (forms.ProposalForm.proposal_data)."""

    dataset: Dataset
    method_name: str
    score: float
    kind: str
    paper_protocol: str
    location: str
    paper: Paper
    reference: Reference | None = None    # the registry already knows the paper
    note: str = ""
    batch_row: int | None = field(default=None, compare=False)

    @property
    def kind_label(self) -> str:
        return Result.Kind(self.kind).label

    @property
    def protocol_label(self) -> str:
        return Proposal.PaperProtocol(self.paper_protocol).label

    def values(self) -> dict:
        return {
            "dataset": self.dataset, "method_name": self.method_name, "score": self.score, "kind": self.kind,
            "paper_protocol": self.paper_protocol, "location": self.location, "note": self.note,
            "doi": self.paper.doi, "arxiv_id": self.paper.arxiv_id, "bibtex": self.paper.bibtex,
            "bibtex_key": self.paper.key, "paper_title": self.paper.title, "paper_year": self.paper.year,
            "reference": self.reference,
        }


def _check_room(contributor, new: int) -> None:
    # The contributor's row is the lock: the same form sent twice at once (a double click) stores it once.
    get_user_model().objects.select_for_update().filter(pk=contributor.pk).first()
    open_now = Proposal.objects.filter(
        contributor=contributor, status__in=[Proposal.Status.PENDING, Proposal.Status.CHANGES_REQUESTED]).count()
    if open_now + new > MAX_OPEN_PROPOSALS:
        raise ProposalRefused(f"You have {open_now} proposals waiting; at most {MAX_OPEN_PROPOSALS} may wait at once. "
                              "Send more once some are reviewed.")


def _author(user) -> dict:
    return {"author": user, "author_name": user.get_username() if user else ""}


@transaction.atomic
def propose(contributor, data: ProposalData) -> Proposal:
    """Store one proposal, waiting for review, with its first revision ("proposed")."""
    _check_room(contributor, 1)
    if reason := duplicate_of(contributor, data):
        raise ProposalRefused(reason)
    return _create(contributor, data)


def _create(contributor, data: ProposalData, batch: str = "") -> Proposal:
    proposal = Proposal.objects.create(contributor=contributor, batch=batch, batch_row=data.batch_row, **data.values())
    Revision.objects.create(proposal=proposal, action=Revision.Action.PROPOSED, reason=_where(proposal),
                            **_author(contributor))
    return proposal


def _where(proposal: Proposal) -> str:
    return f"{proposal.location} of {proposal.paper_label}" if proposal.paper_label else proposal.location


@transaction.atomic
def propose_batch(contributor, rows: list[ProposalData], batch: str) -> list[Proposal]:
    """Store the good rows of a CSV batch at once (the preview showed them): all of them or, on a refusal, none."""
    _check_room(contributor, len(rows))
    for data in rows:
        if reason := duplicate_of(contributor, data):
            raise ProposalRefused(f"Row {data.batch_row}: {reason}")
    return [_create(contributor, data, batch=batch) for data in rows]


def _changes(proposal: Proposal, values: dict) -> dict:
    def shown(value):
        return value.slug if isinstance(value, Dataset) else value

    return {name: [shown(getattr(proposal, name)), shown(values[name])]
            for name in EDITABLE if shown(getattr(proposal, name)) != shown(values[name])}


@transaction.atomic
def edit(proposal: Proposal, contributor, data: ProposalData, comment: str = "") -> Proposal:
    """The contributor's edit of an open proposal; one sent back for changes goes back to the queue."""
    proposal = Proposal.objects.select_for_update().get(pk=proposal.pk)
    if proposal.contributor_id != contributor.pk:
        raise ProposalRefused("Only its contributor edits a proposal.")
    if not proposal.is_open:
        raise ProposalRefused(f"This proposal was {proposal.get_status_display()}; it can no longer be edited.")
    if reason := duplicate_of(contributor, data, excluding=proposal.pk):
        raise ProposalRefused(reason)
    values = data.values()
    changes = _changes(proposal, values)
    resubmitted = proposal.status == Proposal.Status.CHANGES_REQUESTED
    for name, value in values.items():
        setattr(proposal, name, value)
    proposal.status = Proposal.Status.PENDING
    proposal.save()
    Revision.objects.create(proposal=proposal, changes=changes, reason=comment[:MAX_REASON_CHARS],
                            action=Revision.Action.RESUBMITTED if resubmitted else Revision.Action.EDITED,
                            **_author(contributor))
    return proposal


# ---- review ------------------------------------------------------------------------------------------------

def _open_for_review(proposal: Proposal, moderator, version: str | None = None) -> Proposal:
    """The proposal, locked, if `moderator` may review it now; `version` (Proposal.version, as the review form
    was opened on) must still be the proposal's (None: a caller that shows nothing, such as a script)."""
    if not is_moderator(moderator):
        raise ReviewRefused("Only moderators review proposals.")
    proposal = Proposal.objects.select_for_update().select_related("dataset__metric", "contributor").get(pk=proposal.pk)
    if proposal.contributor_id == moderator.pk:
        raise ReviewRefused("Your own proposal is reviewed by another moderator.")
    if proposal.status != Proposal.Status.PENDING:
        raise ReviewRefused(f"This proposal is no longer waiting for review ({proposal.get_status_display()}).")
    if version is not None and version != proposal.version:
        raise ProposalChanged("The proposal changed since you opened it: look again.")
    return proposal


def _reviewed(proposal: Proposal, moderator, status: str, reason: str) -> None:
    proposal.status, proposal.review_reason = status, reason
    proposal.reviewed_by, proposal.reviewed_at = moderator, timezone.now()
    proposal.save(update_fields=["status", "review_reason", "reviewed_by", "reviewed_at", "updated_at"])
    # robust: the review is saved by then; a failing email costs a log line, never a 500.
    transaction.on_commit(lambda: tell_contributor(proposal.pk), robust=True)


def _required(reason: str, what: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ReviewRefused(f"Say why: {what} needs a reason the contributor will read.")
    return reason[:MAX_REASON_CHARS]


@transaction.atomic
def reject(proposal: Proposal, moderator, reason: str, version: str | None = None) -> Proposal:
    reason = _required(reason, "a rejection")
    proposal = _open_for_review(proposal, moderator, version)
    _reviewed(proposal, moderator, Proposal.Status.REJECTED, reason)
    Revision.objects.create(proposal=proposal, action=Revision.Action.REJECTED, reason=reason, **_author(moderator))
    return proposal


@transaction.atomic
def request_changes(proposal: Proposal, moderator, reason: str, version: str | None = None) -> Proposal:
    reason = _required(reason, "a request for changes")
    proposal = _open_for_review(proposal, moderator, version)
    _reviewed(proposal, moderator, Proposal.Status.CHANGES_REQUESTED, reason)
    Revision.objects.create(proposal=proposal, action=Revision.Action.CHANGES_REQUESTED, reason=reason,
                            **_author(moderator))
    return proposal


@transaction.atomic
def accept(proposal: Proposal, moderator, reason: str = "", version: str | None = None) -> Result:
    """Make the proposal a public registry Result (origin "reported", no Shelfmark protocol: the boards list it
    under "reported by papers"): on the live board now, frozen into the next published version. Its paper
    becomes a Reference unless the registry knows it already; the proposal's revisions become the result's.
    Refused when the board has the number already (another contributor's proposal, accepted meanwhile)."""
    proposal = _open_for_review(proposal, moderator, version)
    # The board's dataset row is the lock (boards.services._publish takes it too): two moderators accepting
    # the same number from two contributors' proposals at once put it on the board once.
    Dataset.objects.select_for_update().filter(pk=proposal.dataset_id).first()
    on_board = (Result.objects.filter(dataset=proposal.dataset, method__name__iexact=proposal.method_name,
                                      score=proposal.score, is_public=True).order_by("pk").first())
    if on_board is not None:
        raise ReviewRefused(f"{proposal.method_name} = {proposal.score:g} is already on the {proposal.dataset.name} "
                            f"board (result #{on_board.pk}): reject this proposal as a duplicate.")
    reason = (reason or "").strip()[:MAX_REASON_CHARS]
    reference = reference_for(proposal)
    method = (Method.objects.filter(name=proposal.method_name, reference=reference).first()
              or Method.objects.create(name=proposal.method_name, reference=reference))
    protocol_label = Proposal.PaperProtocol(proposal.paper_protocol).label
    contributor = proposal.contributor.get_username()
    result = Result.objects.create(
        dataset=proposal.dataset, method=method, score=proposal.score, metric=proposal.dataset.metric,
        kind=proposal.kind, reference=reference, origin=Result.Origin.REPORTED, is_public=True,
        confidence=Result.Confidence.HIGH, owner=proposal.contributor,
        # The board shows a reported row's source and note (not its protocol_detail): the protocol goes there too.
        source=f"{proposal.location}, {protocol_label}; contributed by {contributor}, reviewed by "
               f"{moderator.get_username()}",
        note=proposal.note,
        protocol="", protocol_detail=protocol_label[:100],
        provenance={"contributed_by": contributor, "reviewed_by": moderator.get_username(),
                    "proposal": proposal.pk, "paper_location": proposal.location,
                    "paper_protocol": proposal.paper_protocol},
    )
    proposal.result, proposal.reference = result, reference
    proposal.save(update_fields=["result", "reference", "updated_at"])
    _reviewed(proposal, moderator, Proposal.Status.ACCEPTED, reason)
    proposal.revisions.update(result=result)
    Revision.objects.create(proposal=proposal, result=result, action=Revision.Action.ACCEPTED,
                            reason=reason or "accepted", **_author(moderator))
    return result


def review(proposal: Proposal, moderator, decision: str, reason: str = "", version: str | None = None):
    """One entry point for the review form: "accept", "changes" or "reject", of the proposal as it stood at
    `version` (the form's hidden field: ProposalChanged when it changed since)."""
    actions = {"accept": accept, "changes": request_changes, "reject": reject}
    if decision not in actions:
        raise ReviewRefused("Choose accept, ask for changes, or reject.")
    return actions[decision](proposal, moderator, reason, version=version)


def reference_for(proposal: Proposal) -> Reference:
    """The proposal's paper as a registry Reference: the one already known (by DOI, arXiv id, key or title,
    looked up again now: another proposal may have brought it since), else a new one from its BibTeX."""
    paper = Paper(doi=proposal.doi, arxiv_id=proposal.arxiv_id, key=proposal.bibtex_key, title=proposal.paper_title,
                  year=proposal.paper_year)
    if proposal.reference_id and Reference.objects.filter(pk=proposal.reference_id).exists():
        return proposal.reference
    # The moderators' group row is the lock: two moderators accepting two numbers of one new paper at once
    # make one reference, not two.
    Group.objects.select_for_update().filter(name=MODERATORS).first()
    known = known_reference(paper)
    if known is not None:
        return known
    return _new_reference(proposal)


def _new_reference(proposal: Proposal) -> Reference:
    entries = parse_bibtex(proposal.bibtex) if proposal.bibtex else []
    if entries:
        entry = dict(entries[0])
    else:   # named by DOI or arXiv id alone, with its title
        entry = {"ENTRYTYPE": "misc", "title": proposal.paper_title}
        if proposal.doi:
            entry["doi"] = proposal.doi
        if proposal.arxiv_id:
            entry.update(eprint=proposal.arxiv_id, archiveprefix="arXiv")
        if proposal.paper_year:
            entry["year"] = proposal.paper_year
    entry["ID"] = _free_key(entry.get("ID") or _key_for(proposal))
    fields = {name: value for name, value in entry.items() if name not in ("ID", "ENTRYTYPE")}
    venue = next((fields[name] for name in ("journal", "booktitle", "howpublished", "institution", "publisher")
                  if fields.get(name)), "")
    last = Reference.objects.aggregate(last=Max("order"))["last"] or 0
    # Checked when proposed (papers.read_paper); one stored before that check is a @misc.
    if not ENTRY_TYPE.fullmatch(entry.get("ENTRYTYPE", "")):
        entry["ENTRYTYPE"] = "misc"
    return Reference.objects.create(
        key=entry["ID"], entry_type=entry["ENTRYTYPE"], fields=fields, title=plain_text(fields.get("title", "")),
        authors=display_authors(fields.get("author", "")), year=fields.get("year", "")[:16],
        venue=plain_text(venue)[:300], url=reference_url(fields)[:500], bibtex=entry_bibtex(entry),
        order=max(last + 1, OUTSIDE_ORDER_START),
    )


def _key_for(proposal: Proposal) -> str:
    if proposal.arxiv_id:
        return "arXiv:" + proposal.arxiv_id
    return ("doi:" + proposal.doi)[:100]


def _free_key(key: str) -> str:
    """A citation key no reference has yet: Smith2020, else Smith2020-2, Smith2020-3, ..."""
    key = key[:96]
    if not Reference.objects.filter(key=key).exists():
        return key
    suffix = 2
    while Reference.objects.filter(key=f"{key}-{suffix}").exists():
        suffix += 1
    return f"{key}-{suffix}"


def tell_contributor(proposal_pk: int) -> bool:
    """Email the contributor the review's outcome, through the site's one mail door (insights.notifications:
    nobody to write to, or a mail server down, costs a log line, never the review)."""
    proposal = Proposal.objects.select_related("contributor", "dataset", "result").filter(pk=proposal_pk).first()
    if proposal is None:
        return False
    what = f"{proposal.method_name} = {proposal.score:g} on {proposal.dataset.name}"
    lines = [f"Your proposal #{proposal.pk} ({what}) was reviewed: {proposal.get_status_display()}."]
    if proposal.review_reason:
        lines.append(f"The moderator wrote:\n\n    {proposal.review_reason}")
    if proposal.status == Proposal.Status.CHANGES_REQUESTED:
        lines.append(f"Edit it and send it again: {site_url(reverse('proposal-edit', args=[proposal.pk]))}")
    elif proposal.result_id:
        lines.append(f"It is on the live board: {site_url(reverse('result-detail', args=[proposal.result_id]))}")
    lines.append(f"The proposal and its history: {site_url(proposal.get_absolute_url())}")
    return notify(proposal.contributor, f"Shelfmark: your proposal #{proposal.pk} was {proposal.get_status_display()}",
                  "\n\n".join(lines) + "\n")
