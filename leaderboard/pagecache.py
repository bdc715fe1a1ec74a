"""Rendered pages kept in Django's cache, which every web and worker process of the site shares (files
under the var dir, see settings: CACHES), so it outlives restarts and is the same for every gunicorn worker.

- A frozen version's permalink (`frozen_page`) is rendered once and its bytes served ever after.
- Live pages (`cache_for_visitors`: home, a dataset's board) are kept as an anonymous visitor sees them,
  under the *data version*: a token replaced whenever a row of the registry or the boards is written, by
  any process. Writes are seen at the database cursor (`watch_writes`), so queryset `update()`,
  `bulk_create()` and raw SQL count as much as `save()`; the token changes when the statement runs and
  again when its transaction commits, so a page rendered in between is never kept.
"""
from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable
from functools import cache, wraps
from pathlib import Path

from django.apps import apps
from django.conf import settings
from django.contrib.messages import get_messages
from django.contrib.staticfiles.storage import staticfiles_storage
from django.core.cache import cache as page_store
from django.db import connections, transaction
from django.http import HttpResponse

# The apps whose tables the cached pages are read from.
WATCHED_APPS = ("registry", "boards")
# The table a write statement changes (Django's quoting, or none in hand-written SQL).
WRITE_STATEMENT = re.compile(
    r'\s*(?:INSERT\s+(?:OR\s+\w+\s+)?INTO|UPDATE|DELETE\s+FROM|REPLACE\s+INTO)\s+["`]?(\w+)', re.IGNORECASE
)


def enabled() -> bool:
    return settings.SHELFMARK_PAGE_CACHE


def _database() -> str:
    """Which database the pages come from: two sites (or a test run) sharing a cache folder never mix."""
    params = connections["default"].settings_dict
    name = str(params.get("NAME") or "")
    if params["ENGINE"].endswith("sqlite3") and name and not name.startswith(("file:", ":memory:")):
        name = str(Path(name).resolve())
    identity = "|".join((params["ENGINE"], name, str(params.get("HOST") or ""), str(params.get("PORT") or "")))
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def _data_version_key() -> str:
    return f"data-version:{_database()}"


def data_version() -> str:
    """The token the live pages are kept under; a new one when the registry changes (or the entry was culled)."""
    key = _data_version_key()
    version = page_store.get(key)
    if version is None:
        version = uuid.uuid4().hex
        if not page_store.add(key, version, timeout=None):
            version = page_store.get(key) or version
    return version


def data_changed(**_) -> None:
    """A new data version: every live page is rendered afresh on its next request."""
    page_store.set(_data_version_key(), uuid.uuid4().hex, timeout=None)


def _data_changed_after_commit() -> None:
    data_changed()


@cache
def _watched_tables() -> frozenset[str]:
    return frozenset(model._meta.db_table for label in WATCHED_APPS
                     for model in apps.get_app_config(label).get_models(include_auto_created=True))


def _writes_watched_table(sql) -> bool:
    if not isinstance(sql, str):
        return False
    match = WRITE_STATEMENT.match(sql)
    if match:
        return match.group(1) in _watched_tables()
    return sql.lstrip()[:8].upper() == "TRUNCATE"


def _watch(execute, sql, params, many, context):
    result = execute(sql, params, many, context)
    if _writes_watched_table(sql):
        connection = context["connection"]
        data_changed()
        # Again once the transaction commits: a page rendered from the old rows in the meantime is dropped.
        if connection.in_atomic_block and not any(
                entry[1] is _data_changed_after_commit for entry in connection.run_on_commit):
            transaction.on_commit(_data_changed_after_commit, using=connection.alias, robust=True)
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
            key = f"page:{_database()}:{data_version()}:{where}"
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


def frozen_page(version, render: Callable[[], bytes]) -> bytes:
    """The bytes of a published version's page: rendered once (by `render`), then served as stored.

    Keyed by the version, its content hash and publication time, and the static files' manifest (a new
    build of the site's CSS and scripts gets a page that names them)."""
    if not enabled():
        return render()
    build = getattr(staticfiles_storage, "manifest_hash", "")
    key = (f"frozen:{_database()}:{version.pk}:{version.content_hash}:"
           f"{version.published_at.isoformat()}:{build}")
    content = page_store.get(key)
    if content is None:
        content = render()
        page_store.set(key, content, timeout=None)
    return content
