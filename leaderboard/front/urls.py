from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("overview/", views.overview, name="overview"),
    path("datasets/<slug:slug>/", views.dataset_detail, name="dataset-detail"),
    path("datasets/<slug:slug>.csv", views.dataset_csv, name="dataset-csv"),
    path("datasets/<slug:slug>.json", views.dataset_json, name="dataset-json"),
    path("references/", views.reference_list, name="reference-list"),
    path("references.bib", views.reference_bib, name="reference-bib"),
    path("installation/", views.installation, name="installation"),
]
