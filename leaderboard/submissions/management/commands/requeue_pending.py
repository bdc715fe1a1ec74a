"""Re-send queued jobs that the broker never took. Celery beat does this every SHELFMARK_REQUEUE_INTERVAL_S;
this command does it now (after a broker outage, or where no beat runs)."""
from django.core.management.base import BaseCommand

from leaderboard.submissions.services import jobs_requeue_pending


class Command(BaseCommand):
    help = "Send queued jobs that are still waiting for the broker."

    def handle(self, *args, **options):
        sent, waiting = jobs_requeue_pending()
        self.stdout.write(f"sent {sent} job(s); {waiting} still waiting for the broker")
