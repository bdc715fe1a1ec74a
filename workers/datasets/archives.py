"""Extracting a downloaded archive as untrusted input.

Every member is checked before a byte of it is written: absolute paths, `..`, links, devices and
FIFOs refuse the whole archive, and the bytes written are counted against a bound (the headers'
sizes are not trusted). Members are written by hand, never by `tarfile.extractall`, so nothing in
the archive chooses permissions, owners or link targets. The caller extracts into a temporary
folder and moves it into place only when every archive succeeded. A tar of tars (ImageNet's train
archive) is read as one stream, each inner tar checked the same way as it goes by (`extract_nested`).
"""
from __future__ import annotations

import hashlib
import lzma
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from workers.datasets.base import DatasetError

CHUNK = 1 << 20
# SUN397, the largest benchmark, holds about 109k images: an archive of millions of (empty) members is
# an inode bomb the byte bound does not catch.
MAX_MEMBERS = 1_000_000
# ImageNet's train archive holds 1,281,167 images in 1,000 per-class tars: the bound for a tar of tars.
MAX_NESTED_MEMBERS = 1_500_000
_SKIPPED_TOPS = {"__MACOSX"}       # resource forks a Mac's zip adds beside the real files


class ArchiveRefused(DatasetError):
    """The archive holds a member that could write outside its folder, or unpacks past its bound."""


class ArchiveBroken(DatasetError):
    """The archive cannot be read to its end (truncated or corrupt)."""


def member_parts(name: str, archive: str) -> list[str]:
    """The path components of a member, refused when it is absolute or climbs out with `..`."""
    if name.startswith(("/", "\\")) or (name[1:2] == ":" and name[:1].isalpha() and name[2:3] in ("", "/", "\\")):
        raise ArchiveRefused(f"{archive}: member {name!r} has an absolute path; nothing was extracted")
    parts = [part for part in name.replace("\\", "/").split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ArchiveRefused(f"{archive}: member {name!r} climbs out of its folder with '..'; nothing was extracted")
    return parts


class _Writer:
    """Places members under `target/into`, counting bytes against `max_bytes`."""

    def __init__(self, archive: str, target: Path, into: str, flatten: bool, max_bytes: int,
                 max_members: int = MAX_MEMBERS):
        self.archive, self.flatten, self.max_bytes, self.max_members = archive, flatten, max_bytes, max_members
        self.members = 0
        self.root = target.resolve()
        self.base = (target / into) if into else target
        self.into_name = PurePosixPath(into).name if into else ""
        self.strip: bool | None = None     # the archive already holds `into/` at its top: do not nest it
        self.written = 0
        self.flattened: set[str] = set()

    def destination(self, parts: list[str], is_dir: bool) -> Path | None:
        self.members += 1
        if self.members > self.max_members:
            raise ArchiveRefused(f"{self.archive} holds more than {self.max_members} members, the bound for any "
                                 "benchmark; nothing was extracted")
        if self.flatten:
            if is_dir:
                return None
            if parts[-1] in self.flattened:
                raise ArchiveRefused(f"{self.archive}: two members are named {parts[-1]!r}; flattened, one would "
                                     "overwrite the other")
            self.flattened.add(parts[-1])
            return self.base / parts[-1]
        if self.strip is None:
            self.strip = bool(self.into_name) and parts[0] == self.into_name and (is_dir or len(parts) > 1)
        if self.strip and parts[0] == self.into_name:
            parts = parts[1:]
            if not parts:
                return None if is_dir else self.base
        path = self.base.joinpath(*parts)
        if not path.resolve().is_relative_to(self.root):
            raise ArchiveRefused(f"{self.archive}: member {'/'.join(parts)!r} would land outside its folder")
        return path

    def write(self, source: BinaryIO, path: Path, hashers: list | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as out:
            while block := source.read(CHUNK):
                self.written += len(block)
                if self.written > self.max_bytes:
                    raise ArchiveRefused(f"{self.archive} unpacks to more than {self.max_bytes} bytes, the bound for "
                                         "its size; nothing was extracted")
                out.write(block)
                for hasher in hashers or ():
                    hasher.update(block)


@contextmanager
def _reading(archive: Path, label: str) -> Iterator[None]:
    """Turn a truncated or corrupt archive's many exception types into one ArchiveBroken line."""
    try:
        yield
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError) as exc:
        raise ArchiveBroken(f"{label}: {archive.name} is broken or truncated ({_first_line(exc)}); "
                            "nothing of it was kept") from None
    except OSError as exc:
        if exc.errno is not None:     # the disk, not the archive: full, read-only, ...
            raise DatasetError(f"{label}: cannot write while extracting {archive.name}: {exc.strerror}") from None
        raise ArchiveBroken(f"{label}: {archive.name} is broken or truncated ({_first_line(exc)}); "
                            "nothing of it was kept") from None


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


def _tar_members(handle: tarfile.TarFile, name: str) -> Iterator[tuple[tarfile.TarInfo, list[str]]]:
    for member in handle:
        parts = member_parts(member.name, name)
        if member.issym() or member.islnk():
            raise ArchiveRefused(f"{name}: member {member.name!r} is a link; links are refused, nothing was extracted")
        if not (member.isreg() or member.isdir()):
            raise ArchiveRefused(f"{name}: member {member.name!r} is a device, FIFO or other special file; "
                                 "nothing was extracted")
        if parts:
            yield member, parts


def _zip_members(handle: zipfile.ZipFile, name: str) -> Iterator[tuple[zipfile.ZipInfo, list[str]]]:
    for member in handle.infolist():
        parts = member_parts(member.filename, name)
        kind = stat.S_IFMT(member.external_attr >> 16)     # 0 where the zip records no Unix file type
        if kind == stat.S_IFLNK:
            raise ArchiveRefused(f"{name}: member {member.filename!r} is a link; links are refused, nothing was "
                                 "extracted")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise ArchiveRefused(f"{name}: member {member.filename!r} is a device, FIFO or other special file; "
                                 "nothing was extracted")
        if member.flag_bits & 1:
            raise ArchiveRefused(f"{name}: member {member.filename!r} is encrypted")
        if parts and parts[0] not in _SKIPPED_TOPS:
            yield member, parts


def _write_members(writer: _Writer, members) -> None:
    """Write each (parts, is_dir, open) of an archive where `writer` puts it; tar and zip alike."""
    for parts, is_dir, open_member in members:
        path = writer.destination(parts, is_dir)
        if path is None:
            continue
        if is_dir:
            path.mkdir(parents=True, exist_ok=True)
        else:
            with open_member() as source:
                writer.write(source, path)


def extract(archive: Path, target: Path, *, kind: str, label: str, max_bytes: int, into: str = "",
            flatten: bool = False, max_members: int = MAX_MEMBERS) -> int:
    """Extract `archive` (kind tar | zip) under `target/into`; returns the bytes written."""
    writer = _Writer(archive.name, Path(target), into, flatten, max_bytes, max_members)
    writer.base.mkdir(parents=True, exist_ok=True)
    with _reading(archive, label):
        if kind == "tar":
            with tarfile.open(archive, "r|*") as handle:
                _write_members(writer, ((parts, member.isdir(), lambda member=member: handle.extractfile(member))
                                        for member, parts in _tar_members(handle, archive.name)))
        elif kind == "zip":
            with zipfile.ZipFile(archive) as handle:
                _write_members(writer, ((parts, member.is_dir(), lambda member=member: handle.open(member))
                                        for member, parts in _zip_members(handle, archive.name)))
        else:
            raise DatasetError(f"{label}: cannot extract a {kind!r} archive")
    return writer.written


def extract_nested(archive: Path, target: Path, *, label: str, max_bytes: int, into: str = "",
                   max_members: int = MAX_NESTED_MEMBERS) -> int:
    """Extract a tar whose members are tars (ImageNet's train archive: n01440764.tar, ...): each inner
    `<name>.tar` goes to `target/into/<name>/`; returns the bytes written.

    Both levels are untrusted: the outer tar may hold only regular `.tar` files (and folders), each
    named once; every inner member passes the checks `extract` makes. The outer tar is read as a
    stream and each inner tar straight from it, so nothing is written but the inner files, and the
    byte and member bounds hold for the whole archive."""
    target = Path(target)
    (target / into if into else target).mkdir(parents=True, exist_ok=True)
    written, members, seen = 0, 0, set()
    with _reading(archive, label), tarfile.open(archive, "r|*") as outer:
        for member, parts in _tar_members(outer, archive.name):
            if member.isdir():
                continue
            name = parts[-1]
            stem = name[:-4] if name.lower().endswith(".tar") else ""
            if not stem or stem.startswith("."):
                raise ArchiveRefused(f"{archive.name}: member {member.name!r} is not a <name>.tar; this archive must "
                                     "hold only the inner tars, nothing was extracted")
            if stem in seen:
                raise ArchiveRefused(f"{archive.name}: two members are named {name!r}; one would overwrite the "
                                     "other, nothing was extracted")
            seen.add(stem)
            members += 1   # each inner tar makes a folder: it counts against the member bound too
            if members > max_members:
                raise ArchiveRefused(f"{archive.name} holds more than {max_members} members, the bound for any "
                                     "benchmark; nothing was extracted")
            inner_name = f"{archive.name}:{name}"
            writer = _Writer(inner_name, target, f"{into}/{stem}" if into else stem, False, max_bytes, max_members)
            writer.written, writer.members = written, members      # the bounds hold for the whole archive
            writer.base.mkdir(parents=True, exist_ok=True)
            with tarfile.open(fileobj=outer.extractfile(member), mode="r|*") as inner:
                _write_members(writer, ((parts, info.isdir(), lambda info=info: inner.extractfile(info))
                                        for info, parts in _tar_members(inner, inner_name)))
            written, members = writer.written, writer.members
    return written


def extract_member(archive: Path, member: str, out: Path, *, kind: str, label: str,
                   max_bytes: int) -> dict[str, str]:
    """Copy one member (an archive inside the archive) to `out`; returns its sha256 and md5.

    The member is matched by its path, or else by its file name alone (a repackaged copy may
    put it in another folder)."""
    wanted = member_parts(member, archive.name)
    writer = _Writer(archive.name, out.parent, "", False, max_bytes)
    hashers = [hashlib.sha256(), hashlib.md5()]
    with _reading(archive, label):
        if kind == "zip":
            with zipfile.ZipFile(archive) as handle:
                members = [(m, p) for m, p in _zip_members(handle, archive.name) if not m.is_dir()]
                chosen = _choose(members, wanted, archive.name)
                with handle.open(chosen) as source:
                    writer.write(source, out, hashers)
        elif kind == "tar":
            with tarfile.open(archive, "r|*") as handle:
                for info, parts in _tar_members(handle, archive.name):
                    if info.isreg() and (parts == wanted or parts[-1] == wanted[-1]):
                        writer.write(handle.extractfile(info), out, hashers)
                        break
                else:
                    raise ArchiveBroken(f"{label}: {archive.name} holds no member {member!r}")
        else:
            raise DatasetError(f"{label}: cannot look inside a {kind!r} archive")
    return {"sha256": hashers[0].hexdigest(), "md5": hashers[1].hexdigest()}


def _choose(members: list, wanted: list[str], name: str):
    exact = [m for m, parts in members if parts == wanted]
    by_name = [m for m, parts in members if parts[-1] == wanted[-1]]
    if exact or len(by_name) == 1:
        return (exact or by_name)[0]
    raise ArchiveBroken(f"{name} holds no member {'/'.join(wanted)!r}")
