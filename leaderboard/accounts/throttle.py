"""Failed log-ins, counted per username and per client address in Django's cache (shared by every web
process). Past either limit within the window, log-in is refused until the oldest failure has aged out.

Settings: SHELFMARK_LOGIN_WINDOW_S, SHELFMARK_LOGIN_FAILURES_PER_USERNAME, SHELFMARK_LOGIN_FAILURES_PER_IP,
and SHELFMARK_CLIENT_IP_HEADER behind a reverse proxy (else every visitor has the proxy's address).
"""
from __future__ import annotations

import hashlib
import time

from django.conf import settings
from django.core.cache import caches


def _store():
    return caches["login-failures"]   # its own cache: a full page cache must not wipe the counters


def client_ip(request) -> str:
    header = settings.SHELFMARK_CLIENT_IP_HEADER
    if header and request.META.get(header):
        # X-Forwarded-For: the address the proxy itself saw is the last one (the others are the client's word).
        return request.META[header].split(",")[-1].strip()
    return request.META.get("REMOTE_ADDR", "")


def _counters(request, username: str) -> list[tuple[str, int]]:
    """The cache keys of the failures that count for this attempt, with the limit of each."""
    def key(kind: str, value: str) -> str:
        return f"login-failures:{kind}:{hashlib.sha256(value.encode()).hexdigest()[:32]}"

    return [(key("username", username.strip().lower()), settings.SHELFMARK_LOGIN_FAILURES_PER_USERNAME),
            (key("ip", client_ip(request)), settings.SHELFMARK_LOGIN_FAILURES_PER_IP)]


def _recent(key: str, now: float) -> list[float]:
    return [moment for moment in _store().get(key, []) if moment > now - settings.SHELFMARK_LOGIN_WINDOW_S]


def retry_after(request, username: str) -> int:
    """Seconds until this username may try again from this address; 0: it may try now."""
    now = time.time()
    wait = 0.0
    for key, limit in _counters(request, username):
        failures = _recent(key, now)
        if 0 < limit <= len(failures):
            wait = max(wait, failures[-limit] + settings.SHELFMARK_LOGIN_WINDOW_S - now)
    return int(wait) + 1 if wait > 0 else 0


def record_failure(request, username: str) -> None:
    now = time.time()
    for key, limit in _counters(request, username):
        if limit > 0:   # 0: no limit of this kind
            _store().set(key, [*_recent(key, now), now][-limit:], timeout=settings.SHELFMARK_LOGIN_WINDOW_S)


def forget_username(request, username: str) -> None:
    """After a successful log-in: the account's failures no longer count (its address's still do)."""
    _store().delete(_counters(request, username)[0][0])
