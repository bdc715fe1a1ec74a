"""Server time of the browsing pages with the snapshot loaded (Django test client, no network).

    python bench/pages.py [--requests 20]

Uses a throw-away SQLite file, so the development database is left alone. Prints the median and
the worst time of each page and its number of SQL queries.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["/", "/datasets/voc2007_cls/", "/references/", "/overview/", "/api/results/"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()

    database = Path(tempfile.mkdtemp()) / "bench.sqlite3"
    os.environ["DATABASE_URL"] = f"sqlite:///{database}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard.settings")
    os.environ["DEBUG"] = "false"
    sys.path.insert(0, str(ROOT))

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, setup_test_environment

    setup_test_environment()  # allows the test client's "testserver" host
    call_command("migrate", verbosity=0)
    call_command("load_snapshot", verbosity=0)

    client = Client()
    print(f"{'page':28} {'median ms':>10} {'max ms':>8} {'queries':>8}  ({args.requests} requests each)")
    for page in PAGES:
        client.get(page)  # warm templates and caches
        timings = []
        for _ in range(args.requests):
            started = time.perf_counter()
            response = client.get(page)
            timings.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (page, response.status_code)
        with CaptureQueriesContext(connection) as queries:
            client.get(page)
        print(f"{page:28} {statistics.median(timings):10.1f} {max(timings):8.1f} {len(queries):8d}")
    database.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
