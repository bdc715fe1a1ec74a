"""WSGI entry point (gunicorn leaderboard.wsgi)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard.settings")
django_application = get_wsgi_application()

# Set in the WSGI environ by leaderboard/body_limit.py when a request's body was refused unread.
CLOSE_CONNECTION = "shelfmark.close_connection"


def application(environ, start_response):
    """Django's application, plus one thing WSGI cannot say: close this connection. gunicorn drops an
    application's `Connection: close` header (hop-by-hop) and would keep the connection alive by reading,
    and discarding, the rest of a refused body: gigabytes. Its `start_response` is a method of its
    response, whose `force_close()` makes it answer `Connection: close` and hang up instead."""
    def start(status, headers, exc_info=None):
        if environ.get(CLOSE_CONNECTION):
            force_close = getattr(getattr(start_response, "__self__", None), "force_close", None)
            if callable(force_close):
                force_close()
        return start_response(status, headers, exc_info)

    return django_application(environ, start)
