"""Reads of the leaderboards: the live board of a benchmark (its ranking), its published versions, one
frozen version, and the diff of two. Pages, the API, exports and publishing all rank through here."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db.models import Count, QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404

from leaderboard.registry.models import Dataset, LeaderboardEntry, LeaderboardVersion, Result

from .models import PairedComparison


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


def board_rows(dataset: Dataset, *, protocol: str | None = None) -> list[Result]:
    """The live public board of a benchmark: its public results ranked by score, best first.

    Respects `dataset.metric.higher_is_better` (ILSVRC top-5 error ranks lowest first). Each result
    gets `.rank` and `.rank_group` (see `assign_rank_groups`); method, reference and metric are
    loaded. `protocol` keeps the rows of one protocol ("reported" for the numbers taken from papers).
    """
    results = public_results().filter(dataset=dataset)
    if protocol == REPORTED:
        results = results.exclude(origin=Result.Origin.EVALUATED)
    elif protocol:
        results = results.filter(protocol=protocol)
    return assign_rank_groups(rank_results(results, dataset.metric.higher_is_better))


REPORTED = "reported"   # the protocol filter's name for numbers taken from papers (no interval)


def board_protocols(dataset: Dataset) -> list[str]:
    """The protocols of a board's public results, "reported" first when papers' numbers are there."""
    names = set(public_results().filter(dataset=dataset).values_list("protocol", flat=True))
    return ([REPORTED] if "" in names else []) + sorted(name for name in names if name)


def assign_rank_groups(ranked: list[Result]) -> list[Result]:
    """Give each row a `.rank_group`: adjacent measured rows that a paired bootstrap could not tell apart
    share one ("1–3"); other rows keep their rank ("4"). Numbers from papers (no per-image outputs)
    and results scored on other test units never join a group.

    Only verdicts already computed (`boards.services.warm_rank_groups`, run by the worker when a job
    finishes and before a version is published) are read: a page never runs a bootstrap, and a pair
    not yet compared is shown apart until it is."""
    ids = [r.pk for r in ranked if r.units]
    known = {(c.first_id, c.second_id): c.separable
             for c in PairedComparison.objects.filter(first_id__in=ids, second_id__in=ids)} if len(ids) > 1 else {}
    groups: list[list[Result]] = [[ranked[0]]] if ranked else []
    for previous, result in zip(ranked, ranked[1:]):
        if known.get((previous.pk, result.pk)) is False:
            groups[-1].append(result)
        else:
            groups.append([result])
    for group in groups:
        first, last = group[0].rank, group[-1].rank
        label = f"{first}–{last}" if first != last else str(first)
        for result in group:
            result.rank_group = label
    return ranked


def uncompared_pairs(dataset: Dataset) -> list[tuple[Result, Result]]:
    """Adjacent measured rows, on the board and on each protocol's filter of it, with no verdict yet."""
    pairs = {}
    for protocol in [None, *board_protocols(dataset)]:
        ranked = board_rows(dataset, protocol=protocol)
        for first, second in zip(ranked, ranked[1:]):
            if first.units and second.units:
                pairs[(first.pk, second.pk)] = (first, second)
    done = set(PairedComparison.objects.filter(first_id__in=[a for a, _ in pairs])
               .values_list("first_id", "second_id"))
    return [pair for key, pair in pairs.items() if key not in done]


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

    @property
    def contributors(self) -> list[str]:
        """Who contributed the rows this version added (from papers, reviewed: leaderboard/contributions), as
        frozen in the rows' provenance, so the diff names them however their accounts change later."""
        names = {entry.provenance.get("contributed_by") for entry in self.added if isinstance(entry.provenance, dict)}
        return sorted(name for name in names if name)


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

