from django.apps import AppConfig


class RegistryConfig(AppConfig):
    name = "leaderboard.registry"
    verbose_name = "Registry"
