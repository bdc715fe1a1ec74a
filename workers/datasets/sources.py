"""Where each benchmark's official archives come from and what they must hash to (`sources.json`).

The table is data, read once: per benchmark its official page and archives (URL, mirrors, size,
sha256 / md5 with the project that recorded them, or an explicit null with the reason), and how each
archive extracts into the layout its reader expects (`nested`: a tar of tars, ImageNet's train archive,
each inner tar extracted into a folder of its own name). A lab may pass its own table (same shape): its
entries replace the project's for the benchmarks it names. `--mirror ARCHIVE=URL` puts one URL first.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from workers.datasets.base import DatasetError

SOURCES_FILE = Path(__file__).with_name("sources.json")
DIGEST_LENGTHS = {"sha256": 64, "md5": 32}
UNPACK_KINDS = ("tar", "zip", "file")
_HEX = re.compile(r"^[0-9a-f]+$")


@dataclass(frozen=True)
class Inner:
    """An archive inside the download, extracted instead of it (Caltech-101's zip holds a tar.gz)."""

    member: str
    size: int | None = None
    digests: dict[str, str] = field(default_factory=dict)
    checksum_source: str = ""


@dataclass(frozen=True)
class Archive:
    name: str
    urls: tuple[str, ...]                  # the official URL first, then mirrors; empty where the host is gone
    size: int | None = None
    digests: dict[str, str] = field(default_factory=dict)     # {"sha256": hex, "md5": hex}, all verified
    checksum_source: str = ""
    note: str = ""
    unpack: str = "file"
    into: str = ""
    flatten: bool = False
    inner: Inner | None = None
    nested: bool = False      # a tar of tars: each member <name>.tar extracts into INTO/<name>/ (ImageNet train)

    @property
    def verifiable(self) -> bool:
        return bool(self.digests or (self.inner and self.inner.digests))


@dataclass(frozen=True)
class Source:
    benchmark: str
    page: str
    archives: tuple[Archive, ...]
    unavailable: str = ""      # why the official host cannot serve it any more, and what to do


def unpack_kind(name: str) -> str:
    lowered = name.lower()
    if lowered.endswith((".tar", ".tgz", ".tar.gz", ".tar.bz2", ".tar.xz")):
        return "tar"
    if lowered.endswith(".zip"):
        return "zip"
    return "file"


def _digests(where: str, entry: dict) -> dict[str, str]:
    digests = {}
    for kind, length in DIGEST_LENGTHS.items():
        value = entry.get(kind)
        if value is None:
            continue
        if not isinstance(value, str) or len(value) != length or not _HEX.match(value):
            raise DatasetError(f"{where}: {kind} must be {length} lowercase hex digits, not {value!r}")
        digests[kind] = value
    if digests and not str(entry.get("checksum_source", "")).strip():
        raise DatasetError(f"{where}: a checksum needs its checksum_source (who recorded it, for which copy)")
    return digests


def _archive(benchmark: str, entry: dict) -> Archive:
    name = entry.get("name")
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise DatasetError(f"sources: {benchmark} has an archive without a plain file name ({name!r})")
    where = f"sources: {benchmark}/{name}"
    digests = _digests(where, entry)
    if not digests and "checksum" not in entry and "inner" not in entry:
        raise DatasetError(f"{where}: give sha256 or md5, or \"checksum\": null with a note saying why none")
    if "checksum" in entry and (entry["checksum"] is not None or not str(entry.get("note", "")).strip()):
        raise DatasetError(f"{where}: \"checksum\": null must come with a note saying why none is recorded")
    inner = None
    if entry.get("inner") is not None:
        spec = entry["inner"]
        inner = Inner(member=str(spec["member"]), size=spec.get("size"), digests=_digests(f"{where} inner", spec),
                      checksum_source=str(spec.get("checksum_source", "")))
    urls = [entry.get("url")] + list(entry.get("mirrors", []))
    unpack = entry.get("unpack") or unpack_kind(inner.member if inner else name)
    if unpack not in UNPACK_KINDS:
        raise DatasetError(f"{where}: unpack must be one of {', '.join(UNPACK_KINDS)}")
    into = str(entry.get("into", "")).strip("/")
    if into.startswith("/") or ".." in into.split("/"):
        raise DatasetError(f"{where}: into must be a folder inside ROOT")
    nested = entry.get("nested", False)
    if not isinstance(nested, bool) or (nested and (unpack != "tar" or inner is not None or entry.get("flatten"))):
        raise DatasetError(f"{where}: nested must be true or false, and only for a tar without inner or flatten")
    size = entry.get("size")
    if size is not None and (not isinstance(size, int) or size <= 0):
        raise DatasetError(f"{where}: size must be a positive number of bytes")
    return Archive(name=name, urls=tuple(url for url in urls if url), size=size, digests=digests,
                   checksum_source=str(entry.get("checksum_source", "")), note=str(entry.get("note", "")),
                   unpack=unpack, into=into, flatten=bool(entry.get("flatten", False)), inner=inner,
                   nested=nested)


def parse_table(table: dict, origin: str = "sources") -> dict[str, Source]:
    """Every benchmark of a table in sources.json's shape, checked; a malformed entry is a DatasetError."""
    benchmarks = table.get("benchmarks") if isinstance(table, dict) else None
    if not isinstance(benchmarks, dict):
        raise DatasetError(f"{origin}: expected {{\"benchmarks\": {{NAME: {{page, archives}}}}}}")
    sources = {}
    for benchmark, entry in benchmarks.items():
        archives = entry.get("archives") if isinstance(entry, dict) else None
        if not isinstance(archives, list) or not archives:
            raise DatasetError(f"{origin}: {benchmark} has no archives list")
        sources[benchmark] = Source(benchmark=benchmark, page=str(entry.get("page", "")),
                                    archives=tuple(_archive(benchmark, archive) for archive in archives),
                                    unavailable=str(entry.get("unavailable", "")))
    return sources


def _read(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read the source table {path}: {exc}") from None


def load_sources(lab_table: Path | None = None) -> dict[str, Source]:
    """The project's table, with a lab's own table (same shape) replacing the benchmarks it names."""
    sources = parse_table(_read(SOURCES_FILE), str(SOURCES_FILE.name))
    if lab_table is not None:
        sources.update(parse_table(_read(lab_table), str(lab_table)))
    return sources


def source_for(benchmark: str, lab_table: Path | None = None) -> Source | None:
    return load_sources(lab_table).get(benchmark)


def with_mirrors(source: Source, mirrors: dict[str, str]) -> Source:
    """The source with each `mirrors` URL (by archive name) tried first; an unknown name is refused."""
    names = {archive.name for archive in source.archives}
    unknown = sorted(set(mirrors) - names)
    if unknown:
        known = ", ".join(sorted(names))
        raise DatasetError(f"{source.benchmark} has no archive {unknown[0]!r} (its archives: {known})")
    archives = tuple(replace(archive, urls=(mirrors[archive.name], *archive.urls)) if archive.name in mirrors
                     else archive for archive in source.archives)
    return replace(source, archives=archives)


def parse_mirrors(pairs: list[str]) -> dict[str, str]:
    """ARCHIVE=URL pairs (the CLI's --mirror)."""
    mirrors = {}
    for pair in pairs:
        name, sep, url = pair.partition("=")
        if not sep or not name or not url:
            raise DatasetError(f"--mirror {pair!r} is not ARCHIVE=URL")
        mirrors[name] = url
    return mirrors
