"""Downloading one archive: resumed over HTTP with Range, hashed as it arrives, with a progress bar.

The bytes go to `NAME.part`, kept between runs, and `NAME.part.source` says where they came from
(the URL, and the server's ETag / Last-Modified): the next run resumes (`bytes=N-`, with `If-Range`)
only from that same URL, so a mirror's bytes are never appended to another's. A server that answers
with the whole file (200: it ignores Range, or the file changed) is handled by starting again; a
connection that drops leaves the part file and says how to resume. No more bytes are taken than the
recorded size (or, where none is recorded, `max_bytes`): a broken or hostile server cannot fill the
disk. Only a complete download is handed back (as the part file, with its digests): the caller
verifies it and renames it.
"""
from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import re
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from workers.datasets.base import DatasetError

CHUNK = 1 << 20
DEFAULT_MAX_BYTES = 64 * 2**30      # the bound for a file whose size nobody recorded (--max-download-gb)
USER_AGENT = "shelfmark-datasets/1 (python urllib)"
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
# What a dropped connection looks like while the body is read.
_DROPPED = (http.client.IncompleteRead, http.client.HTTPException, ConnectionError, TimeoutError, OSError)


class DownloadUnreachable(DatasetError):
    """The URL could not be opened (host gone, HTTP error): another mirror may serve the file."""


class DownloadInterrupted(DatasetError):
    """The connection dropped mid-file: the part file is kept, the next run resumes it."""


class DownloadTooLarge(DatasetError):
    """The server sends (or announces) more than the file can be: refused and deleted, another mirror may serve it."""


@dataclass
class Download:
    part: Path                 # the complete download, still named NAME.part
    size: int
    digests: dict[str, str]    # sha256 and md5 of the whole file
    resumed_from: int          # bytes already there that this run kept (0: from the start)
    restarted: bool            # the server sent the whole file (Range ignored, or the file changed): started again


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count} B"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """tqdm's bar (bytes, bytes/s, ETA) on a terminal; elsewhere a plain line every 10% or 30 s."""

    def __init__(self, label: str, total: int | None, initial: int = 0, stream: TextIO | None = None):
        self.label, self.total, self.done, self.stream = label, total, initial, stream or sys.stderr
        self.started, self.initial = time.monotonic(), initial
        self.bar = None
        if self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                            desc=label, file=self.stream, dynamic_ncols=True, leave=True)
        else:
            # No line yet: the caller has just said "downloading URL" (or "resuming ..."), with the bytes there.
            self.shown_at, self.shown_tenth = self.started, initial * 10 // total if total else 0
            self.shown_done = initial

    def update(self, count: int) -> None:
        self.done += count
        if self.bar is not None:
            self.bar.update(count)
            return
        tenth = self.done * 10 // self.total if self.total else 0
        now = time.monotonic()
        if tenth > self.shown_tenth or now - self.shown_at >= 30:
            self.shown_at, self.shown_tenth = now, tenth
            self._line()

    def _line(self) -> None:
        elapsed = time.monotonic() - self.started
        rate = (self.done - self.initial) / elapsed if elapsed > 0 else 0.0
        of = f" of {human_bytes(self.total)} ({100 * self.done // self.total}%)" if self.total else ""
        eta = (f", ETA {_duration((self.total - self.done) / rate)}" if self.total and rate > 0
               and self.done < self.total else "")
        print(f"{self.label}: {human_bytes(self.done)}{of}, {human_bytes(rate)}/s{eta}", file=self.stream, flush=True)
        self.shown_done = self.done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.done != self.shown_done:     # the last bytes (or where a dropped connection left off)
            self._line()


def _hash_existing(part: Path, hashers: list) -> None:
    with open(part, "rb") as handle:
        while block := handle.read(CHUNK):
            for hasher in hashers:
                hasher.update(block)


def origin_file(part: Path) -> Path:
    """Where the URL (and ETag / Last-Modified) that `part`'s bytes came from is kept."""
    return part.with_name(part.name + ".source")


def _read_origin(part: Path) -> dict[str, str]:
    try:
        origin = json.loads(origin_file(part).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return origin if isinstance(origin, dict) and isinstance(origin.get("url"), str) else {}


def _write_origin(part: Path, url: str, headers) -> None:
    origin = {"url": url, "etag": headers.get("ETag"), "last_modified": headers.get("Last-Modified")}
    origin_file(part).write_text(json.dumps(origin), encoding="utf-8")


def discard(part: Path) -> None:
    """Delete a part file and the record of where it came from."""
    for path in (part, origin_file(part)):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def resumable_bytes(part: Path, url: str) -> int:
    """The bytes of `part` a download from `url` would keep: 0 unless they came from that same URL."""
    if not url.lower().startswith(("http://", "https://")) or not part.is_file():
        return 0
    return part.stat().st_size if _read_origin(part).get("url") == url else 0


def _validator(origin: dict[str, str]) -> str | None:
    """The If-Range value: a strong ETag, else Last-Modified (a weak ETag may not be used)."""
    etag = origin.get("etag")
    if etag and not etag.startswith("W/"):
        return etag
    return origin.get("last_modified") or None


def _open(url: str, start: int, timeout: float, if_range: str | None = None):
    headers = {"User-Agent": USER_AGENT}
    if start:
        headers["Range"] = f"bytes={start}-"
        if if_range:
            headers["If-Range"] = if_range     # the file changed since: the server sends all of it (200)
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:
            return exc      # Range not satisfiable: the part file may already be whole
        raise DownloadUnreachable(f"{url} answered HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadUnreachable(f"cannot open {url}: {reason}") from None


def download(url: str, part: Path, *, label: str, expected_size: int | None = None,
             max_bytes: int = DEFAULT_MAX_BYTES, timeout: float = 60, stream: TextIO | None = None) -> Download:
    """Fetch `url` into `part` (resuming what is there from the same URL), returning it once complete."""
    part.parent.mkdir(parents=True, exist_ok=True)
    start = resumable_bytes(part, url)
    if expected_size is not None and start > expected_size:
        start = 0          # longer than the file can be: not a prefix of it
    origin = _read_origin(part) if start else {}
    response = _open(url, start, timeout, _validator(origin))
    restarted = False
    status = getattr(response, "status", None) or getattr(response, "code", None)
    if status == 416:
        total = _range_total(response.headers.get("Content-Range"))
        response.close()
        if start and (total == start or (total is None and expected_size == start)):
            return _finished(part, start, start, restarted=False)
        start, restarted = 0, True
        response = _open(url, 0, timeout)
        status = getattr(response, "status", None)
    total = None
    if start and status == 206:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        etag = response.headers.get("ETag")
        if not match or int(match.group(1)) != start or (origin.get("etag") and etag and etag != origin["etag"]):
            response.close()     # another range, or (a server ignoring If-Range) the bytes of a changed file
            start, restarted = 0, True
            response = _open(url, 0, timeout)
        elif match.group(3) != "*":
            total = int(match.group(3))
    elif start:
        start, restarted = 0, True   # the server sends the whole file (Range ignored, or it changed): start again
    if total is None:
        length = response.headers.get("Content-Length")
        total = start + int(length) if length and length.isdigit() else None
    bound = expected_size if expected_size is not None else max_bytes
    if total is not None and total > bound:
        response.close()
        if start:
            discard(part)      # a prefix of that file: not of the one recorded
        raise _too_large(label, url, bound, expected_size, announced=total)
    total = total if total is not None else expected_size
    hashers = [hashlib.sha256(), hashlib.md5()]
    if start:
        _hash_existing(part, hashers)
    else:
        _write_origin(part, url, response.headers)
    received = start
    progress = Progress(label, total, start, stream)
    # read1: whatever has arrived (up to CHUNK), so the bar moves on a slow link; read waits for a whole CHUNK.
    read = getattr(response, "read1", None) or response.read
    try:
        with response, open(part, "ab" if start else "wb") as out:
            while True:
                try:
                    block = read(CHUNK)
                except _DROPPED as exc:
                    raise _interrupted(label, part, received, total, exc) from None
                if not block:
                    break
                if received + len(block) > bound:
                    raise _too_large(label, url, bound, expected_size)
                out.write(block)
                for hasher in hashers:
                    hasher.update(block)
                received += len(block)
                progress.update(len(block))
    except DownloadTooLarge:
        discard(part)
        raise
    finally:
        progress.close()
    if total is not None and received < total:
        raise _interrupted(label, part, received, total, None)
    return Download(part=part, size=received, digests={"sha256": hashers[0].hexdigest(), "md5": hashers[1].hexdigest()},
                    resumed_from=start, restarted=restarted)


def _too_large(label: str, url: str, bound: int, expected_size: int | None, announced: int | None = None
               ) -> DownloadTooLarge:
    if expected_size is not None:
        said = (f"says the file is {announced} bytes where {expected_size} are recorded" if announced is not None
                else f"sent more than the {expected_size} bytes recorded for the file")
        return DownloadTooLarge(f"{label}: {url} {said}; refused, nothing of it was kept (a broken mirror, or one "
                                "serving another file)")
    said = f"says the file is {human_bytes(announced)}" if announced is not None else "sent more"
    return DownloadTooLarge(f"{label}: {url} {said}, past the {human_bytes(bound)} bound for a file of no recorded "
                            "size; refused, nothing of it was kept (--max-download-gb raises the bound)")


def _finished(part: Path, size: int, start: int, restarted: bool) -> Download:
    hashers = [hashlib.sha256(), hashlib.md5()]
    _hash_existing(part, hashers)
    return Download(part=part, size=size, digests={"sha256": hashers[0].hexdigest(), "md5": hashers[1].hexdigest()},
                    resumed_from=start, restarted=restarted)


def _range_total(header: str | None) -> int | None:
    match = re.match(r"^bytes \*/(\d+)$", header or "")
    return int(match.group(1)) if match else None


def _interrupted(label: str, part: Path, received: int, total: int | None,
                 exc: Exception | None) -> DownloadInterrupted:
    of = f" of {human_bytes(total)}" if total else ""
    why = f" ({type(exc).__name__})" if exc is not None else ""
    return DownloadInterrupted(
        f"{label}: the connection dropped after {human_bytes(received)}{of}{why}; the {received} bytes are kept "
        f"in {part} and the next run resumes from there"
    )
