"""Reads of the insights: reported beside measured, "since 2014", state of the art over time, a model's page,
who may link a measurement, and the citation of a published version.

Every list ranks through the boards' selectors (`public_results`, `rank_results`), so "public" and "best"
mean here what they mean on the boards.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Q, QuerySet

from leaderboard.boards.selectors import REPORTED, public_results, rank_results
from leaderboard.front.views import KIND_CHART_COLOURS
from leaderboard.registry.models import Dataset, LeaderboardVersion, Method, Result
from leaderboard.registry.selectors import KIND_COLUMNS, KIND_ORDER, best_by_kind

from leaderboard.contributions.selectors import is_moderator as contributions_moderator

from .models import Reproduction

REPORTED_ORIGINS = (Result.Origin.SNAPSHOT, Result.Origin.REPORTED)
CANDIDATES_LIMIT = 300              # reported numbers offered in one select (a board has a few dozen)
YEAR = re.compile(r"\b(1[89]\d\d|2\d\d\d)\b")


# ---- who may link -----------------------------------------------------------------------------------

def is_moderator(user) -> bool:
    """Staff, and the moderators who review contributions (contributions.selectors, the one rule)."""
    return bool(user.is_authenticated and user.is_active and (user.is_staff or contributions_moderator(user)))


def can_link(user, measured: Result) -> bool:
    """The evaluation's submitter (its owner), staff and moderators may put a paper's number beside it."""
    if not (user.is_authenticated and user.is_active) or measured.origin != Result.Origin.EVALUATED:
        return False
    return measured.owner_id == user.pk or is_moderator(user)


def can_unlink(user, reproduction: Reproduction) -> bool:
    return can_link(user, reproduction.measured) or (user.is_authenticated and reproduction.linked_by_id == user.pk)


# ---- reported beside measured ----------------------------------------------------------------------

def _pairs() -> QuerySet[Reproduction]:
    return Reproduction.objects.select_related(
        "reported__method", "reported__reference", "reported__dataset__metric",
        "measured__method", "measured__dataset__metric")


def public_pairs() -> QuerySet[Reproduction]:
    """Pairs whose two numbers are both on the live boards (a private measurement shows nowhere)."""
    return _pairs().filter(reported__is_public=True, measured__is_public=True)


def pairs_on(dataset: Dataset, protocol: str | None = None) -> list[Reproduction]:
    """A board's pairs; with the page's protocol filter, those measured by that protocol (none for "reported")."""
    pairs = public_pairs().filter(measured__dataset=dataset)
    if protocol == REPORTED:
        return []
    if protocol:
        pairs = pairs.filter(measured__protocol=protocol)
    return list(pairs.order_by("measured__method__name", "pk"))


def pairs_of_method(method: Method) -> list[Reproduction]:
    return list(public_pairs().filter(Q(measured__method=method) | Q(reported__method=method))
                .order_by("measured__dataset__task_family__order", "measured__dataset__order", "pk"))


def reported_candidates(dataset: Dataset) -> list[Result]:
    """The papers' numbers a measurement on `dataset` can be compared with: public, reported, in the board's
    own metric (a number in another metric, `metric_label`, cannot be set against an interval)."""
    return list(public_results().filter(dataset=dataset, origin__in=REPORTED_ORIGINS, metric_label="")
                .order_by("method__name", "pk")[:CANDIDATES_LIMIT])


@dataclass
class LinkableMeasurement:
    result: Result
    candidates: list[Result]
    pairs: list[Reproduction]


def submission_measurements(submission, user) -> list[LinkableMeasurement]:
    """A submission's current measurements (with an interval) that `user` may link, each with the papers'
    numbers of its board and the pairs it already has; empty for anybody else."""
    results = list(Result.objects.filter(job_result__job__submission=submission, job_result__superseded=False,
                                         origin=Result.Origin.EVALUATED, ci_low__isnull=False, ci_high__isnull=False)
                   .select_related("dataset__metric", "method").order_by("dataset__order", "protocol", "pk"))
    results = [result for result in results if can_link(user, result)]
    if not results:
        return []
    pairs: dict[int, list[Reproduction]] = {}
    for pair in _pairs().filter(measured__in=results, reported__is_public=True):   # a hidden paper's number: not shown
        pairs.setdefault(pair.measured_id, []).append(pair)
    candidates: dict[int, list[Result]] = {}
    for result in results:
        if result.dataset_id not in candidates:
            candidates[result.dataset_id] = reported_candidates(result.dataset)
    return [LinkableMeasurement(result, candidates[result.dataset_id], pairs.get(result.pk, []))
            for result in results]


# ---- since 2014 and the state of the art over time --------------------------------------------------

def _of_protocol(results: QuerySet[Result], protocol: str | None) -> QuerySet[Result]:
    """The board's protocol filter, as `board_rows` reads it ("reported": the papers' numbers)."""
    if protocol == REPORTED:
        return results.exclude(origin=Result.Origin.EVALUATED)
    return results.filter(protocol=protocol) if protocol else results


def comparable_results(dataset: Dataset, protocol: str | None = None) -> list[Result]:
    """The board's public results in its own metric (of one protocol, when the page filters), best first."""
    results = public_results().filter(dataset=dataset, metric_label="").select_related("method__reference")
    return rank_results(_of_protocol(results, protocol), dataset.metric.higher_is_better)


@dataclass
class SinceRow:
    """One kind: the 2014 snapshot's best, today's best, and the gain (> 0 is better, whatever the direction)."""

    kind: str
    column: str
    then: Result | None
    now: Result | None
    gain: float | None

    @property
    def unchanged(self) -> bool:
        return self.then is not None and self.now is not None and self.now.pk == self.then.pk


def since_2014(dataset: Dataset, ranked: list[Result] | None = None) -> list[SinceRow]:
    """The snapshot's best of each kind against today's best of the same kind; [] for a board the 2014 page
    did not have. The gain counts in the metric's direction (a lower error is a gain)."""
    ranked = comparable_results(dataset) if ranked is None else ranked
    then = best_by_kind([result for result in ranked if result.origin == Result.Origin.SNAPSHOT])
    if not then:
        return []
    now = best_by_kind(ranked)
    sign = 1 if dataset.metric.higher_is_better else -1
    rows = []
    for kind in KIND_ORDER:
        old, new = then.get(kind), now.get(kind)
        gain = round(sign * (new.score - old.score), 4) if old is not None and new is not None else None
        rows.append(SinceRow(kind, KIND_COLUMNS[kind], old, new, gain))
    return rows


def result_year(result: Result) -> tuple[int | None, bool]:
    """The year a result counts at on the timeline: its paper's (the result's reference, else its method's),
    else, for a measurement, the year Shelfmark measured it. The flag says it is a measurement's year."""
    for reference in (result.reference, result.method.reference):
        match = YEAR.search(reference.year) if reference is not None and reference.year else None
        if match:
            return int(match.group(1)), False
    if result.origin == Result.Origin.EVALUATED:
        return result.created_at.year, True
    return None, False


def sota_series(dataset: Dataset, ranked: list[Result] | None = None) -> dict:
    """The state of the art over time, per kind: the records (the results that beat every earlier year's best,
    the best of their year) and the step line through them, drawn on to the last year of the board.

    The data of insights.js's plotly chart; `undated` counts the results with no year to place them at.
    """
    ranked = comparable_results(dataset) if ranked is None else ranked
    better = (lambda a, b: a > b) if dataset.metric.higher_is_better else (lambda a, b: a < b)
    dated, undated = [], 0
    for result in ranked:                     # best first: the first of a year and kind is that year's best
        year, measured = result_year(result)
        if year is None:
            undated += 1
        else:
            dated.append((year, measured, result))
    last_year = max((year for year, _, _ in dated), default=None)
    series = []
    for kind in KIND_ORDER:
        best_of_year: dict[int, tuple[bool, Result]] = {}
        for year, measured, result in dated:
            if result.kind == kind:
                best_of_year.setdefault(year, (measured, result))
        records, best = [], None
        for year in sorted(best_of_year):
            measured, result = best_of_year[year]
            if best is None or better(result.score, best):
                best = result.score
                records.append({"year": year, "score": result.score, "method": result.method.name,
                                "measured": measured, "unverified": result.is_unverified})
        if not records:
            continue
        x = [record["year"] for record in records]
        y = [record["score"] for record in records]
        if last_year is not None and last_year > x[-1]:
            x.append(last_year)
            y.append(y[-1])
        series.append({"kind": kind, "label": Result.Kind(kind).label, "colour": KIND_CHART_COLOURS[kind],
                       "records": records, "x": x, "y": y})
    metric = dataset.metric
    return {"title": (metric.name or metric.code) + ("" if metric.higher_is_better else ", lower is better"),
            "unit": metric.unit, "higher_is_better": metric.higher_is_better, "series": series,
            "undated": undated}


def dataset_insights(dataset: Dataset, protocol: str | None = None) -> dict:
    """What the dataset page adds below its board: the pairs, since 2014, and the chart (one results query),
    for the rows the page shows (its protocol filter)."""
    ranked = comparable_results(dataset, protocol)
    return {"pairs": pairs_on(dataset, protocol), "since": since_2014(dataset, ranked),
            "sota": sota_series(dataset, ranked),
            "unit": dataset.metric.unit, "higher_is_better": dataset.metric.higher_is_better}


# ---- a model's page ---------------------------------------------------------------------------------

@dataclass
class ModelPage:
    method: Method
    results: list[Result]
    references: list
    pairs: list[Reproduction]


def model_page(pk: int) -> ModelPage:
    """A model (registry Method) across every benchmark: its public results with their provenance, the papers
    they cite, and their pairs. Raises Method.DoesNotExist for a model with no public result (a private
    submission's model name is nobody else's business)."""
    method = Method.objects.select_related("reference").get(pk=pk)
    results = list(public_results().filter(method=method).select_related("dataset__task_family", "method__reference")
                   .order_by("dataset__task_family__order", "dataset__order", "dataset__name", "protocol", "-score"))
    if not results:
        raise Method.DoesNotExist(f"No public result of model {pk}.")
    for result in results:
        result.provenance_json = json.dumps(result.provenance, indent=2, sort_keys=True) if result.provenance else ""
    references = list(dict.fromkeys(
        ref for ref in [method.reference, *(result.reference for result in results)] if ref is not None))
    return ModelPage(method, results, references, pairs_of_method(method))


# ---- published versions: the feed and their citation -----------------------------------------------

def published_versions(limit: int = 100) -> QuerySet[LeaderboardVersion]:
    """The newest published versions first (the Atom feed's entries)."""
    return (LeaderboardVersion.objects.select_related("dataset__task_family", "dataset__metric")
            .order_by("-published_at", "-pk")[:limit])


LATEX_SPECIALS = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "&": r"\&", "%": r"\%", "$": r"\$",
                  "#": r"\#", "_": r"\_", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
LATEX_SPECIAL = re.compile("|".join(re.escape(char) for char in LATEX_SPECIALS))


def latex_escape(text: str) -> str:
    """A registry name as BibTeX text: LaTeX's special characters escaped, in one pass."""
    return LATEX_SPECIAL.sub(lambda match: LATEX_SPECIALS[match.group(0)], " ".join(str(text).split()))


def citation_key(version: LeaderboardVersion) -> str:
    """Stable for ever: the board's slug and the version number."""
    return f"shelfmark_{version.dataset.slug}_v{version.number}"


def version_url(version: LeaderboardVersion) -> str:
    """The permalink under SHELFMARK_SITE_URL: the same whatever host the page was asked under."""
    return settings.SHELFMARK_SITE_URL + version.get_absolute_url()


def version_bibtex(version: LeaderboardVersion) -> str:
    """A BibTeX @misc entry for a published version: only frozen facts (slug, number, name, date, content
    hash) and the site's address, so the permalink page that shows it stays the same bytes."""
    url = version_url(version)
    published = version.published_at
    fields = [
        ("author", "{Shelfmark contributors}"),
        ("title", "{" + latex_escape(f"{version.dataset.name}: Shelfmark leaderboard, version {version.number}")
         + "}"),
        ("howpublished", r"\url{" + url + "}"),
        ("url", url),
        ("year", str(published.year)),
        ("note", f"Published version, frozen on {published:%Y-%m-%d}; content SHA-256 "
                 f"{version.content_hash or 'not recorded'}"),
    ]
    body = ",\n".join(f"  {name:<12} = {{{value}}}" for name, value in fields)
    return f"@misc{{{citation_key(version)},\n{body}\n}}\n"
