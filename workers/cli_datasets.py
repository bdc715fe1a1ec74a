"""`python -m workers datasets fetch` and `datasets status`: thin front ends over workers/datasets/.

    python -m workers datasets fetch NAME ROOT [--mirror ARCHIVE=URL ...] [--sources FILE] [--keep-archives]
                                              [--force] [--max-download-gb GB] [--max-extract-gb GB]
    python -m workers datasets status [--data-roots "name=ROOT,..."] [--check] [--json]

`fetch` prints what it does on stdout, the progress bar on stderr, and last the check's counts as
JSON (as `datasets check` does). `status` reads the roots from --data-roots or else from
SHELFMARK_DATA_ROOTS, the setting the site reads.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

DEFAULT_MAX_GB = 64      # workers.datasets.download.DEFAULT_MAX_BYTES, in GiB
STATE_WORDS = {"bundled": "yes", "ready": "yes", "unchecked": "?", "missing": "no", "broken": "no", "absent": "no"}


def datasets_fetch(args: argparse.Namespace) -> int:
    from workers.datasets.fetch import fetch
    from workers.datasets.sources import parse_mirrors

    max_bytes = int(args.max_extract_gb * 2**30) if args.max_extract_gb else None
    summary = fetch(args.name, args.root, mirrors=parse_mirrors(args.mirror), sources_file=args.sources,
                    keep_archives=args.keep_archives, force=args.force, retries=args.retries, timeout=args.timeout,
                    max_extract_bytes=max_bytes, max_download_bytes=int(args.max_download_gb * 2**30),
                    say=lambda line: print(line, flush=True))
    print(json.dumps(summary))
    return 0


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value


def _cell(value) -> str:
    return "-" if value is None else str(value)


def datasets_status(args: argparse.Namespace) -> int:
    from workers.datasets.installed import ROOTS_SETTING, benchmark_status, parse_roots

    text = args.data_roots if args.data_roots is not None else os.environ.get(ROOTS_SETTING, "")
    roots = parse_roots(text)
    rows = benchmark_status(roots, check=args.check)
    if args.json:
        print(json.dumps([row.to_dict() for row in rows], indent=2))
        return 0
    print(f"{'benchmark':<17} {'runs':<5} {'images':>7} {'queries':>7}  data")
    for row in rows:
        where = row.root or row.detail
        if row.state == "ready":
            fetched = {"verified": ", fetched and verified", "unverified": ", fetched, not verified against a "
                       "recorded checksum"}.get(row.archives, "")
            where = f"{row.root} (checked {row.checked_at}{fetched})"
        elif row.state in ("unchecked", "missing", "broken"):
            where = f"{row.root}: {row.detail}"
        print(f"{row.name:<17} {STATE_WORDS[row.state]:<5} {_cell(row.images):>7} {_cell(row.queries):>7}  {where}")
    missing = [row for row in rows if row.fetch_command and not row.runnable]
    if missing:
        print("\nTo add the others: fetch each into its ROOT, then add NAME=ROOT to " + ROOTS_SETTING + ":")
        for row in missing:
            print(f"  {row.fetch_command}")
            if row.source_note:
                print(f"      ({row.source_note})")
        print(f"  e.g. {missing[0].roots_line}")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    """Add `fetch` and `status` to the `datasets` subcommands (workers/cli.py)."""
    fetch = commands.add_parser("fetch", help="download, verify and extract a benchmark's official archives")
    fetch.add_argument("name", help="benchmark name (see 'datasets list')")
    fetch.add_argument("root", type=Path, help="the folder to extract into (the ROOT readers and --data take)")
    fetch.add_argument("--mirror", action="append", default=[], metavar="ARCHIVE=URL",
                       help="download ARCHIVE (its file name, e.g. 102flowers.tgz) from URL first; it is still "
                            "verified against the recorded checksum")
    fetch.add_argument("--sources", type=Path, metavar="FILE",
                       help="a lab's own source table (workers/datasets/sources.json's shape): its entries replace "
                            "the project's for the benchmarks it names")
    fetch.add_argument("--keep-archives", action="store_true", help="keep the downloads in ROOT/.shelfmark-downloads")
    fetch.add_argument("--force", action="store_true",
                       help="fetch again even if a copy is already in place, replacing the files in ROOT that the "
                            "archives provide and differ (never a folder, a link or anything else)")
    fetch.add_argument("--retries", type=int, default=2, help="resume a dropped download this many times (default 2)")
    fetch.add_argument("--timeout", type=float, default=60.0, help="seconds without data before giving up")
    fetch.add_argument("--max-extract-gb", type=float, metavar="GB",
                       help="refuse an archive that unpacks past this (default: 4x its size + 256 MiB)")
    fetch.add_argument("--max-download-gb", type=_positive, default=DEFAULT_MAX_GB, metavar="GB",
                       help="refuse a download of no recorded size past this (default %(default)s; a recorded size "
                            "is the bound where there is one)")
    fetch.set_defaults(func=datasets_fetch)

    status = commands.add_parser("status", help="which benchmarks run here, their counts, how to add the others")
    status.add_argument("--data-roots", metavar='"name=ROOT,..."',
                        help="the benchmarks' ROOTs (default: the SHELFMARK_DATA_ROOTS environment variable)")
    status.add_argument("--check", action="store_true", help="read every copy again instead of its last record")
    status.add_argument("--json", action="store_true", help="one JSON object per benchmark")
    status.set_defaults(func=datasets_status)
