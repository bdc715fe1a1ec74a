"""`python manage.py load_snapshot [--dir fixtures/snapshot]`: load the 2014 snapshot, idempotently."""
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from leaderboard.registry.snapshot import SnapshotError, load_snapshot


class Command(BaseCommand):
    help = "Load fixtures/snapshot (snapshot.yaml, references.bib, benchmarks.yaml) into the registry."

    def add_arguments(self, parser):
        parser.add_argument(
            "--dir", default=str(Path(settings.BASE_DIR) / "fixtures" / "snapshot"),
            help="folder holding snapshot.yaml and references.bib (default: fixtures/snapshot)",
        )

    def handle(self, *args, **options):
        try:
            report = load_snapshot(Path(options["dir"]))
        except SnapshotError as error:
            raise CommandError(f"snapshot not loaded, nothing written: {error}") from error
        if report.changed_anything:
            self.stdout.write(self.style.SUCCESS(f"Snapshot loaded: {report.summary()}."))
        else:
            self.stdout.write("Snapshot already up to date: nothing changed.")
