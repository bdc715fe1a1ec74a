"""`./shelfmark up` (leaderboard/launch.py): which web server it runs, which hosts it answers for, and how it
keeps its children running: a worker that dies is started again (with a growing pause, and given up after
too many quick crashes, while the site keeps serving); the web server's exit stops everything."""
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from leaderboard import launch
from leaderboard.launch import Child, allowed_hosts, stop_children, supervise, web_command

PY = sys.executable
SLEEPER = [PY, "-c", "import time; time.sleep(60)"]


def child_writing(path: Path, then: str) -> list[str]:
    """A tiny child that notes its pid in `path`, then runs `then` (Python)."""
    return [PY, "-c", f"import os, sys, time\nopen({str(path)!r}, 'a').write(f'{{os.getpid()}}\\n')\n{then}"]


def pids(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def wait_for(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


class Supervisor:
    """supervise() in a thread, with pauses short enough for a test; always stops its children."""

    def __init__(self, children, **options):
        self.children, self.stopping, self.code = children, threading.Event(), None
        options = {"quick_s": 30.0, "backoff_s": 0.05, "poll_s": 0.02, **options}
        self.thread = threading.Thread(target=self._run, kwargs=options, daemon=True)

    def _run(self, **options):
        self.code = supervise(self.children, self.stopping, **options)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_):
        self.stopping.set()
        self.thread.join(10)
        stop_children(self.children, timeout=5)


def test_a_worker_that_dies_is_started_again(tmp_path):
    started = tmp_path / "started"
    first_run_crashes = f"sys.exit(3) if len(open({str(started)!r}).read().split()) == 1 else time.sleep(60)"
    worker = Child("worker", child_writing(started, first_run_crashes), restart=True)
    web = Child("web server", SLEEPER)
    with Supervisor([worker, web]) as supervisor:
        wait_for(lambda: len(pids(started)) == 2 and worker.running)
        first, second = pids(started)
        assert first != second and worker.process.pid == second
        assert worker.quick_crashes == 1 and not worker.given_up
        assert web.running and supervisor.thread.is_alive()
    assert supervisor.code == 0
    assert not worker.running and not web.running


def test_quick_crashes_wait_longer_each_time_and_are_given_up_while_the_site_keeps_running(tmp_path, capsys):
    started = tmp_path / "started"
    worker = Child("worker", child_writing(started, "sys.exit(7)"), restart=True)
    web = Child("web server", SLEEPER)
    with Supervisor([worker, web], max_quick_crashes=4) as supervisor:
        wait_for(lambda: worker.given_up)
        time.sleep(0.3)
        assert len(pids(started)) == 4, "started once, again three times, then left down"
        assert web.running and supervisor.thread.is_alive(), "the site keeps serving"
    log = capsys.readouterr().err
    assert [line.split("again in ")[1] for line in log.splitlines() if "again in" in line] == \
        ["0.05 s", "0.1 s", "0.2 s"]
    assert "exited 4 times in a row" in log and "giving up on it" in log and "last code 7" in log


def test_a_long_run_before_a_crash_starts_the_count_afresh(tmp_path):
    started = tmp_path / "started"
    worker = Child("worker", child_writing(started, "time.sleep(0.3); sys.exit(1)"), restart=True)
    with Supervisor([worker, Child("web server", SLEEPER)], quick_s=0.2, max_quick_crashes=2):
        wait_for(lambda: len(pids(started)) >= 4)
        assert not worker.given_up and worker.quick_crashes == 0


def test_when_the_web_server_exits_everything_stops(tmp_path):
    worker_pids = tmp_path / "worker"
    grandchild = tmp_path / "grandchild"
    # The worker has a child of its own (as Celery has its pool): it goes too.
    worker = Child("worker", child_writing(worker_pids, "import subprocess\n"
                                           f"p = subprocess.Popen({SLEEPER!r})\n"
                                           f"open({str(grandchild)!r}, 'w').write(str(p.pid))\ntime.sleep(60)"),
                   restart=True)
    web = Child("web server", [PY, "-c", "import time; time.sleep(0.5); raise SystemExit(4)"])
    with Supervisor([worker, web]) as supervisor:
        supervisor.thread.join(15)
        assert supervisor.code == 1
        wait_for(grandchild.exists)
        assert worker.running, "supervise() leaves the stopping to its caller"
    assert not worker.running
    grandchild_pid = int(grandchild.read_text())
    wait_for(lambda: not launch._alive(grandchild_pid), timeout=5)


def test_a_child_that_ignores_sigterm_is_killed_after_the_timeout():
    stubborn = Child("worker", [PY, "-c", "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                                          "print('ready', flush=True)\ntime.sleep(60)"])
    stubborn.start()
    time.sleep(0.5)   # its handler is in place
    started = time.monotonic()
    stop_children([stubborn], timeout=0.5)
    assert not stubborn.running and stubborn.process.returncode == -9
    assert time.monotonic() - started < 5


def test_without_dev_the_web_server_is_gunicorn_and_with_it_runserver(monkeypatch):
    monkeypatch.setenv("SHELFMARK_WEB_WORKERS", "3")
    monkeypatch.setenv("SHELFMARK_WEB_THREADS", "2")
    command = web_command("py", "127.0.0.1", 8123)
    assert command[:4] == ["py", "-m", "gunicorn", "leaderboard.wsgi"]
    options = dict(zip(command[4::2], command[5::2]))
    assert options["--bind"] == "127.0.0.1:8123"
    assert (options["--workers"], options["--threads"]) == ("3", "2")
    assert web_command("py", "::1", 8123)[5] == "[::1]:8123"

    assert web_command("py", "127.0.0.1", 8123, dev=True) == ["py", "manage.py", "runserver", "127.0.0.1:8123"]


def test_gunicorn_gets_a_process_per_core_plus_one_within_bounds(monkeypatch):
    monkeypatch.delenv("SHELFMARK_WEB_WORKERS", raising=False)
    monkeypatch.delenv("SHELFMARK_WEB_THREADS", raising=False)
    for cores, workers in [(1, 2), (2, 3), (4, 5), (32, 8)]:
        monkeypatch.setattr(os, "sched_getaffinity", lambda _, n=cores: set(range(n)))
        assert launch.web_concurrency() == (workers, 4)


@pytest.mark.parametrize("bind, extra", [("127.0.0.1", []), ("localhost", []), ("::1", []),
                                         ("10.1.2.3", ["10.1.2.3"]), ("fd00::5", ["[fd00::5]"]),
                                         ("shelf.example.org", ["shelf.example.org"])])
def test_allowed_hosts_are_the_loopback_names_and_the_address_listened_on(bind, extra):
    assert allowed_hosts(bind) == ["localhost", "127.0.0.1", "[::1]", *extra]


def test_listening_everywhere_allows_this_machines_names_and_addresses(monkeypatch):
    monkeypatch.setattr(launch, "machine_hosts", lambda: ["shelf", "shelf.lan", "192.168.1.20"])
    assert allowed_hosts("0.0.0.0") == ["localhost", "127.0.0.1", "[::1]", "shelf", "shelf.lan", "192.168.1.20"]
    assert allowed_hosts("::")[3:] == ["shelf", "shelf.lan", "192.168.1.20"]


def test_this_machines_hosts_name_it_and_leave_out_the_loopback():
    import socket

    hosts = launch.machine_hosts()
    assert socket.gethostname().lower() in hosts
    assert not any(host.startswith(("127.", "[::1]")) or "%" in host for host in hosts)
