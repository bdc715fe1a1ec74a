"""Readers for the benchmarks' official distributions, and checks of a local copy.

Each module reads one distribution from ROOT (where its official archives were extracted) and returns a
`ClassificationData` or `RetrievalData` (see `base.py`); a missing or broken copy raises `DatasetError`
with one line naming what is wrong. Reading checks the list files and that every referenced image
exists, without decoding images (`verify_images` does that). Which reader serves which benchmark is
declared once, in the benchmark registry (`workers.benchmarks`: `load_dataset(name, ROOT)`).
"""
from __future__ import annotations

from typing import Any

from PIL import Image

from workers.datasets._files import UNREADABLE_IMAGE_ERRORS
from workers.datasets.base import (
    ClassificationData,
    DatasetError,
    ImageRecord,
    RetrievalData,
    RetrievalQuery,
)

Dataset = ClassificationData | RetrievalData

__all__ = [
    "ClassificationData",
    "DatasetError",
    "ImageRecord",
    "RetrievalData",
    "RetrievalQuery",
    "describe",
    "verify_images",
]


def _records(data: Dataset) -> list[ImageRecord]:
    """Every distinct image of a dataset, once."""
    if isinstance(data, ClassificationData):
        records = [record for split in data.splits.values() for record in split]
    else:
        records = list(data.database) + [query.image for query in data.queries]
    unique = {}
    for record in records:
        unique.setdefault(record.path or record.id, record)
    return list(unique.values())


def describe(data: Dataset) -> dict[str, Any]:
    """Counts to check a copy against the official figures: images, classes, splits, queries."""
    summary: dict[str, Any] = {"name": data.name}
    if isinstance(data, ClassificationData):
        summary["images"] = len({record.id for split in data.splits.values() for record in split})
        summary["classes"] = len(data.classes)
        summary["splits"] = {split: len(records) for split, records in data.splits.items()}
        if data.partitions > 1:
            summary["partitions"] = data.partitions
    else:
        summary["images"] = len(data.database)
        summary["queries"] = len(data.queries)
    summary["metric"] = data.metric
    skipped = data.info.get("skipped")
    if skipped:
        summary["skipped"] = len(skipped)
    return summary


def verify_images(data: Dataset) -> list[str]:
    """Decode every image of `data` fully; returns the paths PIL could not read (slow: all pixels)."""
    unreadable = []
    for record in _records(data):
        if record.path is None:
            continue
        try:
            with Image.open(record.path) as image:
                image.load()
        except UNREADABLE_IMAGE_ERRORS:
            unreadable.append(str(record.path))
    return unreadable
