"""`python -m workers prepare BENCHMARK ...`: build a benchmark's prepared-images stores ahead of any model.

    python -m workers prepare BENCHMARK [--data ROOT] --prepared DIR (--model NAME | --resize N
                              [--interpolation bilinear|bicubic|nearest] [--mode shorter|squash])
                              [--jitter] [--split NAME ...] [--workers N] [--jpeg-decoder auto|pil|simplejpeg]

Each split the evaluation extracts (classification: every train and test split, SUN397's partitions
too; retrieval: the database, and the queries that are cropped to a box or are not database images)
gets a store of its images decoded and resized as the model's preprocessing does up to the resize
(`--model` reads it from the model's configuration, without weights; or give `--resize` etc.).
A later `evaluate --prepared DIR` of any model with that resize reads it instead of the files.
Prints one line per split: built, or already there.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    prepare = subparsers.add_parser("prepare", help="decode and resize a benchmark's images once, for every model")
    prepare.add_argument("benchmark", help="benchmark name (see 'benchmarks')")
    prepare.add_argument("--data", type=Path, help="ROOT of the benchmark's official distribution")
    prepare.add_argument("--data-option", "-o", action="append", default=[], metavar="KEY=VALUE",
                         help="a reader option, as for evaluate")
    prepare.add_argument("--prepared", type=Path, required=True, metavar="DIR", help="the prepared-images folder")
    prepare.add_argument("--shard-size", type=int, default=0, metavar="N",
                         help="for the site's jobs: its SHELFMARK_SHARD_SIZE (a split of more images is read in "
                              "slices of N, one store each); 0: whole splits, as `evaluate` reads them")
    what = prepare.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", help="prepare for this model's preprocessing (its configuration; no weights read)")
    what.add_argument("--resize", type=int, metavar="N", help="the shorter side (both sides with --mode squash)")
    prepare.add_argument("--interpolation", default="bilinear", choices=("bilinear", "bicubic", "nearest"),
                         help="with --resize")
    prepare.add_argument("--mode", default="shorter", choices=("shorter", "squash"), help="with --resize")
    prepare.add_argument("--jitter", action="store_true", help="with --model: for ten-view jittering (resize 1.14x "
                                                               "the crop)")
    prepare.add_argument("--split", action="append", dest="splits", metavar="NAME",
                         help="only this split (repeatable; default: every split an evaluation extracts)")
    prepare.add_argument("--hub-cache", type=Path, help="Hugging Face cache, for a Hub model's configuration")
    prepare.add_argument("--batch-size", type=int, default=32)
    prepare.add_argument("--workers", type=int, default=2, help="DataLoader worker processes that decode")
    prepare.add_argument("--jpeg-decoder", default="auto", choices=("auto", "pil", "simplejpeg"))
    prepare.add_argument("--quiet", action="store_true", help="no progress bar")
    prepare.set_defaults(func=prepare_command)


def _resize(args: argparse.Namespace):
    from workers.contract import EngineError
    from workers.preprocessing import DataConfig
    from workers.prepared import Resize

    if args.model:
        from workers import families

        config = families.preview(args.model, cache_dir=args.hub_cache)["preprocessing"]
        return Resize.of(DataConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}),
                         args.jitter)
    if args.resize < 1:
        raise EngineError(f"--resize {args.resize}: give a positive size")
    if args.jitter:
        raise EngineError("--jitter needs --model (its crop size sets the jitter resize); give --resize directly")
    return Resize(args.resize, args.mode, args.interpolation)


def evaluation_splits(data) -> dict[str, list]:
    """The record lists an evaluation extracts, by the split name it passes (workers/evaluate.py)."""
    from workers.datasets.base import ClassificationData

    if isinstance(data, ClassificationData):
        return {name: data.splits[name] for pair in data.partition_splits() for name in pair}
    position = {record.id for record in data.database}
    queries = [q.image for q in data.queries if q.image.box is not None or q.image.id not in position]
    return {"database": data.database, **({"queries": queries} if queries else {})}


def prepare_command(args: argparse.Namespace) -> int:
    from workers.benchmarks import get_benchmark
    from workers.cli_evaluate import _ProgressBar
    from workers.contract import EngineError
    from workers.prepared import PreparedStore
    from workers.shards import shard_ranges

    benchmark = get_benchmark(args.benchmark)
    resize = _resize(args)
    data = benchmark.load(args.data, **benchmark.parse_options(args.data_option))
    splits = evaluation_splits(data)
    if args.splits:
        unknown = [name for name in args.splits if name not in splits]
        if unknown:
            raise EngineError(f"{benchmark.name} has no split {unknown[0]!r} to prepare "
                              f"(it has {', '.join(splits)})")
        splits = {name: splits[name] for name in args.splits}
    store = PreparedStore(args.prepared)
    bar = _ProgressBar(enabled=not args.quiet)
    try:
        for split, records in splits.items():
            # in the slices a sharded job reads its images in (workers/shards.py): one store each
            for start, stop in shard_ranges(len(records), args.shard_size):
                part = records[start:stop]
                built = store.prepare(part, resize, dataset=benchmark.name, split=split,
                                      jpeg_decoder=args.jpeg_decoder, batch_size=args.batch_size,
                                      num_workers=args.workers, progress=bar)
                bar.close()
                where = f" {start + 1}-{stop}" if len(part) < len(records) else ""
                print(f"{benchmark.name} {split}{where}: {len(part)} images at {resize.size} ({resize.mode}, "
                      f"{resize.interpolation}) {'prepared' if built else 'already prepared'} in {args.prepared}",
                      file=sys.stderr)
    finally:
        bar.close()
    return 0
