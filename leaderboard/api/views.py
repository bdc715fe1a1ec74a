"""The read-only JSON API, and a server-rendered page documenting it (works offline, no CDN)."""
from django.conf import settings
from django.http import JsonResponse
from django.shortcuts import render
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from drf_spectacular.views import SpectacularAPIView
from rest_framework import viewsets
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.renderers import JSONRenderer

from leaderboard.boards.selectors import REPORTED, board_rows, public_results
from leaderboard.engine import protocol_choices
from leaderboard.registry.models import Dataset, Reference, Result, TaskFamily
from leaderboard.submissions.queue_selectors import status_summary

from . import params
from . import serializers as api_serializers
from .openapi import ApiSchema
from .pagination import BoundedLimitOffsetPagination

SLUG = params.SLUG_CHARACTERS + "+"


class PublicReadOnlyViewSet(viewsets.ReadOnlyModelViewSet):
    """What every endpoint of the API shares: anonymous (no credential is read, so none can be refused with
    a 401/403), bounded pages, and a schema that lists the errors it can answer."""

    authentication_classes = ()
    pagination_class = BoundedLimitOffsetPagination
    schema = ApiSchema()


class TaskFamilyViewSet(PublicReadOnlyViewSet):
    """Task families (object classification, scene recognition, ...), in the page's order."""

    queryset = TaskFamily.objects.all()
    serializer_class = api_serializers.TaskFamilySerializer
    lookup_field = "slug"
    lookup_value_regex = SLUG


class DatasetViewSet(PublicReadOnlyViewSet):
    """Datasets (benchmarks) with their metric; one dataset includes its public results, ranked."""

    queryset = Dataset.objects.select_related("task_family", "metric")
    lookup_field = "slug"
    lookup_value_regex = SLUG

    def get_serializer_class(self):
        if self.action == "retrieve":
            return api_serializers.DatasetDetailSerializer
        return api_serializers.DatasetSerializer

    def get_serializer_context(self):
        context = super().get_serializer_context()
        if self.action == "retrieve" and self.kwargs.get("slug"):
            context["board_rows"] = board_rows(self.get_object())
        return context


def protocol_names() -> list[str]:
    return sorted({name for name, _, _ in protocol_choices()} | {REPORTED})


# An empty value is no filter, as the docs page's form sends it (?dataset=&kind=).
RESULT_FILTERS = [
    OpenApiParameter("dataset", str, pattern=params.SLUG_OR_EMPTY, description="dataset slug, e.g. voc2007_cls"),
    OpenApiParameter("kind", str, enum=["", *Result.Kind.values]),
    OpenApiParameter("origin", str, enum=["", *Result.Origin.values]),
    OpenApiParameter("protocol", str, enum=["", *protocol_names()],
                     description="the protocol Shelfmark measured with, or reported (numbers from papers)"),
]


@extend_schema_view(list=extend_schema(parameters=RESULT_FILTERS))
class ResultViewSet(PublicReadOnlyViewSet):
    """Public results (reported and evaluated), filterable by dataset, kind, origin and protocol."""

    serializer_class = api_serializers.ResultSerializer

    def get_queryset(self):
        results = public_results().order_by("dataset__task_family__order", "dataset__order", "-score", "pk")
        if self.action != "list":
            return results
        request = self.request
        if dataset := params.slug(request, "dataset"):
            results = results.filter(dataset__slug=dataset)
        if kind := params.choice(request, "kind", Result.Kind.values):
            results = results.filter(kind=kind)
        if origin := params.choice(request, "origin", Result.Origin.values):
            results = results.filter(origin=origin)
        if protocol := params.choice(request, "protocol", protocol_names()):
            results = results.filter(protocol="" if protocol == REPORTED else protocol)
        return results


class ReferenceViewSet(PublicReadOnlyViewSet):
    """References in the page's order ([*], [+], [0]-[14], then outside papers), with their BibTeX."""

    queryset = Reference.objects.all()
    serializer_class = api_serializers.ReferenceSerializer
    lookup_field = "key"
    # BibTeX keys may hold dots and colons; never a control character (PostgreSQL refuses NUL in a query).
    lookup_value_regex = r"[^/\x00-\x1f\x7f]+"


SCHEMA_FORMATS = ["json", "yaml"]
LANGUAGES = list(dict(settings.LANGUAGES))


class SchemaView(SpectacularAPIView):
    """drf-spectacular's schema view, with ?format= and ?lang= checked like the API's parameters (a 400,
    where DRF answered 404 to an unknown format and drf-spectacular ignored an unknown language), and its
    errors in JSON: the YAML renderer writes an error's message as a {string, code} mapping."""

    authentication_classes = ()
    schema = ApiSchema()

    @extend_schema(responses={200: OpenApiTypes.OBJECT}, parameters=[
        OpenApiParameter("format", str, enum=["", *SCHEMA_FORMATS], description="json, or yaml (the default)"),
        OpenApiParameter("lang", str, enum=["", *LANGUAGES], description="the language of the descriptions"),
    ])
    def get(self, request, *args, **kwargs):
        params.choice(request, "lang", LANGUAGES)
        return super().get(request, *args, **kwargs)

    def perform_content_negotiation(self, request, force=False):
        if not force:
            params.choice(request, "format", SCHEMA_FORMATS)
        return super().perform_content_negotiation(request, force)

    def handle_exception(self, exc):
        self.request.accepted_renderer, self.request.accepted_media_type = JSONRenderer(), JSONRenderer.media_type
        return super().handle_exception(exc)


class QueueStatusView(APIView):
    """The job queue as the /status/ page shows it, for an anonymous client: workers online (name, queues,
    GPU or CPU, current job), each queue's length, and each waiting job's place and ETA. Private submissions
    are named "a private submission"."""

    authentication_classes = ()
    schema = ApiSchema()

    @extend_schema(responses={200: api_serializers.QueueStatusSerializer})
    def get(self, request):
        response = Response(api_serializers.QueueStatusSerializer(status_summary(request.user)).data)
        response["Cache-Control"] = "no-store"
        return response


ENDPOINTS = [
    ("GET", "/api/task-families/", "all task families"),
    ("GET", "/api/datasets/", "all datasets, with their metric"),
    ("GET", "/api/datasets/{slug}/", "one dataset with its public results, ranked"),
    ("GET", "/api/results/?dataset=&kind=&origin=&protocol=", "public results, filterable"),
    ("GET", "/api/references/", "references with their BibTeX"),
    ("GET", "/api/status/", "the job queue: workers online, queue lengths, each waiting job's place and ETA"),
    ("GET", "/api/schema/", "the OpenAPI 3 schema (YAML; ?format=json for JSON)"),
]


def not_found(request, path):
    """Any other URL under /api/ answers the API's JSON 404, not the site's HTML page."""
    return JsonResponse({"detail": "Not found."}, status=404)


def api_docs(request):
    """A plain page listing the endpoints: Swagger UI / Redoc would need a CDN, this works offline."""
    return render(request, "api/docs.html", {"endpoints": ENDPOINTS})
