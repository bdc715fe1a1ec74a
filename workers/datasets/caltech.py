"""Caltech-101 and Caltech-256: one folder of images per class, no official split. The usual
protocol draws N training images per class at random (30 for 101, 60 for 256) and tests on the
rest (at most 50 per class for 101). The draw is seeded per class, so a given seed always
yields the same split of the same copy. Scored by mean class accuracy.
"""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from workers.datasets._files import list_images, require_dir
from workers.datasets.base import ClassificationData, DatasetError, ImageRecord


def _seeded_split(cls: str, files: list[Path], seed: int, n_train: int, n_test: int | None):
    """Shuffle the sorted file list with a generator seeded by (seed, class name), then cut."""
    rng = np.random.default_rng([int(seed), zlib.crc32(cls.encode("utf-8"))])
    order = rng.permutation(len(files))
    train = [files[i] for i in order[:n_train]]
    rest = [files[i] for i in order[n_train:]]
    test = rest if n_test is None else rest[:n_test]
    return sorted(train), sorted(test)


def _load(
    name: str,
    folder: Path,
    excluded: set[str],
    seed: int,
    train_per_class: int,
    test_per_class: int | None,
) -> ClassificationData:
    require_dir(name, folder)
    classes = sorted(entry.name for entry in folder.iterdir() if entry.is_dir() and entry.name not in excluded)
    if not classes:
        raise DatasetError(f"{name}: no class folder in {folder}")
    splits: dict[str, list[ImageRecord]] = {"train": [], "test": []}
    labels: dict[str, list[int]] = {"train": [], "test": []}
    for index, cls in enumerate(classes):
        files = list_images(folder / cls)
        if len(files) <= train_per_class:
            raise DatasetError(
                f"{name}: class {cls} has {len(files)} images, needs more than {train_per_class} to split"
            )
        train, test = _seeded_split(cls, files, seed, train_per_class, test_per_class)
        for split, chosen in (("train", train), ("test", test)):
            splits[split] += [ImageRecord(id=f"{cls}/{path.name}", path=path) for path in chosen]
            labels[split] += [index] * len(chosen)
    return ClassificationData(
        name=name,
        classes=classes,
        splits=splits,
        labels={split: np.array(values, dtype=np.int64) for split, values in labels.items()},
        info={
            "root": str(folder),
            "seed": int(seed),
            "train_per_class": train_per_class,
            "test_per_class": test_per_class if test_per_class is not None else "rest",
            "excluded_classes": sorted(excluded & {p.name for p in folder.iterdir()}),
        },
    )


def load_caltech101(
    root: Path,
    seed: int = 0,
    train_per_class: int = 30,
    test_per_class: int | None = 50,
    include_background: bool = False,
) -> ClassificationData:
    """ROOT/101_ObjectCategories/<class>/*.jpg; BACKGROUND_Google is left out unless asked."""
    excluded = set() if include_background else {"BACKGROUND_Google"}
    return _load("caltech101", Path(root) / "101_ObjectCategories", excluded, seed, train_per_class, test_per_class)


def load_caltech256(
    root: Path,
    seed: int = 0,
    train_per_class: int = 60,
    test_per_class: int | None = None,
    include_clutter: bool = False,
) -> ClassificationData:
    """ROOT/256_ObjectCategories/<nnn.class>/*.jpg; 257.clutter is left out unless asked."""
    excluded = set() if include_clutter else {"257.clutter"}
    return _load("caltech256", Path(root) / "256_ObjectCategories", excluded, seed, train_per_class, test_per_class)
