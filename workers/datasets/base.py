"""What every dataset reader returns: plain records the extractor and the protocols consume.

A reader is pointed at ROOT (where the official archives were extracted) and returns a
`ClassificationData` or a `RetrievalData`. Missing or broken copies raise `DatasetError` with
one line that names what is missing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from workers.contract import EngineError


class DatasetError(EngineError):
    """The copy at ROOT is missing something or is malformed."""


@dataclass
class ImageRecord:
    """One image. Exactly one of `path` (a file) and `pixels` (H x W x 3 uint8, demo sets) is set."""

    id: str
    path: Path | None = None
    pixels: np.ndarray | None = None
    box: tuple[float, float, float, float] | None = None   # x1, y1, x2, y2 crop, where the protocol gives one


@dataclass
class ClassificationData:
    """Images with labels and named splits. Multi-label sets (VOC) use labels in {1, -1, 0} per class."""

    name: str
    classes: list[str]
    splits: dict[str, list[ImageRecord]]
    # single-label: labels[split] is an int array (n,); multi-label: an int array (n, n_classes) of 1/-1/0
    labels: dict[str, np.ndarray]
    train_split: str = "train"
    test_split: str = "test"
    multilabel: bool = False
    metric: str = "mean_class_accuracy"      # mean_class_accuracy | voc07_map
    partitions: int = 1                      # SUN397: 10 official partitions (splits named train_1, test_1, ...)
    info: dict = field(default_factory=dict)

    def partition_splits(self) -> list[tuple[str, str]]:
        """(train split, test split) of each partition, scored apart then averaged (SUN397's ten)."""
        if self.partitions <= 1:
            return [(self.train_split, self.test_split)]
        pairs = [(f"train_{k}", f"test_{k}") for k in range(1, self.partitions + 1)]
        missing = [s for pair in pairs for s in pair if s not in self.splits]
        if missing:
            raise DatasetError(f"{self.name}: partition split {missing[0]!r} missing")
        return pairs


@dataclass
class RetrievalQuery:
    id: str                       # the query's own image id
    image: ImageRecord            # the query image (with its box for Oxford/Paris)
    good: list[str] = field(default_factory=list)
    ok: list[str] = field(default_factory=list)
    junk: list[str] = field(default_factory=list)
    name: str | None = None    # the protocol's own name for the query ("all_souls_1"), where it has one


@dataclass
class RetrievalData:
    """A database of images and the queries searched against it, scored by `metric`."""

    name: str
    database: list[ImageRecord]
    queries: list[RetrievalQuery]
    metric: str                   # oxford_map | holidays_map | ukbench_ns
    info: dict = field(default_factory=dict)
