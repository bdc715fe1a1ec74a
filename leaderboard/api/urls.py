from django.urls import include, path, re_path
from rest_framework.routers import DefaultRouter

from . import views

router = DefaultRouter()
router.register("task-families", views.TaskFamilyViewSet, basename="api-task-family")
router.register("datasets", views.DatasetViewSet, basename="api-dataset")
router.register("results", views.ResultViewSet, basename="api-result")
router.register("references", views.ReferenceViewSet, basename="api-reference")

urlpatterns = [
    path("schema/", views.SchemaView.as_view(), name="api-schema"),
    path("docs/", views.api_docs, name="api-docs"),
    path("status/", views.QueueStatusView.as_view(), name="api-status"),
    path("", include(router.urls)),
    # Last: a URL nothing above matched (any character, newlines too). Only with a trailing slash, so that
    # APPEND_SLASH still redirects /api/results to /api/results/.
    re_path(r"^(?P<path>[\s\S]*)/\Z", views.not_found),   # [\s\S], not (?s): reverse() must parse it
]
