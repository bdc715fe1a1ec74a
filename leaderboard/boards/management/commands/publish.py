"""Freeze a benchmark's live board into its next version and print the permalink path."""
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.http import Http404

from leaderboard.boards.selectors import dataset_or_404
from leaderboard.boards.services import publish_version


class Command(BaseCommand):
    help = "Publish the live board of BENCHMARK (dataset slug or engine benchmark) as a new immutable version."

    def add_arguments(self, parser):
        parser.add_argument("benchmark")
        parser.add_argument("--note", default="")
        parser.add_argument("--user", help="staff username recorded as the publisher")

    def handle(self, *args, **opts):
        try:
            dataset = dataset_or_404(opts["benchmark"])
        except Http404:
            raise CommandError(f"no benchmark {opts['benchmark']!r}") from None
        user = None
        if opts["user"]:
            user = get_user_model().objects.filter(username=opts["user"]).first()
            if user is None:
                raise CommandError(f"no user named {opts['user']!r}")
        version = publish_version(dataset, user=user, note=opts["note"])
        self.stdout.write(version.get_absolute_url())
