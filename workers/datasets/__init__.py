"""Readers for the benchmarks' official distributions, by name.

`load_dataset("mit67", ROOT)` reads the copy extracted at ROOT and returns a
`ClassificationData` or `RetrievalData` (see `base.py`); a missing or broken copy raises
`DatasetError` with one line naming what is wrong. Reading checks the list files and that every
referenced image exists, without decoding images (`verify_images` does that).
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from workers.datasets import (
    caltech,
    cub200_2011,
    flowers102,
    holidays,
    mit67,
    oxford,
    sun397,
    ukbench,
    voc2007,
)
from workers.datasets._files import UNREADABLE_IMAGE_ERRORS
from workers.datasets.base import (
    ClassificationData,
    DatasetError,
    ImageRecord,
    RetrievalData,
    RetrievalQuery,
)

Dataset = ClassificationData | RetrievalData

READERS: dict[str, Callable[..., Dataset]] = {
    "voc2007": voc2007.load,
    "mit67": mit67.load,
    "cub200_2011": cub200_2011.load,
    "flowers102": flowers102.load,
    "sun397": sun397.load,
    "caltech101": caltech.load_caltech101,
    "caltech256": caltech.load_caltech256,
    "holidays": holidays.load,
    "oxford5k": oxford.load_oxford5k,
    "paris6k": oxford.load_paris6k,
    "ukbench": ukbench.load,
}

TITLES = {
    "voc2007": "PASCAL VOC2007 classification (VOCdevkit/VOC2007)",
    "mit67": "MIT Indoor 67 (Images/, TrainImages.txt, TestImages.txt)",
    "cub200_2011": "CUB-200-2011 birds (CUB_200_2011/)",
    "flowers102": "Oxford Flowers 102 (jpg/, imagelabels.mat, setid.mat)",
    "sun397": "SUN397 scenes, 10 partitions (SUN397/, Partitions/)",
    "caltech101": "Caltech-101, seeded 30 train / 50 test per class (101_ObjectCategories/)",
    "caltech256": "Caltech-256, seeded 60 train / rest test per class (256_ObjectCategories/)",
    "holidays": "INRIA Holidays retrieval (jpg/)",
    "oxford5k": "Oxford 5k buildings retrieval (oxbuild_images/, gt_files_170407/)",
    "paris6k": "Paris 6k retrieval (paris/, paris_120310/)",
    "ukbench": "UKBench retrieval, N-S score (full/)",
}

__all__ = [
    "READERS",
    "TITLES",
    "ClassificationData",
    "DatasetError",
    "ImageRecord",
    "RetrievalData",
    "RetrievalQuery",
    "describe",
    "load_dataset",
    "reader_options",
    "verify_images",
]


def reader_options(name: str) -> dict[str, Any]:
    """The options a reader takes beyond ROOT, with their defaults (for the CLI and the site)."""
    parameters = list(inspect.signature(_reader(name)).parameters.values())[1:]
    return {p.name: p.default for p in parameters}


def _reader(name: str) -> Callable[..., Dataset]:
    try:
        return READERS[name]
    except KeyError:
        raise DatasetError(f"unknown dataset '{name}' (known: {', '.join(sorted(READERS))})") from None


def load_dataset(name: str, root: str | Path, **options: Any) -> Dataset:
    """Read benchmark `name` from ROOT, the folder its official archives were extracted into."""
    reader = _reader(name)
    unknown = sorted(set(options) - set(reader_options(name)))
    if unknown:
        options = ", ".join(reader_options(name)) or "none"
        raise DatasetError(f"{name}: unknown option '{unknown[0]}' (options: {options})")
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{name}: {root} not found")
    return reader(root, **options)


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
