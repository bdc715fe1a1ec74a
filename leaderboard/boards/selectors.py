"""Reads of published leaderboard versions: the list, one frozen version, and the diff of two."""
from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Count
from django.shortcuts import get_object_or_404

from leaderboard.registry.models import Dataset, LeaderboardEntry, LeaderboardVersion


def dataset_or_404(slug_or_benchmark: str) -> Dataset:
    """A dataset by its slug, or by the engine benchmark name that evaluates it."""
    dataset = (Dataset.objects.select_related("metric").filter(slug=slug_or_benchmark).first()
               or Dataset.objects.select_related("metric").filter(engine_benchmark=slug_or_benchmark).first())
    if dataset is None:
        from django.http import Http404

        raise Http404(f"No benchmark '{slug_or_benchmark}'.")
    return dataset


def versions_of(dataset: Dataset):
    return (LeaderboardVersion.objects.filter(dataset=dataset).select_related("published_by")
            .annotate(rows=Count("entries")).order_by("-number"))


def version_or_404(dataset: Dataset, number: int) -> LeaderboardVersion:
    return get_object_or_404(LeaderboardVersion.objects.select_related("dataset__metric"), dataset=dataset,
                             number=number)


def version_entries(version: LeaderboardVersion) -> list[LeaderboardEntry]:
    return list(version.entries.order_by("rank", "pk"))


def _entry_key(entry: LeaderboardEntry):
    """The same row across versions: the live result it froze, else its name, kind and paper."""
    if entry.result_id:
        return ("result", entry.result_id)
    return ("row", entry.method_name, entry.kind, entry.reference_key)


@dataclass
class RankChange:
    entry: LeaderboardEntry      # the row in the newer version
    old_rank: int
    old_score: float

    @property
    def moved(self) -> int:
        return self.old_rank - self.entry.rank   # > 0: moved up


@dataclass
class VersionDiff:
    a: LeaderboardVersion
    b: LeaderboardVersion
    added: list[LeaderboardEntry] = field(default_factory=list)
    removed: list[LeaderboardEntry] = field(default_factory=list)
    rank_changes: list[RankChange] = field(default_factory=list)
    unchanged: int = 0


def version_diff(a: LeaderboardVersion, b: LeaderboardVersion) -> VersionDiff:
    """What changed from version a to version b: rows added, rows removed, rows whose rank moved."""
    old = {_entry_key(e): e for e in version_entries(a)}
    new = {_entry_key(e): e for e in version_entries(b)}
    diff = VersionDiff(a=a, b=b)
    for key, entry in new.items():
        if key not in old:
            diff.added.append(entry)
        elif old[key].rank != entry.rank or old[key].score != entry.score:
            diff.rank_changes.append(RankChange(entry, old[key].rank, old[key].score))
        else:
            diff.unchanged += 1
    diff.removed = [entry for key, entry in old.items() if key not in new]
    return diff

