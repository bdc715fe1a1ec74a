"""MIT Indoor 67: `Images/<class>/<file>.jpg` with the official `TrainImages.txt` and
`TestImages.txt` (`<class>/<file>.jpg` a line; a few names contain spaces, so whole lines are
read). Images in neither list are unused. Scored by mean class accuracy.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from workers.datasets._files import malformed, read_lines, require_dir, require_images
from workers.datasets.base import ClassificationData, ImageRecord

NAME = "mit67"
LISTS = {"train": "TrainImages.txt", "test": "TestImages.txt"}


def load(root: Path) -> ClassificationData:
    """Read ROOT/TrainImages.txt and ROOT/TestImages.txt against ROOT/Images/."""
    root = Path(root)
    entries: dict[str, list[tuple[str, str]]] = {}
    for split, filename in LISTS.items():
        path = root / filename
        entries[split] = []
        for number, line in enumerate(read_lines(NAME, path), start=1):
            relative = line.strip("\r\n").lstrip("/")
            cls, sep, file = relative.partition("/")
            if not sep or not cls or not file:
                raise malformed(NAME, path, number, line, "expected '<class>/<file>'")
            entries[split].append((cls, relative))
    images = require_dir(NAME, root / "Images")
    classes = sorted({cls for rows in entries.values() for cls, _ in rows})
    index = {cls: i for i, cls in enumerate(classes)}
    splits = {
        split: [ImageRecord(id=relative, path=images / relative) for _, relative in rows]
        for split, rows in entries.items()
    }
    labels = {split: np.array([index[cls] for cls, _ in rows], dtype=np.int64) for split, rows in entries.items()}
    for records in splits.values():
        require_images(NAME, records)
    return ClassificationData(name=NAME, classes=classes, splits=splits, labels=labels, info={"root": str(root)})
