from django.urls import path

from . import views

urlpatterns = [
    path("submissions/", views.submission_list, name="submission-list"),
    path("submissions/new/", views.submission_new, name="submission-new"),
    path("submissions/models.json", views.model_names, name="model-names"),
    path("submissions/model-preview.json", views.model_preview, name="model-preview"),
    path("submissions/<int:pk>/", views.submission_detail, name="submission-detail"),
    path("submissions/<int:pk>/status.json", views.submission_status, name="submission-status"),
    path("submissions/<int:pk>/make-public/", views.submission_make_public, name="submission-make-public"),
    path("jobs/<int:pk>/cancel/", views.job_cancel, name="job-cancel"),
    path("jobs/<int:pk>/bundle.zip", views.job_bundle, name="job-bundle"),
    path("results/<int:pk>/bundle.zip", views.result_bundle, name="result-bundle"),
    path("submissions/<int:pk>/protocols/", views.submission_add_protocols, name="submission-add-protocols"),
    path("downloads/", views.downloads, name="downloads"),
    path("status/", views.queue_status, name="queue-status"),
]
