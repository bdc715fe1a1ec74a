"""Writes of the leaderboards: publishing a benchmark's live board as an immutable, hashed version, and
keeping the paired comparisons its rank groups are read from."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Max

from leaderboard import engine
from leaderboard.registry.models import Dataset, LeaderboardEntry, LeaderboardVersion, Result

from .models import PairedComparison
from .selectors import board_rows, uncompared_pairs


class VersionExists(ValueError):
    """The requested version number is already published for this dataset."""


def entry_payload(entry: LeaderboardEntry) -> dict:
    """The fields of a frozen row that its version's content hash covers."""
    return {
        "rank": entry.rank,
        "method": entry.method_name,
        "score": entry.score,
        "kind": entry.kind,
        "origin": entry.origin,
        "confidence": entry.confidence,
        "reference": entry.reference_key,
        "provenance": entry.provenance,
        "protocol": entry.protocol,
        "protocol_detail": entry.protocol_detail,
        "confidence_interval": [entry.ci_low, entry.ci_high],
        "rank_group": entry.rank_group,
    }


def content_hash(dataset: Dataset, entries: list[LeaderboardEntry]) -> str:
    """SHA-256 of the board as canonical JSON: same rows, same hash (an ETag for the permalink)."""
    document = {
        "dataset": dataset.slug,
        "metric": dataset.metric.code,
        "higher_is_better": dataset.metric.higher_is_better,
        "entries": [entry_payload(entry) for entry in entries],
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _frozen_entry(result: Result) -> LeaderboardEntry:
    reference = result.reference
    return LeaderboardEntry(
        result=result,
        rank=result.rank,
        method_name=result.method.name,
        score=result.score,
        kind=result.kind,
        origin=result.origin,
        confidence=result.confidence,
        reference_key=reference.key if reference else "",
        reference_label=str(reference) if reference else "",
        provenance=result.provenance or {},
        protocol=result.protocol, protocol_detail=result.protocol_detail,
        ci_low=result.ci_low, ci_high=result.ci_high, rank_group=getattr(result, "rank_group", str(result.rank)),
    )


def warm_rank_groups(dataset: Dataset) -> int:
    """Run the paired bootstrap (workers/confidence.py) on every adjacent pair of measured rows the board
    or one of its protocol filters shows and that has no verdict yet, and keep each verdict; returns how
    many were computed. Results are immutable, so a verdict never goes stale."""
    media = Path(settings.MEDIA_ROOT)
    computed = 0
    for first, second in uncompared_pairs(dataset):
        verdict = engine.units_separable(media / first.units, media / second.units)
        PairedComparison.objects.get_or_create(first=first, second=second, defaults={"separable": verdict})
        computed += 1
    return computed


def publish_version(dataset: Dataset, *, user=None, note: str = "", number: int | None = None) -> LeaderboardVersion:
    """Freeze the dataset's current public board into a new `LeaderboardVersion` (its rank groups computed
    first, outside the lock); see `_publish`."""
    warm_rank_groups(dataset)
    return _publish(dataset, user=user, note=note, number=number)


@transaction.atomic
def _publish(dataset: Dataset, *, user=None, note: str = "", number: int | None = None) -> LeaderboardVersion:
    """Freeze the dataset's current public board (`board_rows`) into a new `LeaderboardVersion`.

    Numbers go up by one from the last published version (the first is 0, the 2014 snapshot) unless
    `number` is given; publishing a number that exists raises `VersionExists`.
    """
    # Lock the dataset row so two publishers cannot pick the same next number.
    dataset = Dataset.objects.select_for_update().select_related("metric").get(pk=dataset.pk)
    last = LeaderboardVersion.objects.filter(dataset=dataset).aggregate(last=Max("number"))["last"]
    if number is None:
        number = 0 if last is None else last + 1
    elif LeaderboardVersion.objects.filter(dataset=dataset, number=number).exists():
        raise VersionExists(f"{dataset.slug} already has a published version {number}")

    entries = [_frozen_entry(result) for result in board_rows(dataset)]
    version = LeaderboardVersion.objects.create(
        dataset=dataset, number=number, published_by=user, note=note, content_hash=content_hash(dataset, entries)
    )
    for entry in entries:
        entry.version = version
    LeaderboardEntry.objects.bulk_create(entries)
    return version
