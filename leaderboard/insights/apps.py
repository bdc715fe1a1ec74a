from django.apps import AppConfig


class InsightsConfig(AppConfig):
    name = "leaderboard.insights"
    label = "insights"
    verbose_name = "Insights: reported beside measured, progress, notifications"
