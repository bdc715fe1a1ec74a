"""`python -m workers datasets fetch NAME ROOT`: download, verify, extract, check.

1. Each archive in the benchmark's source (sources.json) is downloaded into ROOT/.shelfmark-downloads/,
   resumed from `NAME.part` when it came from the same URL (download.py), and its size and every
   recorded checksum are verified. A wrong checksum deletes the download; a short one stays as `.part`
   for the next run; a server sending more than the recorded size is cut off. Where nobody recorded a
   checksum, the sha256 computed here is recorded and the copy is reported unverified. A local file (a
   `file://` URL or a path, e.g. `--mirror ILSVRC2012_img_train.tar=/mnt/imagenet/ILSVRC2012_img_train.tar`)
   is verified and extracted where it is, never copied, and never deleted, whatever it holds.
2. All archives are extracted into ROOT/.fetch-NAME.tmp (archives.py: untrusted input), the reader
   checks that folder, and only then are its entries moved into ROOT: every clash with what ROOT
   holds (a link, a file where a folder goes, a file that differs) is found before anything moves,
   and refuses the move with ROOT unchanged. Any failure removes the folder: nothing half-extracted
   is left where a reader would find it.
3. The check of `datasets check` runs on ROOT and its counts go into ROOT's record (installed.py).
"""
from __future__ import annotations

import contextlib
import filecmp
import hashlib
import os
import shutil
import stat
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, TextIO

from workers.datasets import installed
from workers.datasets.archives import ArchiveBroken, ArchiveRefused, extract, extract_member, extract_nested
from workers.datasets.base import DatasetError
from workers.datasets.download import (
    DEFAULT_MAX_BYTES,
    DownloadInterrupted,
    DownloadTooLarge,
    DownloadUnreachable,
    discard,
    download,
    human_bytes,
    resumable_bytes,
)
from workers.datasets.sources import Archive, Source, source_for, unpack_kind, with_mirrors

EXTRACT_FACTOR, EXTRACT_SLACK = 4, 256 * 2**20     # an archive may unpack to 4x its size + 256 MiB
SHOWN_CLASHES = 10


class ChecksumMismatch(DatasetError):
    """A complete download is not the file the table records: it was deleted."""


@dataclass
class Obtained:
    archive: Archive
    path: Path
    url: str
    size: int
    digests: dict[str, str]
    verified: list[str] = field(default_factory=list)     # the recorded checksums it matched
    local: bool = False        # a file of this machine, read where it is: never deleted

    def record(self) -> dict[str, Any]:
        return {"name": self.archive.name, "url": self.url, "size": self.size, **self.digests,
                "verified_against": self.verified, "checksum_source": self.archive.checksum_source
                if self.verified else self.archive.note}


def _hash_file(path: Path) -> dict[str, str]:
    sha256, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            sha256.update(block)
            md5.update(block)
    return {"sha256": sha256.hexdigest(), "md5": md5.hexdigest()}


def verify(label: str, path: Path, size: int, digests: dict[str, str], *, expected_size: int | None,
           expected: dict[str, str], source: str) -> list[str]:
    """Check a complete file against the recorded size and checksums; returns the kinds it matched.

    A file shorter than recorded is kept (the next run resumes it); a longer or different one is deleted."""
    if expected_size is not None and size < expected_size:
        raise DownloadInterrupted(f"{label}: only {size} of the {expected_size} bytes recorded arrived; they are kept "
                                  f"in {path} and the next run resumes from there")
    if expected_size is not None and size > expected_size:
        path.unlink(missing_ok=True)
        raise ChecksumMismatch(f"{label}: {size} bytes where {expected_size} are recorded ({source}); the download was "
                               "deleted and nothing was extracted")
    for kind, value in expected.items():
        if digests[kind] != value:
            path.unlink(missing_ok=True)
            raise ChecksumMismatch(
                f"{label}: checksum mismatch: its {kind} is {digests[kind]}, the recorded one is {value} ({source}). "
                "The download was deleted and nothing was extracted: run again to download it afresh (a mirror "
                "that serves this file holds another file)"
            )
    return sorted(expected)


def local_file(url: str) -> Path | None:
    """The file a `file://` URL (of this host) or a plain path names; None for a URL to download."""
    if url.lower().startswith("file://"):
        parsed = urllib.parse.urlparse(url)
        if parsed.netloc not in ("", "localhost"):
            return None
        return Path(urllib.request.url2pathname(parsed.path))
    if "://" in url:
        return None
    return Path(url).expanduser().absolute()


def _verify_local(label: str, path: Path, archive: Archive) -> Obtained:
    """A local copy checked where it is; a wrong one is refused and left as it is."""
    size = path.stat().st_size
    if archive.size is not None and size != archive.size:
        raise ChecksumMismatch(f"{label}: {path} is {size} bytes where {archive.size} are recorded "
                               f"({archive.checksum_source}): it is not the file recorded. It was left as it is and "
                               "nothing was extracted")
    digests = _hash_file(path)
    for kind, value in archive.digests.items():
        if digests[kind] != value:
            raise ChecksumMismatch(f"{label}: checksum mismatch: the {kind} of {path} is {digests[kind]}, the recorded "
                                   f"one is {value} ({archive.checksum_source}). It was left as it is and nothing was "
                                   "extracted: it is not the file recorded")
    return Obtained(archive, path, path.as_uri(), size, digests, sorted(archive.digests), local=True)


def _obtain(archive: Archive, downloads: Path, label: str, *, retries: int, timeout: float, max_download_bytes: int,
            say: Callable[[str], None], stream: TextIO | None) -> Obtained:
    """The archive, downloaded (or kept from an earlier run) and verified."""
    target, part = downloads / archive.name, downloads / f"{archive.name}.part"
    check = {"expected_size": archive.size, "expected": archive.digests, "source": archive.checksum_source}
    if target.is_file():
        digests, size = _hash_file(target), target.stat().st_size
        try:
            verified = verify(label, target, size, digests, **check)
        except DatasetError as exc:
            target.unlink(missing_ok=True)
            say(f"{label}: the download kept from an earlier run does not verify ({exc}); downloading again")
        else:
            say(f"{label}: using the download kept from an earlier run ({human_bytes(size)})")
            return Obtained(archive, target, "(kept)", size, digests, verified)
    failed = []
    for url in archive.urls:
        local = local_file(url)
        if local is not None:
            if not local.is_file():
                failed.append(f"{local} is not a file")
                continue
            say(f"{label}: reading {local} where it is (not copied), checking its size and checksums")
            return _verify_local(label, local, archive)
        for attempt in range(retries + 1):
            kept, there = resumable_bytes(part, url), part.stat().st_size if part.is_file() else 0
            if kept:
                say(f"{label}: resuming from {url}, {human_bytes(kept)} already in {part.name}")
            elif there:
                say(f"{label}: downloading {url} (the {human_bytes(there)} in {part.name} came from another URL, "
                    "or cannot be resumed from this one: starting again)")
            else:
                say(f"{label}: downloading {url}")
            try:
                done = download(url, part, label=label, expected_size=archive.size, max_bytes=max_download_bytes,
                                timeout=timeout, stream=stream)
            except DownloadUnreachable as exc:
                failed.append(str(exc))
                break
            except DownloadTooLarge as exc:
                say(str(exc))
                failed.append(_first_clause(exc))
                break
            except DownloadInterrupted as exc:
                if attempt == retries:
                    raise
                say(f"{exc}; retrying ({attempt + 1} of {retries})")
                time.sleep(min(2 ** attempt, 30))
                continue
            if done.restarted:
                say(f"{label}: the server sent the whole file, not the rest (it ignores Range, or the file changed "
                    "since the part was downloaded), so the download started again from the start")
            try:
                verified = verify(label, part, done.size, done.digests, **check)
            except ChecksumMismatch:
                discard(part)
                raise
            os.replace(part, target)
            discard(part)      # the record of where the part came from
            return Obtained(archive, target, url, done.size, done.digests, verified)
    tried = "; ".join(failed) or "no URL is recorded"
    raise DatasetError(f"{label}: no URL served the file ({tried}); give one that does with "
                       f"--mirror {archive.name}=URL")


def _unpack(item: Obtained, staging: Path, label: str, max_bytes: int | None, say: Callable[[str], None]) -> None:
    archive = item.archive
    bound = max_bytes or EXTRACT_FACTOR * item.size + EXTRACT_SLACK
    if archive.unpack == "file" and archive.inner is None:
        destination = staging / archive.into / archive.name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(item.path, destination)
        return
    source = item.path
    if archive.inner is not None:
        inner = archive.inner
        source = staging / f".inner-{PurePosixPath(inner.member).name}"
        digests = extract_member(item.path, inner.member, source, kind=unpack_kind(archive.name), label=label,
                                 max_bytes=bound)
        try:
            verify(f"{label}:{inner.member}", source, source.stat().st_size, digests, expected_size=inner.size,
                   expected=inner.digests, source=inner.checksum_source)
        except (ChecksumMismatch, DownloadInterrupted) as exc:
            # Downloading again cannot help: the archive is whole (and verified, where a checksum is recorded).
            outer = (f"verified ({', '.join(item.verified)})" if item.verified
                     else "not verified against a recorded checksum")
            raise ChecksumMismatch(
                f"{label}: the archive arrived whole and {outer}, but {inner.member} inside it is not the file "
                f"recorded ({_first_clause(exc)}). Nothing was extracted; the download is kept in {item.path}. To "
                "accept this copy, fetch with --sources FILE whose entry has no inner checksum") from None
        if inner.digests:
            say(f"{label}: {inner.member} inside it verified ({', '.join(sorted(inner.digests))})")
        bound = max_bytes or EXTRACT_FACTOR * source.stat().st_size + EXTRACT_SLACK
    say(f"{label}: extracting")
    if archive.nested:
        extract_nested(source, staging, label=label, max_bytes=bound, into=archive.into)
    else:
        extract(source, staging, kind=archive.unpack, label=label, max_bytes=bound, into=archive.into,
                flatten=archive.flatten)
    if source != item.path:
        source.unlink()


def _first_clause(exc: Exception) -> str:
    text = str(exc)
    return text.split(". ", 1)[0].split("; ", 1)[0].split(": ", 1)[-1]


def _plan_merge(staging: Path, root: Path, force: bool) -> tuple[list[tuple[Path, Path]], list[str]]:
    """The moves that put `staging`'s entries into ROOT, and every clash with what ROOT holds, found
    before anything moves. A link in ROOT is never followed or replaced, a folder never replaced by a
    file; a file that differs is replaced only with --force (identical ones are left as they are)."""
    moves, clashes = [], []

    def visit(source: Path, final: Path, shown: str) -> None:
        try:
            mode = os.lstat(final).st_mode
        except FileNotFoundError:
            moves.append((source, final))
            return
        is_dir = source.is_dir()     # the staged entries are files and folders only (archives.py)
        if stat.S_ISLNK(mode):
            clashes.append(f"{shown} is a symbolic link in ROOT (links there are never followed or replaced)")
        elif stat.S_ISDIR(mode) and is_dir:
            for child in sorted(source.iterdir()):
                visit(child, final / child.name, f"{shown}/{child.name}")
        elif stat.S_ISDIR(mode):
            clashes.append(f"{shown} is a folder in ROOT where the archive has a file")
        elif not stat.S_ISREG(mode):
            clashes.append(f"{shown} is a device, FIFO or socket in ROOT")
        elif is_dir or not filecmp.cmp(source, final, shallow=False):
            if force:
                moves.append((source, final))      # a file the archive provides: --force replaces it
            elif is_dir:
                clashes.append(f"{shown} is a file in ROOT where the archive has a folder (--force replaces it)")
            else:
                clashes.append(f"{shown} in ROOT differs from the archive's (--force replaces it)")

    reserved = {installed.RECORD, installed.DOWNLOADS}
    for entry in sorted(staging.iterdir()):
        if entry.name in reserved or entry.name.startswith(".fetch-"):
            clashes.append(f"{entry.name} is a name fetch keeps for itself in ROOT")
        else:
            visit(entry, root / entry.name, entry.name)
    for folder in sorted({final.parent for _, final in moves}):
        if not os.access(folder, os.W_OK | os.X_OK):
            clashes.append(f"{folder.relative_to(root).as_posix() if folder != root else '.'} is not writable")
    return moves, clashes


def _move_into_place(benchmark: str, staging: Path, root: Path, force: bool) -> tuple[list[str], int]:
    """Move the checked extraction into ROOT: all of it, or (on any clash) nothing. Returns the top
    entries placed and how many files --force replaced."""
    moves, clashes = _plan_merge(staging, root, force)
    if clashes:
        more = f"; and {len(clashes) - SHOWN_CLASHES} more" if len(clashes) > SHOWN_CLASHES else ""
        raise DatasetError(
            f"{benchmark}: the archives clash with what {root} holds: {'; '.join(clashes[:SHOWN_CLASHES])}{more}. "
            f"Nothing was moved into {root}; move those aside (--force replaces only the files marked so) and run "
            f"again: the downloads are kept in {root / installed.DOWNLOADS}")
    placed = [entry.name + ("/" if entry.is_dir() else "") for entry in sorted(staging.iterdir())]
    replaced = 0
    for source, final in moves:
        if os.path.lexists(final):
            replaced += 1
            if source.is_dir():
                final.unlink()       # --force: a file where the archive has a folder
        os.replace(source, final)
    return placed, replaced


def _unavailable(source: Source, benchmark: str, root: Path) -> None:
    missing = [archive.name for archive in source.archives if not archive.urls]
    if missing:
        why = source.unavailable or "no download URL is recorded"
        mirrors = " ".join(f"--mirror {name}=URL" for name in missing)
        checked = ("each is verified against its recorded checksum"
                   if all(archive.verifiable for archive in source.archives if not archive.urls)
                   else "it is checked but cannot be verified against a recorded checksum")
        raise DatasetError(f"{benchmark}: {why}. Download {', '.join(missing)} from a copy you trust, then run: "
                           f"python -m workers datasets fetch {benchmark} {root} {mirrors} (an http, https or "
                           f"file:// URL, or a local path, read where it is); {checked}")


def fetch(benchmark: str, root: Path, *, mirrors: dict[str, str] | None = None, sources_file: Path | None = None,
          keep_archives: bool = False, force: bool = False, retries: int = 2, timeout: float = 60.0,
          max_extract_bytes: int | None = None, max_download_bytes: int = DEFAULT_MAX_BYTES,
          say: Callable[[str], None] = print, stream: TextIO | None = None) -> dict[str, Any]:
    """Download, verify and extract `benchmark`'s official archives into ROOT; returns the check's counts."""
    from workers.benchmarks import get_benchmark, official_benchmark

    if not get_benchmark(benchmark).needs_root:
        raise DatasetError(f"{benchmark} ships with the installed packages: there is nothing to fetch")
    official_benchmark(benchmark)
    source = source_for(benchmark, sources_file)
    if source is None:
        raise DatasetError(f"{benchmark}: no download source is recorded; extract its official archives into ROOT "
                           "by hand, then run python -m workers datasets check")
    source = with_mirrors(source, mirrors or {})
    root = Path(root)
    _unavailable(source, benchmark, root)
    root.mkdir(parents=True, exist_ok=True)
    if not force:
        try:
            summary = installed.check_copy(benchmark, root)
        except DatasetError:
            pass
        else:
            installed.record_check(root, benchmark, summary)
            say(f"{benchmark}: already in place at {root} ({summary.get('images')} images); --force fetches it again")
            return summary
    say(f"{benchmark}: {len(source.archives)} file(s) from {source.page or 'the recorded URLs'}")
    downloads = root / installed.DOWNLOADS
    try:
        return _fetch_into(benchmark, root, source, downloads, keep_archives=keep_archives, force=force,
                           retries=retries, timeout=timeout, max_extract_bytes=max_extract_bytes,
                           max_download_bytes=max_download_bytes, say=say, stream=stream)
    finally:
        with contextlib.suppress(OSError):
            downloads.rmdir()     # only when empty: a kept download or part file stays for the next run


def _fetch_into(benchmark: str, root: Path, source: Source, downloads: Path, *, keep_archives: bool, force: bool,
                retries: int, timeout: float, max_extract_bytes: int | None, max_download_bytes: int,
                say: Callable[[str], None], stream: TextIO | None) -> dict[str, Any]:
    obtained = []
    for archive in source.archives:
        label = f"{benchmark}/{archive.name}"
        item = _obtain(archive, downloads, label, retries=retries, timeout=timeout,
                       max_download_bytes=max_download_bytes, say=say, stream=stream)
        if item.verified:
            say(f"{label}: {human_bytes(item.size)}, {' and '.join(item.verified)} verified "
                f"(recorded by {archive.checksum_source})")
        elif not archive.verifiable:
            say(f"{label}: {human_bytes(item.size)}, not verified against a recorded checksum ({archive.note}); "
                f"its sha256 {item.digests['sha256']} is recorded in {root / installed.RECORD}")
        obtained.append(item)
    staging = root / f".fetch-{benchmark}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        for item in obtained:
            try:
                _unpack(item, staging, f"{benchmark}/{item.archive.name}", max_extract_bytes, say)
            except (ArchiveBroken, ArchiveRefused) as exc:
                if item.local:
                    raise type(exc)(f"{exc}; {item.path} was left as it is") from None
                item.path.unlink(missing_ok=True)    # a bad file, not a short one: the next run downloads afresh
                raise type(exc)(f"{exc}; the download was deleted") from None
        try:
            installed.check_copy(benchmark, staging)
        except DatasetError as exc:
            raise DatasetError(f"{benchmark}: the archives extracted but do not hold the layout the reader expects "
                               f"({exc}); nothing was moved into {root}") from None
        placed, replaced = _move_into_place(benchmark, staging, root, force)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    also = f" ({replaced} file(s) that differed replaced, --force)" if replaced else ""
    say(f"{benchmark}: in place in {root}: {', '.join(placed)}{also}")
    summary = installed.check_copy(benchmark, root)
    installed.update_record(root, benchmark, fetched_at=installed.now(), archives=[item.record() for item in obtained],
                            verified=all(item.archive.verifiable for item in obtained),
                            checked_at=installed.now(), check=summary, options={}, broken=None)
    if not keep_archives:
        for item in obtained:
            if not item.local:
                item.path.unlink(missing_ok=True)
    return summary
