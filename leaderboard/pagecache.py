"""Rendered pages kept in Django's cache, which every web and worker process of the site shares (files
under the var dir, see settings: CACHES), so it outlives restarts and is the same for every gunicorn worker.

- A frozen version's permalink (`frozen_page`) is rendered once and its bytes served ever after, by
  `FrozenPageMiddleware` before sessions, CSRF and authentication run (the page is the same for everybody
  and carries nothing personal), without a query: close to what a static file costs.
- Live pages (`cache_for_visitors`: home, a dataset's board) are kept as an anonymous visitor sees them,
  under the *data version*: a token replaced whenever a row of the registry or the boards is written, by
  any process. Writes are seen at the database cursor (`watch_writes`), so queryset `update()`,
  `bulk_create()` and raw SQL count as much as `save()`; the token changes when the statement runs and
  again when its transaction commits, so a page rendered in between is never kept.
- Frozen pages are kept under a token of their own, replaced only by writes to the tables that decide
  what a permalink shows (datasets, versions, their entries): publishing, or removing a version. Results
  change every day; published versions do not.
"""
from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable
from functools import cache, lru_cache, wraps
from pathlib import Path

from django.apps import apps
from django.conf import settings
from django.contrib.messages import get_messages
from django.contrib.staticfiles.storage import staticfiles_storage
from django.core.cache import cache as page_store
from django.db import connections, transaction
from django.http import HttpResponse, HttpResponseNotModified
from django.urls import Resolver404, resolve
from django.utils.http import parse_etags

# The apps whose tables the cached pages are read from.
WATCHED_APPS = ("registry", "boards", "insights")
# The models whose rows decide what a frozen version's permalink shows.
FROZEN_MODELS = ("registry.Dataset", "registry.LeaderboardVersion", "registry.LeaderboardEntry")
# The table a write statement changes (Django's quoting, or none in hand-written SQL).
WRITE_STATEMENT = re.compile(
    r'\s*(?:INSERT\s+(?:OR\s+\w+\s+)?INTO|UPDATE|DELETE\s+FROM|REPLACE\s+INTO)\s+["`]?(\w+)', re.IGNORECASE
)
DATA, FROZEN = "data-version", "frozen-version"
IMMUTABLE = "public, max-age=31536000, immutable"
PERMALINK = "leaderboard-version"   # the URL name of a version's permalink


def enabled() -> bool:
    return settings.SHELFMARK_PAGE_CACHE


def _database() -> str:
    """Which database the pages come from: two sites (or a test run) sharing a cache folder never mix."""
    params = connections["default"].settings_dict
    return _identity(params["ENGINE"], str(params.get("NAME") or ""), str(params.get("HOST") or ""),
                     str(params.get("PORT") or ""))


@lru_cache(maxsize=8)
def _identity(engine: str, name: str, host: str, port: str) -> str:
    if engine.endswith("sqlite3") and name and not name.startswith(("file:", ":memory:")):
        name = str(Path(name).resolve())
    return hashlib.sha256("|".join((engine, name, host, port)).encode()).hexdigest()[:16]


def _token(kind: str) -> str:
    """The token the pages of this kind are kept under; a new one when their data changes (or it was culled)."""
    key = f"{kind}:{_database()}"
    token = page_store.get(key)
    if token is None:
        token = uuid.uuid4().hex
        if not page_store.add(key, token, timeout=None):
            token = page_store.get(key) or token
    return token


def data_version() -> str:
    return _token(DATA)


def _replace(*kinds: str) -> None:
    page_store.set_many({f"{kind}:{_database()}": uuid.uuid4().hex for kind in kinds}, timeout=None)


def data_changed(**_) -> None:
    """New tokens: every page, live or frozen, is rendered afresh on its next request (after a migration,
    a settings change in the tests)."""
    _replace(DATA, FROZEN)


def _data_changed_after_commit() -> None:
    _replace(DATA)


def _frozen_changed_after_commit() -> None:
    _replace(DATA, FROZEN)


@cache
def _watched_tables() -> frozenset[str]:
    return frozenset(model._meta.db_table for label in WATCHED_APPS
                     for model in apps.get_app_config(label).get_models(include_auto_created=True))


@cache
def _frozen_tables() -> frozenset[str]:
    return frozenset(apps.get_model(label)._meta.db_table for label in FROZEN_MODELS)


def _written_tables(sql) -> frozenset[str]:
    """The watched tables a statement writes (all of them for a TRUNCATE)."""
    if not isinstance(sql, str):
        return frozenset()
    match = WRITE_STATEMENT.match(sql)
    if match:
        return _watched_tables() & {match.group(1)}
    return _watched_tables() if sql.lstrip()[:8].upper() == "TRUNCATE" else frozenset()


def _watch(execute, sql, params, many, context):
    result = execute(sql, params, many, context)
    written = _written_tables(sql)
    if written:
        frozen = bool(written & _frozen_tables())
        if frozen:
            _replace(DATA, FROZEN)
        else:
            _replace(DATA)
        # Again once the transaction commits: a page rendered from the old rows in the meantime is dropped.
        connection = context["connection"]
        after_commit = _frozen_changed_after_commit if frozen else _data_changed_after_commit
        if connection.in_atomic_block and not any(entry[1] is after_commit for entry in connection.run_on_commit):
            transaction.on_commit(after_commit, using=connection.alias, robust=True)
    return result


def watch_writes(connection, **_) -> None:
    """`connection_created` receiver: watch the statements of every new database connection."""
    if _watch not in connection.execute_wrappers:
        connection.execute_wrappers.append(_watch)


def _has_messages(request) -> bool:
    return hasattr(request, "_messages") and len(get_messages(request)) > 0


def cache_for_visitors(*params: str):
    """Keep a page as anonymous visitors see it, per data version; `params` are the query parameters it
    reads (other queries are rendered, never kept). Signed-in users and pending messages: always rendered."""
    allowed = set(params)

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if (not enabled() or request.method not in ("GET", "HEAD") or not set(request.GET) <= allowed
                    or request.user.is_authenticated or _has_messages(request)):
                return view(request, *args, **kwargs)
            where = hashlib.sha256(request.get_full_path().encode()).hexdigest()[:32]
            key = f"page:{_database()}:{data_version()}:{_build()}:{where}"
            stored = page_store.get(key)
            if stored is not None:
                content, content_type = stored
                return HttpResponse(content, content_type=content_type)
            response = view(request, *args, **kwargs)
            # Never kept: a page that set a cookie or carries a CSRF token (it is somebody's own).
            if (response.status_code == 200 and not response.streaming and not response.cookies
                    and not request.META.get("CSRF_COOKIE_NEEDS_UPDATE")):
                page_store.set(key, (response.content, response["Content-Type"]),
                               timeout=settings.SHELFMARK_PAGE_CACHE_SECONDS)
            return response

        return wrapper

    return decorate


def _build() -> str:
    """The site's build: the static files' manifest (a new build of the CSS and scripts gets pages that name
    them) and the templates (a deploy that changes a page's markup renders it afresh)."""
    return f"{getattr(staticfiles_storage, 'manifest_hash', '')}{_templates_fingerprint()}"


@cache
def _templates_fingerprint() -> str:
    """The templates' names, sizes and modification times, read once per process (a deploy restarts it)."""
    digest = hashlib.sha256()
    for folder in settings.TEMPLATES[0]["DIRS"]:
        for path in sorted(Path(folder).rglob("*.html")):
            stat = path.stat()
            digest.update(f"{path.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()[:12]


def _frozen_key(slug: str, number: int) -> str:
    """A permalink's key: its dataset and number, the frozen token and the static build."""
    return f"frozen:{_database()}:{_token(FROZEN)}:{_build()}:{slug}:{number}"


def frozen_page(slug: str, number: int, render: Callable[[], tuple[bytes, str]]) -> tuple[bytes, str]:
    """The bytes and ETag of a published version's page: rendered once (by `render`, which raises Http404
    for a version that does not exist), then served as stored."""
    if not enabled():
        return render()
    key = _frozen_key(slug, number)
    page = page_store.get(key)
    if page is None:
        page = render()
        page_store.set(key, page, timeout=None)
    return page


def frozen_response(request, page: tuple[bytes, str]) -> HttpResponse:
    """A permalink's answer: the stored bytes (or 304 for the browser that has them), immutable."""
    content, etag = page
    if etag in parse_etags(request.headers.get("If-None-Match", "")):
        response = HttpResponseNotModified()
    else:
        response = HttpResponse(content)
        response["Content-Length"] = str(len(content))
    response["ETag"] = etag
    response["Cache-Control"] = IMMUTABLE
    response["X-Frame-Options"] = settings.X_FRAME_OPTIONS   # its middleware is not reached from here
    return response


class FrozenPageMiddleware:
    """Answers a permalink whose page is stored, as WhiteNoise answers a static file: before the session,
    CSRF, authentication and message middleware run. Anything else (and a page not yet stored) goes on."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.method in ("GET", "HEAD") and enabled():
            try:
                match = resolve(request.path_info)
            except Resolver404:
                match = None
            if match is not None and match.url_name == PERMALINK:
                page = page_store.get(_frozen_key(match.kwargs["slug"], match.kwargs["number"]))
                if page is not None:
                    return frozen_response(request, page)
        return self.get_response(request)
