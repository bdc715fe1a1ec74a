"""Score finished submissions with protocols they have not run, or ran at an older version, from the
feature cache: one new job per submission and benchmark (`services.submission_add_protocols`)."""
from django.core.management.base import BaseCommand, CommandError

from leaderboard import engine
from leaderboard.submissions import services
from leaderboard.submissions.models import EvaluationJob, Submission


class Command(BaseCommand):
    help = "Queue jobs scoring cached features with missing or outdated protocols (default: every protocol)."

    def add_arguments(self, parser):
        parser.add_argument("--protocol", action="append", default=[], dest="protocols",
                            help="a protocol (repeatable); default: all a benchmark offers")
        parser.add_argument("--benchmark", help="only the submissions evaluated on this engine benchmark")

    def handle(self, *args, **opts):
        protocols = opts["protocols"] or [name for name, _, _ in engine.protocol_choices()]
        done = EvaluationJob.objects.filter(status=EvaluationJob.Status.DONE)
        benchmarks = None
        if opts["benchmark"]:
            if not engine.benchmark_kind(opts["benchmark"]):
                raise CommandError(f"unknown benchmark {opts['benchmark']!r}")
            done, benchmarks = done.filter(benchmark=opts["benchmark"]), [opts["benchmark"]]
        queued = 0
        try:
            for submission in Submission.objects.filter(pk__in=done.values("submission")).order_by("pk"):
                queued += len(services.submission_add_protocols(submission, protocols, benchmarks=benchmarks))
        except services.SubmissionRefused as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"queued {queued} job(s)")
