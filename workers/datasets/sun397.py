"""SUN397: `SUN397/<letter>/<class>/.../*.jpg` with the official ten partitions
`Partitions/Training_01.txt` ... `Testing_10.txt` (lines like `/a/abbey/sun_aaa....jpg`; 50 train
and 50 test images per class each). Results are the mean over partitions; `partition=k` reads
one. Scored by mean class accuracy.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from workers.datasets._files import malformed, read_lines, require_dir, require_images
from workers.datasets.base import ClassificationData, DatasetError, ImageRecord

NAME = "sun397"
PARTITIONS = 10


def _partition_list(partitions: Path, kind: str, k: int) -> list[tuple[str, str]]:
    """(class, relative path) rows; the class is the folder part, e.g. 'a/apartment_building/outdoor'."""
    path = partitions / f"{kind}_{k:02d}.txt"
    rows = []
    for number, line in enumerate(read_lines(NAME, path), start=1):
        relative = line.strip().lstrip("/")
        cls, sep, file = relative.rpartition("/")
        if not sep or "/" not in cls or not file:
            raise malformed(NAME, path, number, line, "expected '/<letter>/<class>/<file>'")
        rows.append((cls, relative))
    return rows


def _class_names(partitions: Path, rows: list[tuple[str, str]]) -> list[str]:
    names_path = partitions / "ClassName.txt"
    if names_path.is_file():
        return [line.strip().lstrip("/") for line in read_lines(NAME, names_path)]
    return sorted({cls for cls, _ in rows})


def load(root: Path, partition: int | None = None) -> ClassificationData:
    """Read the ten official partitions (splits train_k / test_k), or only `partition` k (train / test)."""
    root = Path(root)
    partitions = require_dir(NAME, root / "Partitions")
    images = require_dir(NAME, root / "SUN397")
    if partition is not None and not 1 <= int(partition) <= PARTITIONS:
        raise DatasetError(f"{NAME}: partition must be 1..{PARTITIONS}, not {partition}")
    numbers = range(1, PARTITIONS + 1) if partition is None else [int(partition)]
    lists: dict[str, list[tuple[str, str]]] = {}
    for k in numbers:
        suffix = "" if partition is not None else f"_{k}"
        lists[f"train{suffix}"] = _partition_list(partitions, "Training", k)
        lists[f"test{suffix}"] = _partition_list(partitions, "Testing", k)
    classes = _class_names(partitions, [row for rows in lists.values() for row in rows])
    index = {cls: i for i, cls in enumerate(classes)}
    splits: dict[str, list[ImageRecord]] = {}
    labels: dict[str, np.ndarray] = {}
    for split, rows in lists.items():
        unknown = [cls for cls, _ in rows if cls not in index]
        if unknown:
            raise DatasetError(f"{NAME}: {split} lists class '{unknown[0]}' absent from Partitions/ClassName.txt")
        splits[split] = [ImageRecord(id=relative, path=images / relative) for _, relative in rows]
        labels[split] = np.array([index[cls] for cls, _ in rows], dtype=np.int64)
    require_images(NAME, {record.id: record for records in splits.values() for record in records}.values())
    first = "" if partition is not None else "_1"
    return ClassificationData(
        name=NAME,
        classes=classes,
        splits=splits,
        labels=labels,
        train_split=f"train{first}",
        test_split=f"test{first}",
        partitions=len(numbers) if partition is None else 1,
        info={"root": str(root), "partition": partition if partition is not None else "all"},
    )
