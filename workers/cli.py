"""Command line of the engine: `python -m workers <command> ...`.

    python -m workers datasets list
    python -m workers datasets check NAME ROOT [--verify-images] [--option KEY=VALUE ...]
    python -m workers datasets fetch NAME ROOT  (download, verify, extract, check: workers/cli_datasets.py)
    python -m workers datasets status           (what runs here, its counts, how to add the rest)
    python -m workers evaluate ...          (registered by workers/cli_evaluate.py)
    python -m workers models [NAME]         (workers/cli_models.py)
    python -m workers prepare BENCHMARK ... (decode and resize once for every model: workers/cli_prepare.py)

Each command is a subparser whose handler returns an exit status. Failures a user can act on
(`EngineError`) print one `error: ...` line on stderr and exit 1, without a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence

from workers.contract import EngineError

# ---- datasets ---------------------------------------------------------------------------------

def datasets_list(args: argparse.Namespace) -> int:
    from workers.benchmarks import get_benchmark, official_benchmarks

    for name in official_benchmarks():
        benchmark = get_benchmark(name)
        options = ", ".join(f"{key}={value}" for key, value in benchmark.options().items())
        print(f"{name}\t{benchmark.title} ({benchmark.layout})" + (f"\t[{options}]" if options else ""))
    return 0


def datasets_check(args: argparse.Namespace) -> int:
    from workers.benchmarks import load_dataset, official_benchmark
    from workers.datasets import describe, verify_images
    from workers.datasets._files import and_more

    options = official_benchmark(args.name).parse_options(args.option)
    if args.verify_images and "verify_images" in official_benchmark(args.name).options():
        options["verify_images"] = True
    from workers.datasets.installed import record_broken, record_check

    try:
        data = load_dataset(args.name, args.root, **options)
        summary = describe(data)
        if args.verify_images:
            unreadable = verify_images(data)
            if unreadable:
                raise EngineError(f"{args.name}: image {unreadable[0]} cannot be decoded{and_more(unreadable)}")
            summary["verified_images"] = True
    except EngineError as exc:
        record_broken(args.root, args.name, str(exc))
        raise
    record_check(args.root, args.name, summary, options)   # what `datasets status` and the site read
    print(json.dumps(summary))
    return 0


def add_datasets_parser(subparsers: argparse._SubParsersAction) -> None:
    datasets = subparsers.add_parser("datasets", help="list the dataset readers; check, fetch or report local copies")
    commands = datasets.add_subparsers(dest="datasets_command", required=True,
                                       metavar="{list,check,fetch,status}")
    listing = commands.add_parser("list", help="the benchmarks a local copy can be read for")
    listing.set_defaults(func=datasets_list)
    check = commands.add_parser("check", help="read a copy at ROOT and print its counts as JSON")
    check.add_argument("name", help="dataset name (see 'datasets list')")
    check.add_argument("root", help="the folder the official archives were extracted into")
    check.add_argument("--verify-images", action="store_true", help="also decode every image (slow)")
    check.add_argument(
        "--option", "-o", action="append", default=[], metavar="KEY=VALUE",
        help="a reader option, e.g. seed=1 (caltech), partition=3 (sun397)",
    )
    check.set_defaults(func=datasets_check)
    from workers import cli_datasets

    cli_datasets.register(commands)


# ---- evaluate ---------------------------------------------------------------------------------
# The `evaluate` command lives in workers/cli_evaluate.py, which exposes `register(subparsers)`.
# It is optional here so that this CLI works before (or without) it.

def add_evaluate_parser(subparsers: argparse._SubParsersAction) -> None:
    try:
        cli_evaluate = importlib.import_module("workers.cli_evaluate")
    except ModuleNotFoundError as exc:
        if exc.name != "workers.cli_evaluate":
            raise
        return
    cli_evaluate.register(subparsers)


# ---- entry point ------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    from workers import cli_models, cli_prepare

    parser = argparse.ArgumentParser(prog="python -m workers", description="Shelfmark evaluation engine")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_datasets_parser(subparsers)
    add_evaluate_parser(subparsers)
    cli_models.register(subparsers)
    cli_prepare.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
