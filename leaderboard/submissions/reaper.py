"""The schedule's one call: every job and extraction shard that lost its worker queued again (or failed after
its last attempt), what the broker lost sent again, what waited for the broker sent. Run by celery beat
(leaderboard/celery.py), by every worker's own timer and when a worker starts (workers/tasks.py), and by
`manage.py requeue_pending`. The rules are queue.py's (jobs) and shards.py's (shards)."""
from __future__ import annotations

from django.db import close_old_connections

from .queue import jobs_requeue_pending, jobs_requeue_stale, jobs_resend_lost_messages
from .shards import shards_requeue_stale, shards_send_pending


def requeue_jobs() -> dict[str, int]:
    """Lost jobs and shards queued again (or failed), lost messages sent again, then everything queued sent."""
    close_old_connections()
    requeued, failed = jobs_requeue_stale()
    shards_requeued, shards_failed = shards_requeue_stale()
    resent = jobs_resend_lost_messages()
    sent, waiting = jobs_requeue_pending()
    shards_sent = shards_send_pending()
    return {"requeued": requeued, "failed": failed, "resent": resent, "sent": sent, "waiting": waiting,
            "shards_requeued": shards_requeued, "shards_failed": shards_failed, "shards_sent": shards_sent}
