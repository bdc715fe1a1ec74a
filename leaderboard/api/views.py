"""The read-only JSON API, and a server-rendered page documenting it (works offline, no CDN)."""
from django.shortcuts import render
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import viewsets
from rest_framework.exceptions import ValidationError

from leaderboard.boards.selectors import REPORTED, board_rows, public_results
from leaderboard.engine import protocol_choices
from leaderboard.registry.models import Dataset, Reference, Result, TaskFamily

from . import serializers as api_serializers


class TaskFamilyViewSet(viewsets.ReadOnlyModelViewSet):
    """Task families (object classification, scene recognition, ...), in the page's order."""

    queryset = TaskFamily.objects.all()
    serializer_class = api_serializers.TaskFamilySerializer
    lookup_field = "slug"


class DatasetViewSet(viewsets.ReadOnlyModelViewSet):
    """Datasets (benchmarks) with their metric; one dataset includes its public results, ranked."""

    queryset = Dataset.objects.select_related("task_family", "metric")
    lookup_field = "slug"

    def get_serializer_class(self):
        if self.action == "retrieve":
            return api_serializers.DatasetDetailSerializer
        return api_serializers.DatasetSerializer

    def get_serializer_context(self):
        context = super().get_serializer_context()
        if self.action == "retrieve" and self.kwargs.get("slug"):
            context["board_rows"] = board_rows(self.get_object())
        return context


RESULT_FILTERS = [
    OpenApiParameter("dataset", str, description="dataset slug, e.g. voc2007_cls"),
    OpenApiParameter("kind", str, enum=[k.value for k in Result.Kind]),
    OpenApiParameter("origin", str, enum=[o.value for o in Result.Origin]),
    OpenApiParameter("protocol", str, description="svm, knn, linear_probe, fewshot, ranking, easy, medium, hard, "
                                                  "or reported (numbers from papers)"),
]


@extend_schema_view(list=extend_schema(parameters=RESULT_FILTERS))
class ResultViewSet(viewsets.ReadOnlyModelViewSet):
    """Public results (reported and evaluated), filterable by dataset, kind, origin and protocol."""

    serializer_class = api_serializers.ResultSerializer

    def get_queryset(self):
        results = public_results().order_by("dataset__task_family__order", "dataset__order", "-score", "pk")
        params = self.request.query_params
        if params.get("dataset"):
            results = results.filter(dataset__slug=params["dataset"])
        for name, choices in (("kind", Result.Kind), ("origin", Result.Origin)):
            value = params.get(name)
            if value:
                if value not in choices.values:
                    raise ValidationError({name: f"unknown {name} {value!r}; expected one of {list(choices.values)}"})
                results = results.filter(**{name: value})
        protocol = params.get("protocol")
        if protocol:
            known = {name for name, _, _ in protocol_choices()} | {REPORTED}
            if protocol not in known:
                raise ValidationError({"protocol": f"unknown protocol {protocol!r}; expected one of {sorted(known)}"})
            results = results.filter(protocol="" if protocol == REPORTED else protocol)
        return results


class ReferenceViewSet(viewsets.ReadOnlyModelViewSet):
    """References in the page's order ([*], [+], [0]-[14], then outside papers), with their BibTeX."""

    queryset = Reference.objects.all()
    serializer_class = api_serializers.ReferenceSerializer
    lookup_field = "key"
    lookup_value_regex = r"[^/]+"


ENDPOINTS = [
    ("GET", "/api/task-families/", "all task families"),
    ("GET", "/api/datasets/", "all datasets, with their metric"),
    ("GET", "/api/datasets/{slug}/", "one dataset with its public results, ranked"),
    ("GET", "/api/results/?dataset=&kind=&origin=&protocol=", "public results, filterable"),
    ("GET", "/api/references/", "references with their BibTeX"),
    ("GET", "/api/schema/", "the OpenAPI 3 schema (YAML; ?format=json for JSON)"),
]


def api_docs(request):
    """A plain page listing the endpoints: Swagger UI / Redoc would need a CDN, this works offline."""
    return render(request, "api/docs.html", {"endpoints": ENDPOINTS})
