"""Re-run evaluation jobs (staff): a new job each, the earlier result kept in the history."""
from django.core.management.base import BaseCommand, CommandError

from leaderboard.submissions import services
from leaderboard.submissions.models import EvaluationJob


class Command(BaseCommand):
    help = "Queue a re-run of each JOB id; the earlier job and its results stay."

    def add_arguments(self, parser):
        parser.add_argument("jobs", nargs="+", type=int, metavar="JOB")
        parser.add_argument("--fresh", action="store_true", help="extract the features again (skip the cache)")

    def handle(self, *args, **opts):
        found = {job.pk: job for job in EvaluationJob.objects.filter(pk__in=opts["jobs"]).select_related(
            "submission", "dataset")}
        missing = [str(pk) for pk in opts["jobs"] if pk not in found]
        if missing:
            raise CommandError(f"no job {', '.join(missing)}")
        for pk in opts["jobs"]:
            rerun = services.job_rerun(found[pk], fresh=opts["fresh"])
            self.stdout.write(f"job {pk}: re-run queued as job {rerun.pk} on '{rerun.queue}'")
