from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "leaderboard.accounts"

    def ready(self):
        from django.contrib import admin

        from .forms import ThrottledAdminAuthenticationForm

        admin.site.login_form = ThrottledAdminAuthenticationForm   # the admin's log-in counts failures too
