"""UKBench: `full/ukbench00000.jpg` ... `ukbench10199.jpg`; every four consecutive numbers show
one object. Every image is a query against all (itself included); scored by the N-S score.
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from workers.datasets._files import and_more, named_images, require_dir
from workers.datasets.base import DatasetError, RetrievalData, RetrievalQuery

NAME = "ukbench"
IMAGE_NAME = re.compile(r"^ukbench(\d{5})$")


def image_number(image_id: str) -> int:
    """12 for 'ukbench00012': the number `ukbench_ns` works with."""
    match = IMAGE_NAME.match(image_id)
    if not match:
        raise ValueError(f"not a UKBench image id: {image_id!r}")
    return int(match.group(1))


def load(root: Path) -> RetrievalData:
    """Read ROOT/full/ukbench*.jpg; each query's `good` is its group of four (itself included)."""
    images = require_dir(NAME, Path(root) / "full")
    database = named_images(NAME, images, IMAGE_NAME, "ukbenchNNNNN.jpg")
    group_sizes = Counter(image_number(record.id) // 4 for record in database)
    incomplete = sorted(group for group, size in group_sizes.items() if size != 4)
    if incomplete:
        first = incomplete[0] * 4
        raise DatasetError(
            f"{NAME}: group {incomplete[0]} (ukbench{first:05d}-ukbench{first + 3:05d}.jpg) is incomplete"
            + and_more(incomplete)
        )
    queries = []
    for record in database:
        first = image_number(record.id) // 4 * 4
        queries.append(
            RetrievalQuery(id=record.id, image=record, good=[f"ukbench{n:05d}" for n in range(first, first + 4)])
        )
    return RetrievalData(
        name=NAME, database=database, queries=queries, metric="ukbench_ns",
        info={"root": str(images), "good": "the query's group of four, the query included"},
    )
