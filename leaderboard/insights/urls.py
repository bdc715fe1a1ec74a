from django.urls import path

from . import views
from .feeds import VersionsFeed

urlpatterns = [
    path("models/<int:pk>/", views.model_detail, name="model-detail"),
    path("reproductions/", views.reproduction_create, name="reproduction-create"),
    path("reproductions/<int:pk>/delete/", views.reproduction_delete, name="reproduction-delete"),
    path("feeds/versions.atom", VersionsFeed(), name="versions-feed"),
    path("leaderboards/<slug:slug>/v<int:number>/cite.bib", views.version_cite_bib, name="version-cite-bib"),
]
