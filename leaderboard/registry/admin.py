"""Admin for the whole registry: search and filters where editors look for rows."""
from django.contrib import admin, messages

from .models import (
    Dataset,
    HistoricalDownload,
    LeaderboardEntry,
    LeaderboardVersion,
    Method,
    Metric,
    MissingCell,
    Reference,
    Result,
    TaskFamily,
)
from leaderboard.boards.services import publish_version


@admin.register(TaskFamily)
class TaskFamilyAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "order"]
    list_editable = ["order"]
    search_fields = ["name", "slug"]


@admin.register(Metric)
class MetricAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "higher_is_better", "unit", "engine_scale"]
    list_filter = ["higher_is_better"]
    search_fields = ["code", "name", "description"]


@admin.action(description="Publish a new leaderboard version of the selected datasets")
def publish_versions(modeladmin, request, queryset):
    for dataset in queryset:
        version = publish_version(dataset, user=request.user, note="published from the admin")
        messages.success(request, f"Published {version}.")


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "task_family", "metric", "engine_benchmark", "is_demo", "order"]
    list_filter = ["task_family", "metric", "is_demo"]
    search_fields = ["name", "slug", "protocol", "engine_benchmark"]
    list_select_related = ["task_family", "metric"]
    actions = [publish_versions]


@admin.register(Reference)
class ReferenceAdmin(admin.ModelAdmin):
    list_display = ["key", "page_key", "title", "year", "venue", "order"]
    list_filter = ["entry_type", "year"]
    search_fields = ["key", "page_key", "title", "authors", "venue", "bibtex"]


@admin.register(Method)
class MethodAdmin(admin.ModelAdmin):
    list_display = ["name", "reference"]
    search_fields = ["name", "description", "reference__key"]
    list_select_related = ["reference"]
    autocomplete_fields = ["reference"]


@admin.register(Result)
class ResultAdmin(admin.ModelAdmin):
    list_display = ["dataset", "method", "score", "metric", "kind", "confidence", "origin", "is_public", "reference"]
    list_filter = ["kind", "origin", "confidence", "is_public", "dataset__task_family", "dataset"]
    search_fields = ["method__name", "dataset__name", "dataset__slug", "reference__key", "source", "note"]
    list_select_related = ["dataset", "method", "metric", "reference"]
    autocomplete_fields = ["method", "reference", "owner"]
    readonly_fields = ["created_at"]


@admin.register(MissingCell)
class MissingCellAdmin(admin.ModelAdmin):
    list_display = ["what", "dataset", "reference", "kind", "reason"]
    list_filter = ["kind", "dataset"]
    search_fields = ["what", "reason", "dataset__name", "reference__key"]


class LeaderboardEntryInline(admin.TabularInline):
    model = LeaderboardEntry
    extra = 0
    can_delete = False
    fields = ["rank", "method_name", "score", "kind", "origin", "confidence", "reference_key"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(LeaderboardVersion)
class LeaderboardVersionAdmin(admin.ModelAdmin):
    """Published versions are frozen: readable here, never editable."""

    list_display = ["dataset", "number", "published_at", "published_by", "content_hash"]
    list_filter = ["dataset__task_family", "dataset"]
    search_fields = ["dataset__name", "dataset__slug", "note", "content_hash"]
    readonly_fields = ["dataset", "number", "published_at", "published_by", "note", "content_hash"]
    inlines = [LeaderboardEntryInline]

    def has_add_permission(self, request):
        return False


@admin.register(HistoricalDownload)
class HistoricalDownloadAdmin(admin.ModelAdmin):
    list_display = ["what", "size", "dataset"]
    list_filter = ["dataset"]
    search_fields = ["what"]
