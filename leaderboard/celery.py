"""The Celery application: `celery -A leaderboard worker` starts a worker, `celery -A leaderboard beat`
the scheduler (`./shelfmark up` runs it inside its worker with `-B`).

Configuration comes from Django's settings (CELERY_*); the tasks are the engine's (workers/tasks.py),
found by autodiscovery and scheduled by the names the engine's contract gives them.
"""
import os

from celery import Celery

from workers.contract import REQUEUE_JOBS_TASK

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard.settings")

app = Celery("leaderboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers"])


# every worker reports itself and runs the requeue from its main process (workers/tasks.py)
app.steps["worker"].add("workers.tasks:QueueWatch")


@app.on_after_configure.connect
def schedule_requeue(sender, **kwargs) -> None:
    """Beat queues again the jobs whose worker died and sends those that never reached the broker."""
    from django.conf import settings

    sender.add_periodic_task(float(settings.SHELFMARK_REQUEUE_INTERVAL_S), sender.signature(REQUEUE_JOBS_TASK),
                             name="requeue lost jobs and jobs waiting for the broker")
