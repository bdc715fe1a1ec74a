"""Reads of the registry: the snapshot table of the home page, references with results, the overview.

Every page and the API read through these functions and the boards' (leaderboard/boards/selectors.py:
`public_results`, `rank_results`, `board_rows`), so "public", "ranked" and "best of a kind" mean the
same thing everywhere.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db.models import Prefetch, QuerySet

from leaderboard.boards.selectors import public_results, rank_results

from .models import Dataset, MissingCell, Reference, Result, TaskFamily

KIND_ORDER = [Result.Kind.NON_CNN, Result.Kind.OFF_THE_SHELF, Result.Kind.SPECIALIZED]

# Column titles of the 2014 page, in its order.
KIND_COLUMNS = {
    Result.Kind.NON_CNN: "Best non-CNN",
    Result.Kind.OFF_THE_SHELF: "Off-the-shelf CNN",
    Result.Kind.SPECIALIZED: "Best CNN (fine-tuned / specialized)",
}


def best_by_kind(ranked: list[Result]) -> dict[str, Result]:
    """The best result of each kind in an already ranked list (the three columns of the 2014 page)."""
    best: dict[str, Result] = {}
    for result in ranked:
        best.setdefault(result.kind, result)
    return best


@dataclass
class Cell:
    """One cell of the home table: the best result of a kind, a known-missing number, or nothing."""

    kind: str
    result: Result | None = None
    missing: MissingCell | None = None

    @property
    def column(self) -> str:
        return KIND_COLUMNS[self.kind]


@dataclass
class DatasetRow:
    dataset: Dataset
    cells: list[Cell]
    candidates: list[Result]


@dataclass
class FamilyBlock:
    family: TaskFamily
    rows: list[DatasetRow] = field(default_factory=list)


def snapshot_table(
    *, family: str | None = None, kind: str | None = None, origins: Iterable[str] = (Result.Origin.SNAPSHOT,)
) -> list[FamilyBlock]:
    """The home page: datasets grouped by task family, the best row of each kind, and all candidates.

    `family` (a TaskFamily slug) and `kind` (a Result.Kind value) narrow the table. Demo benchmarks are
    left out (see `demo_datasets`). Four queries whatever the size of the snapshot.
    """
    kinds = [kind] if kind else list(KIND_ORDER)
    datasets = Dataset.objects.filter(is_demo=False).select_related("task_family", "metric")
    if family:
        datasets = datasets.filter(task_family__slug=family)
    # Datasets come from their own query; the table needs each result's method and reference (not its BibTeX).
    results = (
        Result.objects.filter(is_public=True, origin__in=list(origins), kind__in=kinds)
        .select_related("method", "reference")
        .defer("reference__fields", "reference__bibtex", "provenance")
    )
    missing = MissingCell.objects.filter(dataset__isnull=False)

    results_by_dataset: dict[int, list[Result]] = {}
    for result in results:
        results_by_dataset.setdefault(result.dataset_id, []).append(result)
    missing_by_cell = {(cell.dataset_id, cell.kind): cell for cell in missing}

    blocks: dict[int, FamilyBlock] = {}
    for dataset in datasets:
        ranked = rank_results(results_by_dataset.get(dataset.pk, []), dataset.metric.higher_is_better)
        if kind and not ranked and (dataset.pk, kind) not in missing_by_cell:
            continue
        best = best_by_kind(ranked)
        cells = [
            Cell(kind=k, result=best.get(k), missing=None if k in best else missing_by_cell.get((dataset.pk, k)))
            for k in kinds
        ]
        block = blocks.setdefault(dataset.task_family_id, FamilyBlock(family=dataset.task_family))
        block.rows.append(DatasetRow(dataset=dataset, cells=cells, candidates=ranked))
    return list(blocks.values())


def demo_datasets() -> QuerySet[Dataset]:
    return Dataset.objects.filter(is_demo=True).select_related("task_family", "metric")


def dataset_for_page(slug: str) -> Dataset:
    """The dataset of a page, with what the page shows about it; raises Dataset.DoesNotExist."""
    return Dataset.objects.select_related("task_family", "metric").get(slug=slug)


def references_with_results() -> QuerySet[Reference]:
    """References in the page's order, each with its public results and its missing cells."""
    cited = public_results().order_by("dataset__task_family__order", "dataset__order", "-score")
    return Reference.objects.prefetch_related(
        Prefetch("results", queryset=cited, to_attr="public_results"),
        Prefetch("missing", queryset=MissingCell.objects.select_related("dataset")),
    )


def overview_series() -> list[dict]:
    """Per task family, the best score of each kind per dataset: the data of the overview chart."""
    series = []
    for block in snapshot_table():
        datasets = []
        for row in block.rows:
            metric = row.dataset.metric
            datasets.append({
                "slug": row.dataset.slug,
                "name": row.dataset.name,
                "metric": metric.name or metric.code,
                "higher_is_better": metric.higher_is_better,
                "best": {
                    cell.kind: (
                        {"score": cell.result.score, "method": cell.result.method.name,
                         "unverified": cell.result.is_unverified}
                        if cell.result else None
                    )
                    for cell in row.cells
                },
            })
        series.append({"family": block.family.slug, "name": block.family.name, "datasets": datasets})
    return series
