"""Refuse a request body that is too large from its headers, before a byte of it is read.

Django reads an upload only when something asks for `request.POST` or `request.FILES` (the CSRF check
does), and the upload handler (submissions/uploads.py) stops past the limit; but a body of many
gigabytes is still received and drained by then. This middleware, first in MIDDLEWARE, answers
413 from `Content-Length` alone (the upload limit plus room for the form's fields), with
`Connection: close` so the server drops the rest unread (gunicorn needs leaderboard/wsgi.py for that).

A chunked body has no length to judge. Behind gunicorn (which decodes chunks and marks the stream
`wsgi.input_terminated`) it is read into a spooled temporary file, in blocks, and cut off with a 413 as
soon as it passes the limit; memory stays flat, past 1 MiB the body is on disk. A server that cannot
delimit a chunked body for Django (runserver) gets 411: send a Content-Length.
"""
from __future__ import annotations

import tempfile

from django.conf import settings
from django.core.handlers.wsgi import LimitedStream
from django.http import HttpResponse
from django.template.defaultfilters import filesizeformat
from django.urls import Resolver404, resolve

FORM_FIELDS_ROOM = 1024 * 1024   # the submission form's text fields, beside its one file
BLOCK = 256 * 1024
IN_MEMORY = 1024 * 1024           # a spooled chunked body moves to disk past this


def body_limit() -> int:
    return settings.SHELFMARK_MAX_UPLOAD_BYTES + FORM_FIELDS_ROOM


class RequestBodyLimitMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        refusal = self.refusal(request.META)
        if refusal is None and _is_chunked(request.META):
            refusal = self.spool_chunked(request)
        if refusal is not None:
            request.META["shelfmark.close_connection"] = True   # leaderboard/wsgi.py: gunicorn hangs up
            return refusal
        response = self.get_response(request)
        spool = getattr(request, "_spooled_body", None)
        if spool is not None:
            response._resource_closers.append(spool.close)
        return response

    @staticmethod
    def refusal(meta) -> HttpResponse | None:
        limit = body_limit()
        length = meta.get("CONTENT_LENGTH") or ""
        if _is_chunked(meta) and not meta.get("wsgi.input_terminated"):
            return _refuse(411, "Send the request with a Content-Length: a body of unknown length is not accepted.")
        try:
            declared = int(length) if length else 0
        except ValueError:
            return _refuse(400, "The request's Content-Length is not a number.")
        if declared < 0:
            return _refuse(400, "The request's Content-Length is negative.")
        if declared > limit:
            return _refuse(413, f"The request is {filesizeformat(declared)}, more than the upload limit of "
                                f"{filesizeformat(settings.SHELFMARK_MAX_UPLOAD_BYTES)}; nothing of it was read.")
        return None

    @staticmethod
    def spool_chunked(request) -> HttpResponse | None:
        """Read a chunked body up to the limit into a spooled file and hand Django that, with its length.
        Only a view that takes uploads (`accepts_uploads`) gets the upload limit; others get the form
        fields' room."""
        limit = body_limit() if _accepts_uploads(request.path_info) else FORM_FIELDS_ROOM
        stream = request.META["wsgi.input"]
        spool = tempfile.SpooledTemporaryFile(max_size=IN_MEMORY)  # noqa: SIM115 (lives with the request)
        size = 0
        while block := stream.read(BLOCK):
            size += len(block)
            if size > limit:
                spool.close()
                return _refuse(413, f"The request passed the limit of {filesizeformat(limit)} for this address; "
                                    "the rest was not read.")
            spool.write(block)
        spool.seek(0)
        request.META["CONTENT_LENGTH"] = str(size)
        request._stream = LimitedStream(spool, size)
        request._spooled_body = spool   # closed with the response (RequestBodyLimitMiddleware.__call__)
        return None


def accepts_uploads(view):
    """Mark a view that takes a file upload: a chunked body to it may be as large as the upload limit."""
    view.accepts_uploads = True
    return view


def _accepts_uploads(path: str) -> bool:
    try:
        return getattr(resolve(path).func, "accepts_uploads", False)
    except Resolver404:
        return False


def _is_chunked(meta) -> bool:
    return "chunked" in meta.get("HTTP_TRANSFER_ENCODING", "").lower() and not meta.get("CONTENT_LENGTH")


def _refuse(status: int, message: str) -> HttpResponse:
    response = HttpResponse(message + "\n", status=status, content_type="text/plain; charset=utf-8")
    response["Connection"] = "close"   # the body was not read: the connection cannot carry another request
    return response
