"""Re-send queued jobs that the broker never took (run it from cron, or after a broker outage)."""
from django.core.management.base import BaseCommand

from leaderboard.submissions.services import jobs_requeue_pending


class Command(BaseCommand):
    help = "Send queued jobs that are still waiting for the broker."

    def handle(self, *args, **options):
        sent, waiting = jobs_requeue_pending()
        self.stdout.write(f"sent {sent} job(s); {waiting} still waiting for the broker")
