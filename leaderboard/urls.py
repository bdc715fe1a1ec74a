from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("leaderboard.api.urls")),
    path("accounts/", include("leaderboard.accounts.urls")),
    path("", include("leaderboard.insights.urls")),
    path("", include("leaderboard.contributions.urls")),
    path("", include("leaderboard.submissions.urls")),
    path("", include("leaderboard.boards.urls")),
    path("", include("leaderboard.front.urls")),
]
