"""Log-in attempts are limited (leaderboard/accounts/throttle.py): after too many failures for a username or
from an address, the site's log-in answers 429 with Retry-After, and neither it nor the admin's checks the
password until the oldest failure has aged out."""
from types import SimpleNamespace

import pytest
from django.contrib.auth import forms as auth_forms

from leaderboard.accounts import throttle

PASSWORD = "a-long-test-password"
LOGIN = "/accounts/login/"


@pytest.fixture(autouse=True)
def _quick_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]   # dozens of log-ins


@pytest.fixture
def ada(make_user):
    return make_user("ada", staff=True)


@pytest.fixture
def password_checks(monkeypatch):
    """Every call of authenticate() the log-in forms make (the password check)."""
    calls = []
    authenticate = auth_forms.authenticate

    def counted(*args, **kwargs):
        calls.append(kwargs["username"])
        return authenticate(*args, **kwargs)

    monkeypatch.setattr(auth_forms, "authenticate", counted)
    return calls


def fail(client, username: str, times: int, url: str = LOGIN, **extra) -> None:
    for _ in range(times):
        response = client.post(url, {"username": username, "password": "wrong"}, **extra)
        assert response.status_code == 200, "a failure below the limit is an ordinary form error"


def test_past_the_limit_log_in_answers_429_without_checking_the_password(client, ada, settings, password_checks):
    fail(client, "ada", settings.SHELFMARK_LOGIN_FAILURES_PER_USERNAME)
    assert len(password_checks) == settings.SHELFMARK_LOGIN_FAILURES_PER_USERNAME

    response = client.post(LOGIN, {"username": "ada", "password": PASSWORD})
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= settings.SHELFMARK_LOGIN_WINDOW_S
    assert "Too many failed log-ins" in response.content.decode()
    assert "Try again in 15 minutes" in response.content.decode()
    assert len(password_checks) == settings.SHELFMARK_LOGIN_FAILURES_PER_USERNAME, "the password was checked"
    assert "_auth_user_id" not in client.session
    # Another account from another address is not affected.
    assert client.post(LOGIN, {"username": "bob", "password": "x"}, REMOTE_ADDR="10.0.0.9").status_code == 200


def test_the_limit_lifts_when_the_failures_age_out(client, ada, settings, monkeypatch):
    clock = SimpleNamespace(now=1_000_000.0)
    monkeypatch.setattr(throttle, "time", SimpleNamespace(time=lambda: clock.now))
    fail(client, "ada", settings.SHELFMARK_LOGIN_FAILURES_PER_USERNAME)
    clock.now += settings.SHELFMARK_LOGIN_WINDOW_S - 60
    response = client.post(LOGIN, {"username": "ada", "password": PASSWORD})
    assert response.status_code == 429 and response["Retry-After"] == "61"

    clock.now += 61
    assert client.post(LOGIN, {"username": "ada", "password": PASSWORD}).status_code == 302


def test_a_successful_log_in_forgets_the_accounts_failures(client, ada, settings):
    below_the_limit = settings.SHELFMARK_LOGIN_FAILURES_PER_USERNAME - 1
    fail(client, "ada", below_the_limit)
    assert client.post(LOGIN, {"username": "ada", "password": PASSWORD}).status_code == 302
    client.logout()
    fail(client, "ada", below_the_limit)   # in all, more than the limit, but counted afresh since the log-in
    assert client.post(LOGIN, {"username": "ada", "password": PASSWORD}).status_code == 302


def test_failures_from_one_address_are_limited_across_usernames(client, ada, settings):
    settings.SHELFMARK_LOGIN_FAILURES_PER_IP = 3
    for name in ("u1", "u2", "u3"):
        fail(client, name, 1)
    assert client.post(LOGIN, {"username": "ada", "password": PASSWORD}).status_code == 429
    assert client.post(LOGIN, {"username": "ada", "password": PASSWORD}, REMOTE_ADDR="10.0.0.2").status_code == 302


def test_behind_a_proxy_the_clients_address_comes_from_the_named_header(rf, settings):
    settings.SHELFMARK_CLIENT_IP_HEADER = "HTTP_X_FORWARDED_FOR"
    request = rf.post(LOGIN, REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.7")
    assert throttle.client_ip(request) == "203.0.113.7"   # the address the proxy saw, not the client's word
    settings.SHELFMARK_CLIENT_IP_HEADER = ""
    assert throttle.client_ip(request) == "127.0.0.1"


def test_the_admins_log_in_is_limited_too(client, ada, settings, password_checks):
    fail(client, "ada", settings.SHELFMARK_LOGIN_FAILURES_PER_USERNAME, url="/admin/login/")
    checks = len(password_checks)
    response = client.post("/admin/login/?next=/admin/", {"username": "ada", "password": PASSWORD})
    assert response.status_code == 200 and "Too many failed log-ins" in response.content.decode()
    assert len(password_checks) == checks
    assert client.get("/admin/").status_code == 302, "not logged in"
    # The site's log-in counts the same failures.
    assert client.post(LOGIN, {"username": "ada", "password": PASSWORD}).status_code == 429


def test_filling_the_page_cache_does_not_wipe_the_failure_counters(client, make_user, settings, monkeypatch):
    # was: one cache for pages and counters; anonymous GETs with made-up query strings filled it and the
    # random culling of a full cache deleted the counters with the pages
    from django.core.cache import caches

    cache = caches["default"]   # the object itself: monkeypatch must not go through django.core.cache.cache
    assert caches["login-failures"] is not cache
    settings.SHELFMARK_LOGIN_FAILURES_PER_USERNAME = 2
    make_user("ada")
    for _ in range(2):
        client.post("/accounts/login/", {"username": "ada", "password": "wrong"})
    monkeypatch.setattr(cache, "_max_entries", 5)     # a tiny page cache, emptied whenever it is full
    monkeypatch.setattr(cache, "_cull_frequency", 1)
    for i in range(20):
        cache.set(f"page:{i}", b"x")
    answer = client.post("/accounts/login/", {"username": "ada", "password": "a-long-test-password"})
    assert answer.status_code == 429
