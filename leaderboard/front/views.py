"""The browsing pages: home (the snapshot table), dataset boards, references, the overview chart; and, for
signed-in users, what this installation can run."""

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import render

from leaderboard.boards.selectors import REPORTED, board_protocols, board_rows
from leaderboard.engine import protocol_title
from leaderboard.pagecache import cache_for_visitors
from leaderboard.registry import selectors
from leaderboard.registry.models import Dataset, HistoricalDownload, MissingCell, Reference, Result

from .exports import board_csv, board_document, download_headers, references_bib
from .selectors import installation_benchmarks
from .templatetags.shelfmark import protocol_label
from .forms import SnapshotFilterForm

KIND_CHART_COLOURS = {
    Result.Kind.NON_CNN: "#8c8c8c",
    Result.Kind.OFF_THE_SHELF: "#1f6fb4",
    Result.Kind.SPECIALIZED: "#d9822b",
}


def _kind_legend():
    return [
        {"kind": kind, "label": Result.Kind(kind).label, "column": selectors.KIND_COLUMNS[kind],
         "colour": KIND_CHART_COLOURS[kind]}
        for kind in selectors.KIND_ORDER
    ]


@cache_for_visitors("family", "kind")
def home(request):
    form = SnapshotFilterForm(request.GET or None)
    family = kind = None
    if form.is_bound and form.is_valid():
        family = form.cleaned_data["family"].slug if form.cleaned_data["family"] else None
        kind = form.cleaned_data["kind"] or None
    blocks = selectors.snapshot_table(family=family, kind=kind)
    kinds = [kind] if kind else list(selectors.KIND_ORDER)
    context = {
        "form": form,
        "blocks": blocks,
        "columns": [selectors.KIND_COLUMNS[k] for k in kinds],
        "filtered": bool(family or kind),
        "demo_datasets": selectors.demo_datasets() if not (family or kind) else [],
        "reference_gaps": MissingCell.objects.filter(dataset__isnull=True).select_related("reference"),
        "downloads": HistoricalDownload.objects.select_related("dataset"),
    }
    return render(request, "front/home.html", context)


def _dataset_or_404(slug):
    try:
        return selectors.dataset_for_page(slug)
    except Dataset.DoesNotExist:
        raise Http404(f"No dataset {slug!r}") from None


def _chart(dataset, rows):
    """Horizontal bars, best at the top, coloured by kind: the data for site.js's plotly call."""
    return {
        "title": dataset.metric.name + ("" if dataset.metric.higher_is_better else ", lower is better"),
        "unit": dataset.metric.unit,
        "bars": [
            {"method": result.method.name, "score": result.score, "kind": result.kind,
             "kind_label": result.get_kind_display(), "colour": KIND_CHART_COLOURS[result.kind],
             "unverified": result.is_unverified, "rank_group": result.rank_group,
             "protocol": protocol_label(result), "ci_low": result.ci_low, "ci_high": result.ci_high}
            for result in rows
        ],
    }


def _protocol_filter(request, dataset) -> tuple[str | None, list[str]]:
    """The board's protocol filter (?protocol=knn) and the protocols it offers; unknown: all rows."""
    offered = board_protocols(dataset)
    asked = request.GET.get("protocol") or None
    return (asked if asked in offered else None), offered


@cache_for_visitors("protocol")
def dataset_detail(request, slug):
    dataset = _dataset_or_404(slug)
    protocol, protocols = _protocol_filter(request, dataset)
    rows = board_rows(dataset, protocol=protocol)
    context = {
        "dataset": dataset,
        "protocol": protocol,
        "protocols": [(name, "reported by papers" if name == REPORTED else protocol_title(name)) for name in protocols],
        "rows": rows,
        "best": selectors.best_by_kind(rows),
        "chart": _chart(dataset, rows),
        "legend": _kind_legend(),
        "missing": dataset.missing.all(),
        "downloads": HistoricalDownload.objects.filter(dataset=dataset),
        "version_count": dataset.versions.count(),
    }
    return render(request, "front/dataset_detail.html", context)


def dataset_csv(request, slug):
    dataset = _dataset_or_404(slug)
    rows = board_rows(dataset, protocol=_protocol_filter(request, dataset)[0])
    response = HttpResponse(board_csv(rows), content_type="text/csv; charset=utf-8")
    return download_headers(response, f"{dataset.slug}.csv")


def dataset_json(request, slug):
    dataset = _dataset_or_404(slug)
    document = board_document(dataset, board_rows(dataset, protocol=_protocol_filter(request, dataset)[0]))
    response = JsonResponse(document, json_dumps_params={"indent": 2, "ensure_ascii": False})
    return download_headers(response, f"{dataset.slug}.json")


def reference_list(request):
    references = selectors.references_with_results()
    return render(request, "front/reference_list.html", {
        "page_references": [r for r in references if r.page_key],
        "outside_references": [r for r in references if not r.page_key],
    })


def reference_bib(request):
    response = HttpResponse(references_bib(Reference.objects.all()), content_type="application/x-bibtex; charset=utf-8")
    return download_headers(response, "references.bib")


def overview(request):
    return render(request, "front/overview.html", {
        "series": selectors.overview_series(),
        "legend": _kind_legend(),
    })


@login_required
def installation(request):
    """Which benchmarks this installation runs, the image counts their data was verified with, and the
    commands that add the others (read from each ROOT's record: nothing is recounted here)."""
    return render(request, "front/installation.html", installation_benchmarks(request.user))
