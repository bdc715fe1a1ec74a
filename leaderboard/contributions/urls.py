from django.urls import path

from . import views

urlpatterns = [
    path("contributions/new/", views.proposal_new, name="proposal-new"),
    path("contributions/batch/", views.proposal_batch, name="proposal-batch"),
    path("contributions/mine/", views.proposal_mine, name="proposal-mine"),
    path("contributions/review/", views.proposal_queue, name="proposal-queue"),
    path("contributions/<int:pk>/", views.proposal_detail, name="proposal-detail"),
    path("contributions/<int:pk>/edit/", views.proposal_edit, name="proposal-edit"),
    path("contributions/<int:pk>/review/", views.proposal_review, name="proposal-review"),
    path("results/<int:pk>/", views.result_detail, name="result-detail"),
]
