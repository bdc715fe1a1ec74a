"""Reads of the leaderboards: the live board of a benchmark (its ranking), its published versions, one
frozen version, and the diff of two. Pages, the API, exports and publishing all rank through here."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db.models import Count, QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404

from leaderboard.registry.models import Dataset, LeaderboardEntry, LeaderboardVersion, Result


def public_results() -> QuerySet[Result]:
    return Result.objects.filter(is_public=True).select_related("method", "reference", "metric", "dataset")


def ranking_key(higher_is_better: bool):
    """Sort key: best score first, then verified before unverified, then by name (a stable order)."""
    confidence_rank = {Result.Confidence.HIGH: 0, Result.Confidence.MEDIUM: 1, Result.Confidence.LOW: 2}

    def key(result: Result):
        score = -result.score if higher_is_better else result.score
        return (score, confidence_rank.get(result.confidence, 3), result.method.name, result.pk or 0)

    return key


def rank_results(results: Iterable[Result], higher_is_better: bool) -> list[Result]:
    """Order results best first and set `.rank` (competition ranking: equal scores share a rank)."""
    ranked = sorted(results, key=ranking_key(higher_is_better))
    previous_score, previous_rank = None, 0
    for position, result in enumerate(ranked, start=1):
        if result.score != previous_score:
            previous_rank = position
            previous_score = result.score
        result.rank = previous_rank
    return ranked


def board_rows(dataset: Dataset) -> list[Result]:
    """The live public board of a benchmark: its public results ranked by score, best first.

    Respects `dataset.metric.higher_is_better` (ILSVRC top-5 error ranks lowest first). Each result
    gets a `.rank` attribute; method, reference and metric are already loaded.
    """
    results = public_results().filter(dataset=dataset)
    return rank_results(results, dataset.metric.higher_is_better)



def dataset_or_404(slug_or_benchmark: str) -> Dataset:
    """A dataset by its slug, or by the engine benchmark name that evaluates it."""
    dataset = (Dataset.objects.select_related("metric").filter(slug=slug_or_benchmark).first()
               or Dataset.objects.select_related("metric").filter(engine_benchmark=slug_or_benchmark).first())
    if dataset is None:
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

