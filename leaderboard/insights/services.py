"""Writes of the insights: linking a paper's reported number to Shelfmark's measurement, and unlinking it.

The view and the admin call these, so every rule lives once: only a reported number beside an evaluated
one with an interval, on the same board and in its metric, by the measurement's submitter or a moderator.
"""
from __future__ import annotations

from django.db import IntegrityError, transaction

from leaderboard.registry.models import Result

from . import selectors
from .models import Reproduction

NOTE_MAX = 300


class ReproductionRefused(Exception):
    """A link that cannot be made (or removed), with the reason to show."""


def reproduction_link(user, *, reported: Result, measured: Result, note: str = "") -> Reproduction:
    """Put `reported` (a paper's number, or the 2014 snapshot's) beside `measured` (Shelfmark's evaluation of
    the same model). Raises ReproductionRefused with the reason."""
    if not selectors.can_link(user, measured):
        raise ReproductionRefused("Only the submitter of this evaluation, staff or a moderator can link it.")
    if measured.origin != Result.Origin.EVALUATED or measured.ci_low is None or measured.ci_high is None:
        raise ReproductionRefused("The measured side must be a Shelfmark evaluation with its 95% interval.")
    if reported.origin not in selectors.REPORTED_ORIGINS:
        raise ReproductionRefused("The reported side must be a number reported by a paper (or the 2014 snapshot).")
    if not reported.is_public:
        raise ReproductionRefused("That reported number is not on the live board.")
    if reported.dataset_id != measured.dataset_id:
        raise ReproductionRefused("The two numbers are on different benchmarks.")
    if reported.metric_id != measured.metric_id or reported.metric_label:
        raise ReproductionRefused("The reported number is not in the board's metric: it cannot be compared.")
    note = " ".join(note.split())
    if len(note) > NOTE_MAX:
        raise ReproductionRefused(f"Keep the note under {NOTE_MAX} characters.")
    try:
        with transaction.atomic():
            return Reproduction.objects.create(reported=reported, measured=measured, linked_by=user, note=note)
    except IntegrityError:
        raise ReproductionRefused("These two numbers are linked already.") from None


def reproduction_unlink(user, reproduction: Reproduction) -> None:
    if not selectors.can_unlink(user, reproduction):
        raise ReproductionRefused("Only the submitter of this evaluation, staff or a moderator can remove the link.")
    reproduction.delete()
