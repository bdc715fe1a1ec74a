"""Queue again the jobs whose worker died and send those the broker never took, now. Celery beat and
every worker do this every SHELFMARK_REQUEUE_INTERVAL_S; the command is for where neither runs."""
from django.core.management.base import BaseCommand

from leaderboard.submissions.reaper import requeue_jobs


class Command(BaseCommand):
    help = "Requeue jobs whose worker died, and send queued jobs still waiting for the broker."

    def handle(self, *args, **options):
        outcome = requeue_jobs()
        self.stdout.write(f"{outcome['requeued']} lost job(s) queued again, {outcome['failed']} failed after "
                          f"their last attempt; {outcome['resent']} whose message the broker lost sent again; sent "
                          f"{outcome['sent']} job(s), {outcome['waiting']} still waiting for the broker")
