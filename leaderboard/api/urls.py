from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import DefaultRouter

from . import views

router = DefaultRouter()
router.register("task-families", views.TaskFamilyViewSet, basename="api-task-family")
router.register("datasets", views.DatasetViewSet, basename="api-dataset")
router.register("results", views.ResultViewSet, basename="api-result")
router.register("references", views.ReferenceViewSet, basename="api-reference")

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", views.api_docs, name="api-docs"),
    path("", include(router.urls)),
]
