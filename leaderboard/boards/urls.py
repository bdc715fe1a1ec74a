from django.urls import path

from . import views

urlpatterns = [
    path("leaderboards/<slug:slug>/", views.leaderboard_versions, name="leaderboard-versions"),
    path("leaderboards/<slug:slug>/v<int:number>/", views.leaderboard_version, name="leaderboard-version"),
    path("leaderboards/<slug:slug>/diff/", views.leaderboard_diff, name="leaderboard-diff"),
    path("leaderboards/<slug:slug>/publish/", views.leaderboard_publish, name="leaderboard-publish"),
]
