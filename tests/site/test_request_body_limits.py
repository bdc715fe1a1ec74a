"""A body over the upload limit costs the production server nothing: gunicorn with the site's WSGI app,
a 3 GB body sent at it, and the web process's memory watched while it is refused.

Was: a 3 GB upload against the 2 GB limit was refused after 22 s while the web process grew from 763 MB to
2.66 GB (Django drained the rest of the body line by line). Now leaderboard/body_limit.py answers 413 from
Content-Length before reading, and cuts a chunked body off at the limit."""
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from ports import free_port

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
GB = 1024 ** 3
LIMIT = 20 * 1024 * 1024          # the installation's upload limit in this test (SHELFMARK_MAX_UPLOAD_BYTES)
BLOCK = b"\0" * (1024 * 1024)


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@pytest.fixture
def gunicorn(tmp_path):
    port = free_port()
    env = {**os.environ, "DEBUG": "false", "SHELFMARK_MAX_UPLOAD_BYTES": str(LIMIT),
           "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "SHELFMARK_VAR_DIR": str(tmp_path / "var"),
           "SHELFMARK_STATIC_MANIFEST": "false"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    with open(tmp_path / "gunicorn.log", "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "gunicorn", "leaderboard.wsgi", "--bind",
                                    f"127.0.0.1:{port}", "--workers", "1", "--threads", "2", "--no-control-socket"],
                                   cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "gunicorn.log").read_text()
            time.sleep(0.2)
    workers = []
    while not workers and time.monotonic() < deadline:
        workers = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
        time.sleep(0.1)
    # Warm up: the first requests load the middleware stack and the URLconf (each thread's imports).
    for _ in range(3):
        for warm in (b"POST /submissions/new/ HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % (2 * LIMIT),
                     b"POST /accounts/login/ HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
                     + b"%x\r\n" % (2 * 2**20) + b"\0" * (2 * 2**20) + b"\r\n0\r\n\r\n"):
            sock = socket.create_connection(("127.0.0.1", port))
            with contextlib.suppress(OSError):
                sock.sendall(warm)
            assert b" 413 " in sock.recv(65536)
            sock.close()
    yield port, int(workers[0])
    process.terminate()
    process.wait(timeout=30)


def send_body(port: int, head: bytes, blocks, peak: dict, worker: int) -> tuple[str, float, int]:
    """Send `head`, then the blocks, until the server answers; sample the worker's RSS meanwhile. The server
    must then hang up (not drain the rest). Returns (the status line, seconds to the answer, bytes sent)."""
    sock = socket.create_connection(("127.0.0.1", port))
    answer = bytearray()
    done, answered = threading.Event(), {}

    def read():
        while chunk := sock.recv(65536):
            answered.setdefault("at", time.monotonic())
            answer.extend(chunk)
        done.set()

    def watch():
        while not done.is_set():
            peak["rss"] = max(peak.get("rss", 0), _rss(worker))
            time.sleep(0.02)

    threading.Thread(target=read, daemon=True).start()
    threading.Thread(target=watch, daemon=True).start()
    started, sent = time.monotonic(), 0
    sock.sendall(head)
    try:
        for block in blocks:
            if done.is_set() or answer:
                break
            sock.sendall(block)
            sent += len(block)
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert done.wait(5), "the server kept the connection open after refusing the body"
    elapsed = answered.get("at", time.monotonic()) - started
    sock.close()
    head = bytes(answer).split(b"\r\n\r\n", 1)[0].decode()
    assert "\r\nConnection: close" in head, head
    return head.split("\r\n", 1)[0], elapsed, sent


def zeros(total: int):
    for _ in range(total // len(BLOCK)):
        yield BLOCK


def chunked(total: int):
    for block in zeros(total):
        yield b"%x\r\n" % len(block) + block + b"\r\n"
    yield b"0\r\n\r\n"


def test_a_3_gb_body_is_refused_from_its_headers_and_the_web_process_stays_flat(gunicorn):
    port, worker = gunicorn
    before = _rss(worker)
    peak: dict = {}
    head = (b"POST /submissions/new/ HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=x\r\n"
            b"Content-Length: %d\r\n\r\n" % (3 * GB))
    status, elapsed, sent = send_body(port, head, zeros(3 * GB), peak, worker)
    print(f"\n3 GB Content-Length: {status} after {elapsed:.2f}s, {sent / 2**20:.0f} MiB sent, "
          f"RSS {before / 2**20:.0f} -> peak {peak['rss'] / 2**20:.0f} MiB")
    assert status == "HTTP/1.1 413 Request Entity Too Large"
    assert elapsed < 10 and sent < 1 * GB          # the server hung up: the client could not push it all
    assert peak["rss"] - before < 30 * 2**20


def test_a_chunked_3_gb_body_is_cut_off_at_the_limit_with_memory_flat(gunicorn):
    port, worker = gunicorn
    before = _rss(worker)
    peak: dict = {}
    head = (b"POST /submissions/new/ HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=x\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    status, elapsed, sent = send_body(port, head, chunked(3 * GB), peak, worker)
    print(f"\n3 GB chunked: {status} after {elapsed:.2f}s, {sent / 2**20:.0f} MiB sent, "
          f"RSS {before / 2**20:.0f} -> peak {peak['rss'] / 2**20:.0f} MiB")
    assert status == "HTTP/1.1 413 Request Entity Too Large"
    assert sent < LIMIT + 512 * 2**20              # cut off near the limit, not drained to the end
    assert peak["rss"] - before < 30 * 2**20       # spooled to disk past 1 MiB, never held in memory


def test_a_refusal_before_the_body_is_read_hangs_up_instead_of_draining_it(gunicorn):
    # was: gunicorn drops the application's Connection: close and reads the rest of the body to keep the
    # connection alive: the login redirect of an anonymous 15 MB upload (under the limit) read all 15 MB
    port, worker = gunicorn
    size = 15 * 1024 * 1024
    head = (b"POST /submissions/new/ HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=x\r\n"
            b"Content-Length: %d\r\n\r\n" % size)
    status, elapsed, sent = send_body(port, head, zeros(size), {}, worker)
    assert status == "HTTP/1.1 302 Found"           # to the log-in page, the upload unread
    assert sent < size // 2


def test_a_chunked_body_to_an_address_that_takes_no_upload_is_cut_off_at_a_mebibyte(gunicorn):
    port, worker = gunicorn
    head = (b"POST /accounts/login/ HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    status, elapsed, sent = send_body(port, head, chunked(3 * GB), {}, worker)
    assert status == "HTTP/1.1 413 Request Entity Too Large"
    assert sent < LIMIT              # cut off at 1 MiB, long before the upload limit
