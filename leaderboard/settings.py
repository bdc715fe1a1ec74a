"""Settings for Shelfmark, read from environment variables with working defaults.

SQLite in the project folder and a local Redis by default; PostgreSQL through DATABASE_URL.
"""
import contextlib
import os
import sys
from pathlib import Path

import dj_database_url

from .env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("SHELFMARK_VAR_DIR", str(BASE_DIR / "var")))

SECRET_KEY = env_str("SECRET_KEY", "dev-only-insecure-key-change-me-in-production")
# Off unless asked for (`./shelfmark up --dev` turns it on): a traceback never reaches a visitor.
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "leaderboard.registry",
    "leaderboard.front",
    "leaderboard.api",
    "leaderboard.accounts",
    "leaderboard.submissions",
    "leaderboard.boards",
    "leaderboard.insights",
    "leaderboard.contributions",
]

MIDDLEWARE = [
    "leaderboard.body_limit.RequestBodyLimitMiddleware",   # first: an oversized body is refused unread
    "django.middleware.security.SecurityMiddleware",
    "leaderboard.headers.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "leaderboard.pagecache.FrozenPageMiddleware",   # a stored permalink, served like a static file
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "leaderboard.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "site" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "leaderboard.wsgi.application"

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"), conn_max_age=60
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # The web process and the Celery worker share one SQLite file: WAL lets readers and one writer
    # overlap, and IMMEDIATE transactions wait (timeout) instead of failing with "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 30, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
    # Under pytest the test database is a file (one per test run), so a worker subprocess can open it.
    if "pytest" in sys.modules or env_str("SHELFMARK_TEST_DATABASE_NAME"):
        DATABASES["default"]["TEST"] = {
            "NAME": env_str("SHELFMARK_TEST_DATABASE_NAME", str(VAR_DIR / f"test-db-{os.getpid()}.sqlite3"))
        }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "site" / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "staticfiles")))
# whitenoise warns on every request when STATIC_ROOT is absent (before collectstatic)
with contextlib.suppress(OSError):
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# ---- static files (leaderboard/launch.py runs collectstatic) ----
# Once `collectstatic` has written a manifest (`./shelfmark up` does, with SHELFMARK_STATIC_MANIFEST on),
# pages name hashed, compressed copies that WhiteNoise serves with a ten-year immutable Cache-Control.
# Without one (DEBUG, the tests, a fresh checkout), plain names served from site/static.
SHELFMARK_STATIC_MANIFEST = env_bool(
    "SHELFMARK_STATIC_MANIFEST",
    not DEBUG and "pytest" not in sys.modules and (STATIC_ROOT / "staticfiles.json").exists(),
)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage" if SHELFMARK_STATIC_MANIFEST
                    else "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = not SHELFMARK_STATIC_MANIFEST  # serve from site/static without collectstatic

# ---- serving: security headers, HTTPS, caches, log-in limits ----
# Django's defaults, spelled out: nosniff, no referrer to other sites, no framing.
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Scripts from our own static files only (no inline script anywhere). Styles too, except that plotly.js
# sets style attributes on the chart elements it draws and inserts <style> elements (as does DRF's
# browsable API), hence style-src 'unsafe-inline'; the favicon is a data: URL. Checked in Chromium:
# tests/site/test_csp_in_browser.py (with 'self' alone the overview's chart logs dozens of violations).
SHELFMARK_CSP = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'", "'unsafe-inline'"],
    "img-src": ["'self'", "data:"],
    "font-src": ["'self'"],
    "connect-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}
# SHELFMARK_HTTPS: the site is reached over HTTPS (directly, or through a proxy that sets
# X-Forwarded-Proto: https and strips it from clients): HSTS, cookies sent over HTTPS only.
SHELFMARK_HTTPS = env_bool("SHELFMARK_HTTPS", False)
if SHELFMARK_HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env_int("SHELFMARK_HSTS_SECONDS", 365 * 24 * 3600)
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
# One cache for every process of the site (gunicorn workers, Celery workers; it outlives restarts): pages
# (leaderboard/pagecache.py) and failed log-ins. Under pytest, one folder per test run, which the worker
# processes the tests start inherit.
if "pytest" in sys.modules and not env_str("SHELFMARK_CACHE_DIR"):
    os.environ["SHELFMARK_CACHE_DIR"] = str(VAR_DIR / f"test-cache-{os.getpid()}")
SHELFMARK_CACHE_DIR = Path(env_str("SHELFMARK_CACHE_DIR", str(VAR_DIR / "cache")))
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": str(SHELFMARK_CACHE_DIR),
        "OPTIONS": {"MAX_ENTRIES": env_int("SHELFMARK_CACHE_MAX_ENTRIES", 20000)},
    },
    # Failed log-ins apart from the pages: filling the page cache (any query string is a new page) culls
    # entries at random, and must never wipe the counters.
    "login-failures": {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": str(SHELFMARK_CACHE_DIR / "login-failures"),
        "OPTIONS": {"MAX_ENTRIES": 1_000_000},
    },
}
# Live pages (home, dataset boards) as anonymous visitors see them, until the data under them changes.
SHELFMARK_PAGE_CACHE = env_bool("SHELFMARK_PAGE_CACHE", not DEBUG)
SHELFMARK_PAGE_CACHE_SECONDS = env_int("SHELFMARK_PAGE_CACHE_SECONDS", 24 * 3600)
# Log-in: at most this many failures per username, and per client address, within the window; behind a
# reverse proxy, SHELFMARK_CLIENT_IP_HEADER names the header with the client's address (HTTP_X_FORWARDED_FOR).
SHELFMARK_LOGIN_WINDOW_S = env_int("SHELFMARK_LOGIN_WINDOW_S", 15 * 60)
SHELFMARK_LOGIN_FAILURES_PER_USERNAME = env_int("SHELFMARK_LOGIN_FAILURES_PER_USERNAME", 5)
SHELFMARK_LOGIN_FAILURES_PER_IP = env_int("SHELFMARK_LOGIN_FAILURES_PER_IP", 20)
# Given as the HTTP header (X-Forwarded-For) or as its WSGI name (HTTP_X_FORWARDED_FOR): the WSGI name.
SHELFMARK_CLIENT_IP_HEADER = env_str("SHELFMARK_CLIENT_IP_HEADER", "").strip().upper().replace("-", "_")
if SHELFMARK_CLIENT_IP_HEADER and not SHELFMARK_CLIENT_IP_HEADER.startswith("HTTP_") \
        and SHELFMARK_CLIENT_IP_HEADER != "REMOTE_ADDR":
    SHELFMARK_CLIENT_IP_HEADER = "HTTP_" + SHELFMARK_CLIENT_IP_HEADER

MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "media/"

# Uploads: anything above this stays on disk while Django reads it (never wholly in memory).
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
SHELFMARK_MAX_UPLOAD_BYTES = env_int("SHELFMARK_MAX_UPLOAD_BYTES", 2 * 1024**3)

# Where the engine finds datasets (NAME=ROOT pairs, comma separated) and keeps its feature cache.
SHELFMARK_DATA_ROOTS = env_str("SHELFMARK_DATA_ROOTS", "")
SHELFMARK_FEATURE_CACHE = Path(env_str("SHELFMARK_FEATURE_CACHE", str(VAR_DIR / "features")))
# Decoded, resized images (workers/prepared.py), shared by every later model with the same resize; "" = none.
# Large: ~150 KB per image at 256 px (ImageNet-1k: ~200 GB), on a disk the workers share.
SHELFMARK_PREPARED_DIR = env_str("SHELFMARK_PREPARED_DIR", str(VAR_DIR / "prepared"))

# JPEG decoding in the workers: auto | pil | gpu (batched nvjpeg on CUDA; see workers/extract.py).
SHELFMARK_DECODE = env_str("SHELFMARK_DECODE", "auto")
# A job whose benchmark has more images to extract than this runs its extraction as shards of this many
# images, one task each, on every worker of its queue (workers/shards.py); 0 = never shard.
SHELFMARK_SHARD_SIZE = env_int("SHELFMARK_SHARD_SIZE", 10_000)
# How the protocols are solved (workers/accelerated.py): auto (batched torch on a GPU worker, scikit-learn on a
# CPU worker), sklearn (the reference, everywhere: every result comparable to the digit), or torch.
SHELFMARK_SOLVER = env_str("SHELFMARK_SOLVER", "auto")
# Models by Hub id: the Hugging Face cache web and workers share (configs and safetensors only), and a
# token for gated or private repositories. HF_HUB_OFFLINE=1 makes them use the cache alone.
SHELFMARK_HF_CACHE = Path(env_str("SHELFMARK_HF_CACHE", env_str("HF_HUB_CACHE", str(VAR_DIR / "hf-cache"))))
SHELFMARK_HF_TOKEN = env_str("SHELFMARK_HF_TOKEN", env_str("HF_TOKEN", "")) or None

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
# No result backend: job state lives in the database (EvaluationJob), and a backend that is down would
# make sending a job wait and fail (it reconnects before send_task returns).
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", "") or None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("SHELFMARK_JOB_SOFT_TIME_LIMIT", 6 * 3600)
CELERY_TASK_TIME_LIMIT = env_int("SHELFMARK_JOB_TIME_LIMIT", 6 * 3600 + 300)
# The visibility timeout only bounds how late the broker redelivers a message whose worker vanished; the
# heartbeat below finds such jobs within minutes. A dead broker answers the web within 2 s.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("SHELFMARK_VISIBILITY_TIMEOUT", 7 * 3600),
                                   "socket_connect_timeout": 2}
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# Queues: CPU workers consume SHELFMARK_CPU_QUEUE, GPU workers SHELFMARK_GPU_QUEUE. New jobs go to the
# GPU queue when SHELFMARK_GPU_WORKER is on: set it for *every* process (the web chooses the queue).
SHELFMARK_CPU_QUEUE = env_str("SHELFMARK_CPU_QUEUE", "cpu")
SHELFMARK_GPU_QUEUE = env_str("SHELFMARK_GPU_QUEUE", "gpu")
SHELFMARK_GPU_WORKER = env_bool("SHELFMARK_GPU_WORKER", False)
CELERY_TASK_DEFAULT_QUEUE = SHELFMARK_CPU_QUEUE
# ---- no job stuck or lost (leaderboard/submissions/queue.py) ----
# Celery beat runs the requeue this often (leaderboard/celery.py): jobs the broker never took (it was down)
# are sent, and running jobs whose heartbeat is older than SHELFMARK_HEARTBEAT_TIMEOUT_S (their worker's
# process was killed, the machine is gone) are queued again, up to SHELFMARK_JOB_MAX_ATTEMPTS attempts.
SHELFMARK_REQUEUE_INTERVAL_S = env_int("SHELFMARK_REQUEUE_INTERVAL_S", 30)
SHELFMARK_HEARTBEAT_INTERVAL_S = env_int("SHELFMARK_HEARTBEAT_INTERVAL_S", 10)
SHELFMARK_HEARTBEAT_TIMEOUT_S = env_int("SHELFMARK_HEARTBEAT_TIMEOUT_S", 120)
SHELFMARK_JOB_MAX_ATTEMPTS = env_int("SHELFMARK_JOB_MAX_ATTEMPTS", 3)
# ---- fair use (staff are exempt; 0 = no limit) ----
SHELFMARK_SUBMISSIONS_PER_DAY = env_int("SHELFMARK_SUBMISSIONS_PER_DAY", 20)
SHELFMARK_JOBS_AT_ONCE = env_int("SHELFMARK_JOBS_AT_ONCE", 10)
# the same form sent again (same user, model, file and benchmarks) within this many seconds is not a new one
SHELFMARK_DUPLICATE_WINDOW_S = env_int("SHELFMARK_DUPLICATE_WINDOW_S", 600)

# ---- email (leaderboard/insights/notifications.py: evaluations finished, contributions reviewed) ----
# The console backend in development (DEBUG), else SMTP from these variables; EMAIL_BACKEND overrides both.
# A mail server that is down or slow costs a logged warning (at most EMAIL_TIMEOUT s), never a job.
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend" if DEBUG
                        else "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Shelfmark <shelfmark@localhost>")
SERVER_EMAIL = env_str("SERVER_EMAIL", DEFAULT_FROM_EMAIL)
# The site's public address, for links where no request is at hand (emails) or where the page must be the
# same bytes whatever host it was asked under (a frozen version's citation).
SHELFMARK_SITE_URL = env_str(
    "SHELFMARK_SITE_URL", f"http://{env_str('SHELFMARK_HOST', '127.0.0.1')}:{env_str('SHELFMARK_PORT', '8000')}"
).rstrip("/")

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 200,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Shelfmark API",
    "DESCRIPTION": "Read-only access to the task families, datasets, results and references of Shelfmark.",
    "VERSION": "1.0.0",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
