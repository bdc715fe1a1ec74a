"""The Celery application: `celery -A leaderboard worker` starts a worker, `celery -A leaderboard beat`
the scheduler (`./shelfmark up` runs it inside its worker with `-B`).

Configuration comes from Django's settings (CELERY_*); the tasks are the engine's (workers/tasks.py),
found by autodiscovery and scheduled by the names the engine's contract gives them.
"""
import os

from celery import Celery

from workers.contract import REQUEUE_PENDING_TASK

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard.settings")

app = Celery("leaderboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers"])


@app.on_after_configure.connect
def schedule_requeue(sender, **kwargs) -> None:
    """Beat re-sends jobs that never reached the broker (it was down when they were submitted)."""
    from django.conf import settings

    sender.add_periodic_task(float(settings.SHELFMARK_REQUEUE_INTERVAL_S), sender.signature(REQUEUE_PENDING_TASK),
                             name="requeue jobs waiting for the broker")
