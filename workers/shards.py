"""Extraction in shards: a large benchmark's images cut into fixed slices, each extracted on its own (by
any worker, at any time) into the feature cache, and read back by the one job that trains and scores.

A shard is the images [start, stop) of one extraction request: the records `run_evaluation` extracts for
a split, with that split's jitter mode. Boundaries are multiples of `shard_size` in the split's record
order and each shard is one feature-cache entry (the cache key covers the shard's own image ids), so:

- `plan(spec)` lists the shards of an evaluation (what the site sends as a group of tasks);
- `workers.evaluate.extract_shard(spec, shard)` extracts one of them into `spec.cache_dir`;
- `run_evaluation` with `spec.shard_size` reads the split shard by shard (`by_shard`), extracting itself
  any shard that is not in the cache: the result is the same whether the shards ran on one worker, on
  many, or not at all, and a shard whose worker died is simply extracted again, alone.

What is sharded: classification benchmarks' train and test splits (every partition), retrieval
benchmarks' database. Queries and whitening sets are small and are extracted by the scoring job.
The cache folder must be one the workers share (one machine, or a network file system).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from workers.contract import EngineError, EvaluationSpec
from workers.datasets.base import ClassificationData, ImageRecord


@dataclass(frozen=True)
class Shard:
    """Images [start, stop) of `split`, extracted with `jitter` (None | "average" | "keep")."""

    split: str
    start: int
    stop: int
    jitter: str | None = None

    @property
    def images(self) -> int:
        return self.stop - self.start

    def to_dict(self) -> dict:
        return asdict(self)


def shard_ranges(count: int, shard_size: int) -> list[tuple[int, int]]:
    """[start, stop) slices of `count` items, `shard_size` each (the last one shorter); one slice when
    `shard_size` is 0 or covers everything."""
    if shard_size < 0:
        raise EngineError(f"shard size must be >= 0, got {shard_size}")
    if not shard_size or count <= shard_size:
        return [(0, count)]
    return [(start, min(start + shard_size, count)) for start in range(0, count, shard_size)]


def by_shard(extract: Callable[[Sequence[ImageRecord]], np.ndarray], records: Sequence[ImageRecord],
             shard_size: int) -> np.ndarray:
    """`extract(records)` one shard at a time, concatenated: each shard is its own feature-cache entry,
    the same entry `extract_shard` fills."""
    parts = [extract(records[start:stop]) for start, stop in shard_ranges(len(records), shard_size)]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def extraction_requests(spec: EvaluationSpec, data) -> list[tuple[str, list[ImageRecord], str | None]]:
    """(split, records, jitter) of every request `run_evaluation` makes that is worth sharding, each once."""
    if isinstance(data, ClassificationData):
        requests = []
        for train_split, test_split in data.partition_splits():
            requests.append((train_split, data.splits[train_split], "keep" if spec.jitter else None))
            requests.append((test_split, data.splits[test_split], "average" if spec.jitter else None))
        return list({split: (split, records, jitter) for split, records, jitter in requests}.values())
    return [("database", data.database, "average" if spec.jitter else None)]


def plan(spec: EvaluationSpec, data=None) -> list[Shard]:
    """The shards of `spec` (its `shard_size` images each); [] when it has no more than `shard_size` images
    to extract in all (or precomputed features): nothing worth splitting."""
    if spec.features is not None:
        return []   # precomputed features: nothing to extract
    if data is None:
        data = benchmark_data(spec)
    requests = extraction_requests(spec, data)
    if not spec.shard_size or sum(len(records) for _, records, _ in requests) <= spec.shard_size:
        return []
    return [Shard(split, start, stop, jitter) for split, records, jitter in requests
            for start, stop in shard_ranges(len(records), spec.shard_size)]


def shard_records(spec: EvaluationSpec, data, shard: Shard) -> list[ImageRecord]:
    """The records of `shard` in the benchmark as read now; a shard outside it is refused, saying why."""
    requests = {split: records for split, records, _ in extraction_requests(spec, data)}
    if shard.split not in requests or not 0 <= shard.start < shard.stop <= len(requests[shard.split]):
        raise EngineError(f"{spec.benchmark}: no images {shard.start}-{shard.stop} in split {shard.split!r}; "
                          "the benchmark's copy changed since the job was planned")
    return requests[shard.split][shard.start:shard.stop]


def benchmark_data(spec: EvaluationSpec):
    """The benchmark as read for planning and for shards, kept for this process's next shards of the same
    copy: listing ImageNet's 1.33 M files takes ~25 s, extracting a 10,000-image shard ~10 s on a GPU."""
    options = json.dumps(spec.data_options, sort_keys=True, default=str)
    return _read(spec.benchmark, str(spec.data_root) if spec.data_root else "", options)


@lru_cache(maxsize=1)   # ImageNet's records hold ~1 GB: one benchmark at a time
def _read(benchmark: str, root: str, options: str):
    from workers.benchmarks import get_benchmark

    return get_benchmark(benchmark).load(Path(root) if root else None, **json.loads(options))
