"""CUB-200-2011: `CUB_200_2011/` with `images.txt`, `image_class_labels.txt`,
`train_test_split.txt` (1 = train), `classes.txt` and `bounding_boxes.txt` (`<id> x y w h`,
turned into the x1, y1, x2, y2 box that [1] crops to). Scored by mean class accuracy.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from workers.datasets._files import read_fields, require_dir, require_images
from workers.datasets.base import ClassificationData, DatasetError, ImageRecord

NAME = "cub200_2011"


def _by_id(path: Path, rows: list[list], ids: set[int]) -> dict[int, list]:
    table = {row[0]: row[1:] for row in rows}
    if set(table) != ids:
        missing = sorted(ids - set(table))
        raise DatasetError(f"{NAME}: {path} does not cover the images of images.txt (e.g. id {missing[:1] or '?'})")
    return table


def load(root: Path) -> ClassificationData:
    """Read the CUB-200-2011 lists under ROOT/CUB_200_2011 (boxes included)."""
    base = require_dir(NAME, Path(root) / "CUB_200_2011")
    images = base / "images"
    image_rows = read_fields(NAME, base / "images.txt", 2, (int, str))
    ids = {row[0] for row in image_rows}
    if len(ids) != len(image_rows):
        raise DatasetError(f"{NAME}: {base / 'images.txt'} repeats an image id")
    class_rows = read_fields(NAME, base / "classes.txt", 2, (int, str))
    classes = [name for _, name in sorted(class_rows)]
    class_ids = {number for number, _ in class_rows}
    labels_file, split_file = base / "image_class_labels.txt", base / "train_test_split.txt"
    labels = _by_id(labels_file, read_fields(NAME, labels_file, 2, (int, int)), ids)
    is_train = _by_id(split_file, read_fields(NAME, split_file, 2, (int, int)), ids)
    boxes = _by_id(
        base / "bounding_boxes.txt",
        read_fields(NAME, base / "bounding_boxes.txt", 5, (int, float, float, float, float)),
        ids,
    )
    unknown = sorted({label[0] for label in labels.values()} - class_ids)
    if unknown:
        raise DatasetError(f"{NAME}: image_class_labels.txt uses class {unknown[0]} absent from classes.txt")
    class_index = {number: i for i, number in enumerate(sorted(class_ids))}
    splits: dict[str, list[ImageRecord]] = {"train": [], "test": []}
    split_labels: dict[str, list[int]] = {"train": [], "test": []}
    for image_id, relative in image_rows:
        x, y, w, h = boxes[image_id]
        split = "train" if is_train[image_id][0] == 1 else "test"
        splits[split].append(ImageRecord(id=str(image_id), path=images / relative, box=(x, y, x + w, y + h)))
        split_labels[split].append(class_index[labels[image_id][0]])
    for records in splits.values():
        require_images(NAME, records)
    return ClassificationData(
        name=NAME,
        classes=classes,
        splits=splits,
        labels={split: np.array(values, dtype=np.int64) for split, values in split_labels.items()},
        info={"root": str(base), "boxes": "bounding_boxes.txt as x1, y1, x2, y2"},
    )
