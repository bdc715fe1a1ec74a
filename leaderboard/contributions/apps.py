from django.apps import AppConfig


class ContributionsConfig(AppConfig):
    name = "leaderboard.contributions"
    verbose_name = "contributed results"
