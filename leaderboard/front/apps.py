from django.apps import AppConfig


class FrontConfig(AppConfig):
    name = "leaderboard.front"

    def ready(self):
        from django.core.signals import setting_changed
        from django.db.backends.signals import connection_created
        from django.db.models.signals import post_migrate

        from leaderboard import pagecache

        # Cached pages follow the data: every process watches its writes (pagecache.watch_writes).
        connection_created.connect(pagecache.watch_writes, dispatch_uid="pagecache-watch-writes")
        post_migrate.connect(pagecache.data_changed, dispatch_uid="pagecache-after-migrate")
        setting_changed.connect(pagecache.data_changed, dispatch_uid="pagecache-setting-changed")  # tests
