"""What this installation holds: each ROOT's record of its last fetch and check, and the status list.

`fetch` and `check` write `ROOT/.shelfmark.json` (per benchmark: the counts the reader found, when,
and for a fetch the archives with their sha256 and whether a recorded checksum verified them), so
that `datasets status` and the site's installation page answer without reading a dataset again.
`status --check` reads every configured copy anew. How to add a missing benchmark is said once,
here: the fetch command line and the SHELFMARK_DATA_ROOTS entry the site reads.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from workers.contract import EngineError

RECORD = ".shelfmark.json"
DOWNLOADS = ".shelfmark-downloads"
ROOTS_SETTING = "SHELFMARK_DATA_ROOTS"
DEFAULT_PARENT = "/data"


def now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def read_record(root: Path) -> dict[str, Any]:
    """The record of ROOT ({"benchmarks": {name: entry}}), empty when there is none or it is unreadable."""
    try:
        record = json.loads((Path(root) / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"benchmarks": {}}
    if not isinstance(record, dict) or not isinstance(record.get("benchmarks"), dict):
        return {"benchmarks": {}}
    return record


def update_record(root: Path, benchmark: str, **fields: Any) -> Path:
    """Merge `fields` into ROOT's entry for `benchmark`, written atomically."""
    root = Path(root)
    record = read_record(root)
    record["benchmarks"].setdefault(benchmark, {}).update(fields)
    path = root / RECORD
    temporary = path.with_name(f"{RECORD}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(temporary, path)
    return path


def check_copy(benchmark: str, root: Path, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """What `datasets check` prints: the reader's counts of the copy at ROOT (a DatasetError if broken)."""
    from workers.benchmarks import load_dataset
    from workers.datasets import describe

    return describe(load_dataset(benchmark, root, **(options or {})))


def record_check(root: Path, benchmark: str, summary: dict[str, Any], options: dict[str, Any] | None = None) -> None:
    """Keep a passing check's counts in ROOT's record; a read-only ROOT is left as it is."""
    with contextlib.suppress(OSError):
        update_record(root, benchmark, checked_at=now(), check=summary, options=options or {}, broken=None)


def record_broken(root: Path, benchmark: str, reason: str) -> None:
    """A failed check replaces the counts of the last passing one: status must not go on saying it runs."""
    if Path(root).is_dir():
        with contextlib.suppress(OSError):
            update_record(root, benchmark, checked_at=now(), check=None, broken=reason)


def parse_roots(text: str) -> dict[str, Path]:
    """ "name=ROOT,name=ROOT" (SHELFMARK_DATA_ROOTS, --data-roots) as a mapping."""
    roots = {}
    for item in (text or "").split(","):
        name, sep, root = item.partition("=")
        if sep and name.strip() and root.strip():
            roots[name.strip()] = Path(root.strip())
    return roots


def suggested_root(benchmark: str, roots: dict[str, Path]) -> str:
    """Where a new benchmark's copy would go: beside the configured ones when they share a folder."""
    parents = {str(PurePosixPath(str(path)).parent) for path in roots.values()}
    parent = parents.pop() if len(parents) == 1 else DEFAULT_PARENT
    return f"{parent.rstrip('/')}/{benchmark}"


def roots_line(benchmark: str, root: str, roots: dict[str, Path | str]) -> str:
    """The SHELFMARK_DATA_ROOTS value with `benchmark` added (the setting the site and workers read)."""
    entries = {name: str(path) for name, path in roots.items()}
    entries[benchmark] = root
    return f"{ROOTS_SETTING}=" + ",".join(f"{name}={path}" for name, path in entries.items())


@dataclass
class BenchmarkStatus:
    name: str
    title: str
    kind: str
    state: str                    # bundled | ready | unchecked | missing | broken | absent
    runnable: bool | None         # None: configured but never checked (status --check reads it)
    root: str | None = None
    images: int | None = None
    queries: int | None = None
    classes: int | None = None
    checked_at: str | None = None
    archives: str = ""            # verified | unverified | "" (not fetched by Shelfmark)
    detail: str = ""
    fetch_command: str = ""
    roots_line: str = ""
    source_note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _counts(row: BenchmarkStatus, summary: dict[str, Any]) -> None:
    row.images, row.queries, row.classes = summary.get("images"), summary.get("queries"), summary.get("classes")


def _fetched(entry: dict[str, Any]) -> str:
    if not entry.get("fetched_at"):
        return ""
    return "verified" if entry.get("verified") else "unverified"


def _how_to_add(row: BenchmarkStatus, roots: dict[str, Path], sources: dict) -> None:
    root = str(roots[row.name]) if row.name in roots else suggested_root(row.name, roots)
    row.fetch_command = f"python -m workers datasets fetch {row.name} {root}"
    row.roots_line = roots_line(row.name, root, roots)
    source = sources.get(row.name)
    if source is None:
        row.source_note = "no download source is recorded: extract the official archives into ROOT by hand"
    elif source.unavailable:
        names = " ".join(f"--mirror {archive.name}=URL" for archive in source.archives if not archive.urls)
        row.source_note = f"{source.unavailable}: download it from a copy you trust and give its URL"
        row.fetch_command += f" {names}"
    elif not all(archive.verifiable for archive in source.archives):
        unverified = [archive.name for archive in source.archives if not archive.verifiable]
        row.source_note = (f"not verifiable: no checksum is recorded for {', '.join(unverified)}; fetch records the "
                           "sha256 it computes")


def benchmark_status(roots: dict[str, Path], *, check: bool = False,
                     instruction_roots: dict[str, Path] | None = None) -> list[BenchmarkStatus]:
    """Every benchmark: whether it runs here, where its data is, its counts, and how to add it.

    `instruction_roots` (default: `roots`) are the folders the how-to commands are written with: the
    site passes none to users who should not see the server's paths."""
    shown = roots if instruction_roots is None else instruction_roots
    from workers.benchmarks import BENCHMARKS
    from workers.datasets import describe
    from workers.datasets.sources import load_sources

    sources = load_sources()
    rows = []
    for name, benchmark in BENCHMARKS.items():
        row = BenchmarkStatus(name=name, title=benchmark.title, kind=benchmark.kind, state="absent", runnable=False)
        rows.append(row)
        if not benchmark.needs_root:
            row.state, row.runnable, row.detail = "bundled", True, "ships with the installed packages"
            if check:
                _counts(row, describe(benchmark.load()))
                row.checked_at = now()
            continue
        root = roots.get(name)
        if root is None:
            row.detail = f"not in {ROOTS_SETTING}"
            _how_to_add(row, shown, sources)
            continue
        row.root = str(root)
        entry = read_record(root)["benchmarks"].get(name, {})
        row.archives = _fetched(entry)
        if not Path(root).is_dir():
            row.state, row.detail = "missing", "folder not found"
            _how_to_add(row, shown, sources)
        elif check:
            try:
                summary = check_copy(name, root)
            except EngineError as exc:
                record_broken(root, name, str(exc))
                row.state, row.detail, row.checked_at = "broken", str(exc), now()
                _how_to_add(row, shown, sources)
                continue
            record_check(root, name, summary)
            row.state, row.runnable, row.checked_at = "ready", True, now()
            _counts(row, summary)
        elif entry.get("broken"):
            row.state, row.detail, row.checked_at = "broken", entry["broken"], entry.get("checked_at")
            _how_to_add(row, shown, sources)
        elif entry.get("check"):
            row.state, row.runnable, row.checked_at = "ready", True, entry.get("checked_at")
            _counts(row, entry["check"])
        else:
            row.state, row.runnable = "unchecked", None
            row.detail = f"never checked: python -m workers datasets check {name} {root}"
    return rows
