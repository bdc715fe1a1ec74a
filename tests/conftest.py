"""Shared test set-up: the browser, users, and the digits demo board. Feature folders add their own
conftest.py (tests/site, tests/submissions, tests/workers)."""
import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"   # no test reaches the Hub: stand-ins live in local caches

CHROMIUM = Path("/usr/bin/chromium")
# Debian's chromium, as root, on a machine whose only network is the loopback.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture
def browser():
    """Headless Chromium through Playwright's sync API (never a downloaded browser build)."""
    if not CHROMIUM.exists():
        pytest.skip("needs Chromium at /usr/bin/chromium (apt install chromium)")
    # Playwright's sync API runs an event loop in this thread; Django's ORM would otherwise refuse to run.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def digits(db):
    """The registry rows a digits submission lands in, with version 0 published (as load_snapshot does)."""
    from leaderboard.registry.models import Dataset, Method, Metric, Result, TaskFamily
    from leaderboard.boards.services import publish_version

    family = TaskFamily.objects.create(slug="demo", name="Demo benchmarks", order=99)
    metric = Metric.objects.create(code="mean_class_accuracy", name="mean class accuracy", unit="%", engine_scale=100)
    dataset = Dataset.objects.create(slug="digits", name="Digits (demo)", task_family=family, metric=metric,
                                     engine_benchmark="digits", is_demo=True,
                                     protocol_version="shelfmark-protocols/1.0")
    baseline = Method.objects.create(name="Pixels + linear SVM (baseline)")
    Result.objects.create(dataset=dataset, method=baseline, score=90.0, metric=metric, kind=Result.Kind.NON_CNN,
                          origin=Result.Origin.REPORTED)
    publish_version(dataset, note="version 0")
    return dataset


@pytest.fixture
def make_user(db, django_user_model):
    def make(username: str, *, staff: bool = False, password: str = "a-long-test-password"):
        return django_user_model.objects.create_user(username=username, password=password, is_staff=staff)

    return make


@pytest.fixture(autouse=True)
def _empty_cache():
    """Each test starts with nothing cached: no page of another test's rows, no failed log-ins of another
    test. The cache is this run's own folder (settings: under pytest), shared with worker subprocesses."""
    from django.core.cache import caches

    for store in caches.all(initialized_only=False):
        store.clear()
    yield


@pytest.fixture(scope="session", autouse=True)
def _remove_the_runs_cache():
    yield
    import shutil

    from django.conf import settings

    if f"test-cache-{os.getpid()}" in str(settings.SHELFMARK_CACHE_DIR):
        shutil.rmtree(settings.SHELFMARK_CACHE_DIR, ignore_errors=True)
