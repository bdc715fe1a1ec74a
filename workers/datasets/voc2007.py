"""PASCAL VOC2007 classification: `VOCdevkit/VOC2007` with trainval and test (the test archive
extracts into the same tree). Labels per class come from `ImageSets/Main/<class>_<split>.txt`
(`<id> <1|-1|0>`; 0 = only difficult objects). Scored by the devkit's 11-point mAP.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from workers.datasets._files import malformed, read_lines, require_dir, require_images
from workers.datasets.base import ClassificationData, DatasetError, ImageRecord

NAME = "voc2007"
CLASSES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
]
SPLITS = ("trainval", "test")


def _split_ids(main: Path, split: str) -> list[str]:
    path = main / f"{split}.txt"
    ids = []
    for number, line in enumerate(read_lines(NAME, path), start=1):
        fields = line.split()
        if len(fields) != 1:
            raise malformed(NAME, path, number, line, "expected one image id")
        ids.append(fields[0])
    return ids


def _class_labels(main: Path, cls: str, split: str, ids: list[str]) -> np.ndarray:
    path = main / f"{cls}_{split}.txt"
    by_id: dict[str, int] = {}
    for number, line in enumerate(read_lines(NAME, path), start=1):
        fields = line.split()
        if len(fields) != 2 or fields[1] not in ("1", "-1", "0"):
            raise malformed(NAME, path, number, line, "expected '<id> <1|-1|0>'")
        by_id[fields[0]] = int(fields[1])
    differing = [image_id for image_id in ids if image_id not in by_id] or sorted(set(by_id) - set(ids))
    if differing:
        raise DatasetError(f"{NAME}: {path} and {split}.txt list different images (e.g. {differing[0]})")
    return np.array([by_id[image_id] for image_id in ids], dtype=np.int64)


def load(root: Path, splits: tuple[str, ...] = SPLITS) -> ClassificationData:
    """Read the VOC2007 classification lists under ROOT/VOCdevkit/VOC2007."""
    base = require_dir(NAME, Path(root) / "VOCdevkit" / "VOC2007")
    main = require_dir(NAME, base / "ImageSets" / "Main")
    images = base / "JPEGImages"
    records: dict[str, list[ImageRecord]] = {}
    labels: dict[str, np.ndarray] = {}
    for split in splits:
        ids = _split_ids(main, split)
        records[split] = [ImageRecord(id=image_id, path=images / f"{image_id}.jpg") for image_id in ids]
        labels[split] = np.stack([_class_labels(main, cls, split, ids) for cls in CLASSES], axis=1)
        require_images(NAME, records[split])
    return ClassificationData(
        name=NAME,
        classes=list(CLASSES),
        splits=records,
        labels=labels,
        train_split="trainval",
        test_split="test",
        multilabel=True,
        metric="voc07_map",
        info={"root": str(base)},
    )
