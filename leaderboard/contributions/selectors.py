"""Reads of contributions: who may review, which reference a paper already is, a user's proposals, the
moderators' queue, and a result's page (its reference, provenance, history and published versions)."""
from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, QuerySet
from django.http import Http404

from leaderboard.boards.selectors import rank_results
from leaderboard.registry.models import LeaderboardEntry, Method, Reference, Result

from .models import MODERATORS, Proposal, Revision
from .papers import Paper, entry_identifiers, normalise_title


def is_moderator(user) -> bool:
    """Members of the "moderators" staff group review proposals; superusers do too."""
    if not (user.is_authenticated and user.is_active):
        return False
    return user.is_superuser or user.groups.filter(name=MODERATORS).exists()


def _same_paper(paper: Paper, reference: Reference) -> bool:
    """Same DOI, else same arXiv id, else same BibTeX key or title (with no identifier disagreeing)."""
    doi, arxiv = entry_identifiers(reference.fields or {})
    if (paper.doi and paper.doi == doi) or (paper.arxiv_id and paper.arxiv_id == arxiv):
        return True
    if (paper.doi and doi) or (paper.arxiv_id and arxiv):   # both sides name the paper, differently
        return False
    title = normalise_title(paper.title)
    if paper.key and paper.key == reference.key:
        return not title or not reference.title or title == normalise_title(reference.title)
    return bool(title) and title == normalise_title(reference.title) and (
        not paper.year or not reference.year or paper.year == reference.year)


def known_reference(paper: Paper) -> Reference | None:
    """The registry's reference for this paper, if it has one: a paper is never entered twice.

    DOIs and arXiv ids are compared normalised (a reference's .bib may spell them in any case or as a URL).
    The reference list is small (hundreds), so it is read whole rather than indexed."""
    references = Reference.objects.only("pk", "key", "title", "year", "fields", "page_key")
    matches = [reference for reference in references if _same_paper(paper, reference)]
    # An identifier match beats a title match; among equals, the page's own references first.
    return min(matches, key=lambda r: (not r.page_key, r.pk)) if matches else None


def duplicate_of(contributor, data, *, excluding: int | None = None) -> str:
    """Why this number is already in hand ("" when it is not): on the board, or among the user's proposals.
    `data`: a services.ProposalData."""
    on_board = Result.objects.filter(dataset=data.dataset, method__name__iexact=data.method_name, score=data.score,
                                     is_public=True).first()
    if on_board:
        return f"{data.method_name} = {data.score} is already on the {data.dataset.name} board."
    mine = (Proposal.objects.filter(contributor=contributor, dataset=data.dataset, score=data.score,
                                    method_name__iexact=data.method_name)
            .exclude(status=Proposal.Status.REJECTED).exclude(pk=excluding or 0).first())
    if mine:
        return f"You proposed {data.method_name} = {data.score} on {data.dataset.name} already (#{mine.pk})."
    return ""


def proposals_of(user) -> QuerySet[Proposal]:
    return Proposal.objects.filter(contributor=user).select_related("dataset", "reference", "result", "reviewed_by")


def proposal_for(user, pk: int) -> Proposal:
    """A proposal its contributor or a moderator may see; anybody else gets a 404 (it is not theirs to know of)."""
    proposal = (Proposal.objects.select_related("dataset__metric", "contributor", "reference", "result", "reviewed_by")
                .filter(pk=pk).first())
    if proposal is None or not (proposal.contributor_id == user.pk or is_moderator(user)):
        raise Http404("No such proposal.")
    return proposal


def review_queue(status: str = Proposal.Status.PENDING) -> QuerySet[Proposal]:
    """Proposals in one state, the longest waiting first."""
    return (Proposal.objects.filter(status=status).select_related("dataset", "contributor", "reference")
            .order_by("updated_at", "pk"))


def queue_counts() -> dict[str, int]:
    counts = dict(Proposal.objects.values_list("status").annotate(n=Count("pk")).values_list("status", "n"))
    return {status: counts.get(status, 0) for status in Proposal.Status.values}


@dataclass
class PlaceOnBoard:
    """Where a proposal would stand on its live board: its rank and the rows above and below it."""

    rank: int
    rows: list[Result]       # the neighbourhood, the proposal's stand-in among them (`.is_proposal`)
    total: int


def place_on_board(proposal: Proposal, around: int = 3) -> PlaceOnBoard:
    """Rank the proposed number among the board's public results, as the live board would (boards.selectors)."""
    public = list(Result.objects.filter(dataset=proposal.dataset, is_public=True)
                  .exclude(pk=proposal.result_id or 0).select_related("method", "reference"))
    stand_in = Result(dataset=proposal.dataset, method=Method(name=proposal.method_name), score=proposal.score,
                      kind=proposal.kind, confidence=Result.Confidence.HIGH, origin=Result.Origin.REPORTED)
    stand_in.is_proposal = True
    ranked = rank_results([*public, stand_in], proposal.dataset.metric.higher_is_better)
    index = next(i for i, row in enumerate(ranked) if getattr(row, "is_proposal", False))
    return PlaceOnBoard(rank=stand_in.rank, rows=ranked[max(0, index - around): index + around + 1], total=len(ranked))


def result_for(user, pk: int) -> Result:
    """A result's page: public results for everybody, a private one for its owner and staff only."""
    result = (Result.objects.select_related("dataset__metric", "dataset__task_family", "method", "reference", "owner")
              .filter(pk=pk).first())
    visible = result is not None and (
        result.is_public or (user.is_authenticated and (user.is_staff or user.pk == result.owner_id)))
    if not visible:
        raise Http404("No such result.")
    return result


def result_history(result: Result) -> list[Revision]:
    """Every step of the result, oldest first: the 2014 page, or the proposal's review, then corrections."""
    return list(Revision.objects.filter(result=result).select_related("author"))


def proposal_history(proposal: Proposal) -> list[Revision]:
    return list(Revision.objects.filter(proposal=proposal).select_related("author"))


def published_in(result: Result) -> list[LeaderboardEntry]:
    """The published versions that froze this result, with its rank in each."""
    return list(LeaderboardEntry.objects.filter(result=result).select_related("version__dataset")
                .order_by("version__number"))
