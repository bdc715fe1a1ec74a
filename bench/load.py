"""Throughput of the production server: requests/s, latency and errors under concurrent clients.

    python bench/load.py [--clients 20 50] [--seconds 5] [--workers N --threads N]

Starts the site's web server as `./shelfmark up` runs it (gunicorn from leaderboard.launch.web_command,
DEBUG off, hashed static files from collectstatic's manifest, the page cache on) on a free port, with a
throw-away SQLite file holding the snapshot and its published versions (load_snapshot publishes v0 of every
board) and a throw-away cache folder. Then, for each number of clients, each keeping one HTTP/1.1 keep-alive
connection and sending its next request as soon as the last one is answered, it measures a static file
(the site's CSS, gzip) and the pages: home, a dataset's board, a frozen permalink (/leaderboards/<slug>/v0/)
and the API. Every page is warmed first (its cached copy made) and measured for --seconds.

Prints a table: requests/s, the ratio to the static file in the same run, mean and 95th-percentile latency,
errors (a status other than 200, or a failed connection), and the CPU the load client and the server used
(in cores): a client near 1.0 core is the bottleneck, and the static figure is then a floor. The goal:
a frozen permalink at >= 0.5x the static file's requests/s, with 0 errors.

The load client is one asyncio process apart from the server's processes; on a small machine both share
the cores, so compare the ratios of one run rather than absolute numbers across machines.
"""
import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATASET = "mit67"
PAGES = {"home": "/", "dataset page": f"/datasets/{DATASET}/", "frozen permalink": f"/leaderboards/{DATASET}/v0/",
         "API": f"/api/results/?dataset={DATASET}"}
GOAL = 0.5   # a frozen permalink's requests/s, as a share of the static file's


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pids) -> float:
    """User + system CPU of these processes so far (from /proc; 0 for one that is gone)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def server_pids(master: int) -> list[int]:
    pids = [master]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == master:
                    pids.append(int(entry.name))
            except (OSError, IndexError):
                pass
    return pids


# ---- the server ----

def prepare_site(folder: Path, env: dict) -> None:
    """A database with the snapshot (and its published v0s) and the collected static files."""
    for command in (["migrate", "--noinput"], ["load_snapshot"], ["collectstatic", "--noinput"]):
        subprocess.run([sys.executable, "manage.py", *command, "-v0"], cwd=ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL)


def start_server(port: int, env: dict, log: Path) -> subprocess.Popen:
    from leaderboard.launch import web_command

    command = web_command(sys.executable, "127.0.0.1", port)
    with open(log, "wb") as out:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"the server exited:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/static/css/site.css", timeout=5):
                return server
        except OSError:
            time.sleep(0.3)
    server.terminate()
    sys.exit("the server did not answer within 120 s")


def stop_server(server: subprocess.Popen) -> None:
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


# ---- the load client ----

@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    statuses: dict = field(default_factory=dict)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Reads one response; returns its status and whether the server keeps the connection open."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        await reader.read()   # until the server closes
        return status, False
    return status, headers.get("connection", "").lower() != "close"


async def client(port: int, path: str, until: float, tally: Tally) -> None:
    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept-Encoding: gzip\r\n"
               f"User-Agent: shelfmark-bench\r\n\r\n").encode()
    reader = writer = None
    while time.perf_counter() < until:
        started = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            status, keep_alive = await read_response(reader)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            tally.errors += 1
            tally.statuses["connection"] = tally.statuses.get("connection", 0) + 1
            if writer is not None:
                writer.close()
            reader = writer = None
            await asyncio.sleep(0.01)
            continue
        tally.latencies.append(time.perf_counter() - started)
        if status != 200:
            tally.errors += 1
            tally.statuses[status] = tally.statuses.get(status, 0) + 1
        if not keep_alive:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def load(port: int, path: str, clients: int, seconds: float) -> tuple[Tally, float]:
    tally = Tally()
    started = time.perf_counter()
    await asyncio.gather(*(client(port, path, started + seconds, tally) for _ in range(clients)))
    return tally, time.perf_counter() - started


@dataclass
class Row:
    name: str
    clients: int
    rate: float
    mean_ms: float
    p95_ms: float
    errors: int
    statuses: dict
    client_cores: float
    server_cores: float


def measure(port: int, master: int, name: str, path: str, clients: int, seconds: float, warm_s: float) -> Row:
    asyncio.run(load(port, path, clients, warm_s))   # renders and stores the page; opens the server's threads
    pids = server_pids(master)
    client_cpu, server_cpu = time.process_time(), cpu_seconds(pids)
    tally, elapsed = asyncio.run(load(port, path, clients, seconds))
    client_cpu, server_cpu = time.process_time() - client_cpu, cpu_seconds(pids) - server_cpu
    latencies = sorted(tally.latencies) or [0.0]
    return Row(name, clients, len(tally.latencies) / elapsed, 1000 * sum(latencies) / len(latencies),
               1000 * latencies[int(0.95 * (len(latencies) - 1))], tally.errors, tally.statuses,
               client_cpu / elapsed, server_cpu / elapsed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[20, 50])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured time per page and client count")
    parser.add_argument("--warm", type=float, default=1.0, help="warm-up seconds before each measurement")
    parser.add_argument("--workers", type=int, help="gunicorn processes (default: as `./shelfmark up`)")
    parser.add_argument("--threads", type=int, help="threads per gunicorn process (default: as `./shelfmark up`)")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="shelfmark-load-"))
    env = {key: value for key, value in os.environ.items() if not key.startswith("SHELFMARK_")}
    env.update(DATABASE_URL=f"sqlite:///{folder / 'db.sqlite3'}", SHELFMARK_VAR_DIR=str(folder / "var"),
               STATIC_ROOT=str(folder / "static"), SHELFMARK_CACHE_DIR=str(folder / "cache"), DEBUG="false",
               SHELFMARK_STATIC_MANIFEST="true", SHELFMARK_PAGE_CACHE="true", ALLOWED_HOSTS="127.0.0.1,localhost",
               DJANGO_SETTINGS_MODULE="leaderboard.settings")
    if args.workers:
        env["SHELFMARK_WEB_WORKERS"] = str(args.workers)
    if args.threads:
        env["SHELFMARK_WEB_THREADS"] = str(args.threads)
    os.environ.update({k: v for k, v in env.items() if k.startswith("SHELFMARK_WEB_")})
    server = None
    try:
        print("preparing a database with the snapshot and the static files ...", flush=True)
        prepare_site(folder, env)
        port = free_port()
        server = start_server(port, env, folder / "server.log")
        from leaderboard.launch import web_concurrency

        workers, threads = web_concurrency()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as response:
            home = response.read().decode()
        static = re.search(r'href="(/static/css/site\.[0-9a-f]{12}\.css)"', home)
        if not static:
            sys.exit("the home page names no hashed stylesheet: is the manifest in use?")
        targets = {"static file (CSS)": static[1], **PAGES}

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        print(f"gunicorn {workers} processes x {threads} threads on {cores} cores; one asyncio client process; "
              f"{args.seconds:g} s per row after {args.warm:g} s warm-up")
        print(f"{'page':18} {'path':34} {'clients':>7} {'req/s':>8} {'x static':>8} {'mean ms':>8} {'p95 ms':>8} "
              f"{'errors':>6} {'client':>6} {'server':>6}")
        rows = []
        for clients in args.clients:
            static_rate = None
            for name, path in targets.items():
                row = measure(port, server.pid, name, path, clients, args.seconds, args.warm)
                static_rate = static_rate or row.rate
                rows.append(row)
                errors = f"{row.errors}" + (f" {row.statuses}" if row.statuses else "")
                print(f"{name:18} {path:34} {clients:7d} {row.rate:8.1f} {row.rate / static_rate:8.2f} "
                      f"{row.mean_ms:8.1f} {row.p95_ms:8.1f} {errors:>6} {row.client_cores:6.2f} "
                      f"{row.server_cores:6.2f}", flush=True)
        print("(client, server: CPU used, in cores)")

        ratios = []
        for clients in args.clients:
            by_name = {row.name: row for row in rows if row.clients == clients}
            ratios.append(by_name["frozen permalink"].rate / by_name["static file (CSS)"].rate)
        errors = sum(row.errors for row in rows)
        met = all(ratio >= GOAL for ratio in ratios) and errors == 0
        print(f"goal (frozen permalink >= {GOAL}x static, 0 errors): {'met' if met else 'NOT met'} — ratios "
              + ", ".join(f"{r:.2f}x at {c} clients" for r, c in zip(ratios, args.clients)) + f"; {errors} errors")
        if any(row.client_cores > 0.85 for row in rows if row.name.startswith("static")):
            print("note: the load client used most of a core on the static file: it, not the server, may be the "
                  "limit there, so the static figure is a floor and the ratios are upper bounds")
    finally:
        if server is not None:
            stop_server(server)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
