"""WSGI entry point (gunicorn leaderboard.wsgi)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard.settings")
django_application = get_wsgi_application()

# Set in the WSGI environ by leaderboard/body_limit.py when a request's body was refused unread.
CLOSE_CONNECTION = "shelfmark.close_connection"
UNREAD_SLACK = 64 * 1024   # a body left unread by less than this is drained, keeping the connection


class CountingInput:
    """wsgi.input, counting what the application read (and whether it reached the end)."""

    def __init__(self, stream):
        self.stream, self.read_bytes, self.at_end = stream, 0, False

    def _count(self, data: bytes, asked: int | None) -> bytes:
        self.read_bytes += len(data)
        if not data or asked is None or asked < 0:   # an empty read, or a read of everything
            self.at_end = True
        return data

    def read(self, size=-1):
        return self._count(self.stream.read(size) if size is not None else self.stream.read(), size)

    def readline(self, size=-1):
        line = self.stream.readline(size)
        self.read_bytes += len(line)
        self.at_end = self.at_end or not line
        return line

    def __iter__(self):
        return iter(self.readline, b"")

    def __getattr__(self, name):
        return getattr(self.stream, name)


def _unread_body(environ, counted: CountingInput) -> bool:
    """Whether the application answered with much of the body still unread (refused: too large, not
    signed in, over the allowance, ...)."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return True
    if length:
        return length - counted.read_bytes > UNREAD_SLACK
    return "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower() and not counted.at_end


def application(environ, start_response):
    """Django's application, plus one thing WSGI cannot say: close this connection. gunicorn drops an
    application's `Connection: close` header (hop-by-hop) and would keep the connection alive by reading,
    and discarding, the rest of a body the application refused unread: gigabytes. Its `start_response` is
    a method of its response, whose `force_close()` makes it answer `Connection: close` and hang up."""
    counted = None
    if "wsgi.input" in environ:
        counted = environ["wsgi.input"] = CountingInput(environ["wsgi.input"])

    def start(status, headers, exc_info=None):
        if environ.get(CLOSE_CONNECTION) or (counted is not None and _unread_body(environ, counted)):
            force_close = getattr(getattr(start_response, "__self__", None), "force_close", None)
            if callable(force_close):
                force_close()
        return start_response(status, headers, exc_info)

    return django_application(environ, start)
