"""Tiny replicas of the benchmarks' official distributions, in their exact on-disk formats.

Each `make_<benchmark>(root, ...)` writes small JPEGs and the official list / ground-truth /
.mat files under `root` (laid out as if the official archives were extracted there) and returns
a `Replica` with what a reader should find. Images are flat colours with a little noise: the
colour follows the class (or scene group), so a feature extractor can tell classes apart in
end-to-end tests. `size` sets the image side (default 8 pixels).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
from PIL import Image


@dataclass
class Replica:
    root: Path
    classes: list[str] = field(default_factory=list)
    splits: dict[str, list[str]] = field(default_factory=dict)     # split -> image ids, in list order
    labels: dict[str, list[Any]] = field(default_factory=dict)     # split -> labels as the reader returns them
    queries: list[str] = field(default_factory=list)
    images: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _colour(key: int) -> np.ndarray:
    rng = np.random.default_rng(1000 + key)
    return rng.integers(30, 226, size=3)


def write_jpeg(path: Path, key: int = 0, size: int = 8, seed: int = 0) -> Path:
    """A size x size JPEG whose colour depends on `key` (class or group), with seeded noise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(seed).integers(-12, 13, size=(size, size, 3))
    pixels = np.clip(_colour(key)[None, None, :] + noise, 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG", quality=90)
    return path


# ---- classification ----------------------------------------------------------------------------

VOC_CLASSES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
]


def make_voc2007(root: Path, n_trainval: int = 6, n_test: int = 4, size: int = 8, seed: int = 0) -> Replica:
    """VOCdevkit/VOC2007 with ImageSets/Main/{trainval,test}.txt and <class>_<split>.txt (1/-1/0).

    Every class has at least one positive in each split; some labels are 0 (difficult).
    Image colour follows the first positive class.
    """
    base = Path(root) / "VOCdevkit" / "VOC2007"
    main = base / "ImageSets" / "Main"
    main.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    replica = Replica(root=Path(root), classes=list(VOC_CLASSES))
    number = 5
    for split, count in (("trainval", n_trainval), ("test", n_test)):
        ids = [f"{number + 2 * i:06d}" for i in range(count)]
        number += 2 * count
        labels = rng.choice([-1, -1, -1, 1, 0], size=(count, len(VOC_CLASSES)))
        for c in range(len(VOC_CLASSES)):
            labels[c % count, c] = 1
        (main / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
        for c, cls in enumerate(VOC_CLASSES):
            (main / f"{cls}_{split}.txt").write_text(
                "".join(f"{image_id} {int(labels[k, c]):>2}\n" for k, image_id in enumerate(ids))
            )
        for k, image_id in enumerate(ids):
            write_jpeg(base / "JPEGImages" / f"{image_id}.jpg", int(np.argmax(labels[k] == 1)), size, seed=k)
        replica.splits[split] = ids
        replica.labels[split] = labels.tolist()
    (base / "Annotations").mkdir(exist_ok=True)
    replica.images = n_trainval + n_test
    return replica


def make_mit67(
    root: Path,
    classes: tuple[str, ...] = ("bakery", "kitchen", "livingroom"),
    n_train: int = 3,
    n_test: int = 2,
    unused: int = 1,
    size: int = 8,
) -> Replica:
    """Images/<class>/<file>.jpg plus TrainImages.txt / TestImages.txt; one file name has spaces,
    and `unused` images per class are in neither list (as in the official copy)."""
    root = Path(root)
    replica = Replica(root=root, classes=sorted(classes), splits={"train": [], "test": []},
                      labels={"train": [], "test": []})
    lines = {"train": [], "test": []}
    for c, cls in enumerate(sorted(classes)):
        names = [f"{cls}_{k:03d}.jpg" for k in range(n_train + n_test + unused)]
        names[0] = f"{cls} photo {0:03d}.jpg"       # names with spaces exist in the official lists
        for k, name in enumerate(names):
            write_jpeg(root / "Images" / cls / name, c, size, seed=k)
        for split, chosen in (("train", names[:n_train]), ("test", names[n_train:n_train + n_test])):
            for name in chosen:
                lines[split].append(f"{cls}/{name}")
                replica.splits[split].append(f"{cls}/{name}")
                replica.labels[split].append(c)
    (root / "TrainImages.txt").write_text("\n".join(lines["train"]) + "\n")
    (root / "TestImages.txt").write_text("\r\n".join(lines["test"]) + "\r\n")   # CRLF, as some copies are
    replica.images = len(lines["train"]) + len(lines["test"])
    return replica


def make_cub200_2011(root: Path, n_classes: int = 3, n_train: int = 2, n_test: int = 2, size: int = 8) -> Replica:
    """CUB_200_2011/ with images.txt, image_class_labels.txt, train_test_split.txt, classes.txt and
    bounding_boxes.txt (x y w h)."""
    base = Path(root) / "CUB_200_2011"
    classes = [f"{c + 1:03d}.Bird_{c + 1}" for c in range(n_classes)]
    replica = Replica(root=Path(root), classes=classes, splits={"train": [], "test": []},
                      labels={"train": [], "test": []})
    images, class_labels, split_rows, boxes = [], [], [], []
    image_id = 0
    for c, cls in enumerate(classes):
        for k in range(n_train + n_test):
            image_id += 1
            relative = f"{cls}/{cls.split('.')[1]}_{k:04d}_{image_id}.jpg"
            write_jpeg(base / "images" / relative, c, size, seed=image_id)
            is_train = 1 if k < n_train else 0
            images.append(f"{image_id} {relative}")
            class_labels.append(f"{image_id} {c + 1}")
            split_rows.append(f"{image_id} {is_train}")
            boxes.append(f"{image_id} {1.0 + c} 2.0 {3.0 + k} 4.0")
            split = "train" if is_train else "test"
            replica.splits[split].append(str(image_id))
            replica.labels[split].append(c)
    for name, rows in (("images.txt", images), ("image_class_labels.txt", class_labels),
                       ("train_test_split.txt", split_rows), ("bounding_boxes.txt", boxes),
                       ("classes.txt", [f"{c + 1} {cls}" for c, cls in enumerate(classes)])):
        (base / name).write_text("\n".join(rows) + "\n")
    replica.images = image_id
    return replica


def make_flowers102(root: Path, n_classes: int = 3, per_class: tuple[int, int, int] = (2, 1, 2),
                    size: int = 8) -> Replica:
    """jpg/image_NNNNN.jpg with imagelabels.mat (`labels`, 1 x n, 1-based classes) and setid.mat
    (`trnid`, `valid`, `tstid`, 1 x k, 1-based image numbers), as scipy writes MATLAB files."""
    root = Path(root)
    n_images = n_classes * sum(per_class)
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(1, n_classes + 1), sum(per_class))
    rng.shuffle(labels)                           # the official labels are not sorted by class
    sets: dict[str, list[int]] = {"trnid": [], "valid": [], "tstid": []}
    for c in range(1, n_classes + 1):
        numbers = [int(n) + 1 for n in np.flatnonzero(labels == c)]
        sets["trnid"] += numbers[:per_class[0]]
        sets["valid"] += numbers[per_class[0]:per_class[0] + per_class[1]]
        sets["tstid"] += numbers[per_class[0] + per_class[1]:]
    for n in range(1, n_images + 1):
        write_jpeg(root / "jpg" / f"image_{n:05d}.jpg", int(labels[n - 1]), size, seed=n)
    scipy.io.savemat(str(root / "imagelabels.mat"), {"labels": labels.astype(np.uint8)[None, :]})
    scipy.io.savemat(str(root / "setid.mat"), {k: np.array(v, dtype=np.uint16)[None, :] for k, v in sets.items()})
    split_names = {"trnid": "train", "valid": "val", "tstid": "test"}
    return Replica(
        root=root,
        classes=[str(c) for c in range(1, n_classes + 1)],
        splits={split_names[k]: [f"image_{n:05d}" for n in v] for k, v in sets.items()},
        labels={split_names[k]: [int(labels[n - 1]) - 1 for n in v] for k, v in sets.items()},
        images=n_images,
    )


def make_sun397(
    root: Path,
    classes: tuple[str, ...] = ("a/abbey", "b/bakery/shop", "c/canyon"),
    n_train: int = 2,
    n_test: int = 2,
    partitions: int = 10,
    size: int = 8,
) -> Replica:
    """SUN397/<letter>/<class>/sun_*.jpg, Partitions/ClassName.txt and Training_01.txt ...
    Testing_10.txt (lines `/a/abbey/sun_xxx.jpg`); each partition draws its own images."""
    root = Path(root)
    parts = root / "Partitions"
    parts.mkdir(parents=True, exist_ok=True)
    (parts / "ClassName.txt").write_text("".join(f"/{cls}\n" for cls in classes))
    pool = n_train + n_test + 1
    for c, cls in enumerate(classes):
        for k in range(pool):
            write_jpeg(root / "SUN397" / cls / f"sun_{c}{k:04d}.jpg", c, size, seed=k)
    replica = Replica(root=root, classes=list(classes))
    for p in range(1, partitions + 1):
        train, test = [], []
        for c, cls in enumerate(classes):
            order = [(k + p) % pool for k in range(pool)]
            train += [(c, f"{cls}/sun_{c}{k:04d}.jpg") for k in order[:n_train]]
            test += [(c, f"{cls}/sun_{c}{k:04d}.jpg") for k in order[n_train:n_train + n_test]]
        for kind, rows, split in (("Training", train, f"train_{p}"), ("Testing", test, f"test_{p}")):
            (parts / f"{kind}_{p:02d}.txt").write_text("".join(f"/{path}\n" for _, path in rows))
            replica.splits[split] = [path for _, path in rows]
            replica.labels[split] = [c for c, _ in rows]
    replica.images = len(classes) * (pool if partitions > 1 else n_train + n_test)
    return replica


def _make_caltech(folder: Path, classes: list[str], image_name, clutter: str, clutter_name,
                  n_per_class: tuple[int, ...], size: int) -> Replica:
    """One folder per class plus the background/clutter folder the readers leave out by default."""
    per_class = [n_per_class[c % len(n_per_class)] for c in range(len(classes))]
    for c, cls in enumerate(classes):
        for k in range(per_class[c]):
            write_jpeg(folder / cls / image_name(c, k), c, size, seed=k)
    for k in range(3):
        write_jpeg(folder / clutter / clutter_name(k), 99, size, seed=k)
    return Replica(root=folder.parent, classes=classes, images=sum(per_class), extra={"per_class": per_class})


def make_caltech101(root: Path, n_classes: int = 3, n_per_class: tuple[int, ...] = (5, 6, 7), size: int = 8) -> Replica:
    """101_ObjectCategories/<class>/image_NNNN.jpg, with the BACKGROUND_Google folder."""
    return _make_caltech(Path(root) / "101_ObjectCategories", [f"class_{c}" for c in range(n_classes)],
                         lambda c, k: f"image_{k + 1:04d}.jpg", "BACKGROUND_Google",
                         lambda k: f"image_{k + 1:04d}.jpg", n_per_class, size)


def make_caltech256(root: Path, n_classes: int = 3, n_per_class: tuple[int, ...] = (5, 6, 7), size: int = 8) -> Replica:
    """256_ObjectCategories/<nnn.class>/<nnn>_NNNN.jpg, with the 257.clutter folder."""
    return _make_caltech(Path(root) / "256_ObjectCategories", [f"{c + 1:03d}.thing{c}" for c in range(n_classes)],
                         lambda c, k: f"{c + 1:03d}_{k + 1:04d}.jpg", "257.clutter",
                         lambda k: f"257_{k + 1:04d}.jpg", n_per_class, size)


# ---- retrieval ----------------------------------------------------------------------------------

def make_holidays(root: Path, groups: int = 3, per_group: int = 3, size: int = 8) -> Replica:
    """jpg/GGGGII.jpg: groups 1000, 1001, ...; II = 00 is each group's query."""
    replica = Replica(root=Path(root))
    for g in range(groups):
        for i in range(per_group):
            name = f"{1000 + g:04d}{i:02d}"
            write_jpeg(Path(root) / "jpg" / f"{name}.jpg", g, size, seed=i)
            replica.splits.setdefault("database", []).append(name)
        replica.queries.append(f"{1000 + g:04d}00")
    replica.images = groups * per_group
    return replica


OXFORD_LANDMARKS = ("all_souls", "ashmolean", "balliol")
PARIS_LANDMARKS = ("defense", "eiffel", "louvre")


def _landmark_replica(
    root: Path,
    image_dir_for,
    gt_dir: Path,
    landmarks: tuple[str, ...],
    prefix: str,
    query_prefix: str,
    per_landmark: int,
    queries_per_landmark: int,
    distractors: int,
    size: int,
) -> Replica:
    replica = Replica(root=root)
    gt_dir.mkdir(parents=True, exist_ok=True)
    ground_truth = {}
    for index, landmark in enumerate(landmarks):
        names = [f"{prefix}{landmark}_{k:06d}" for k in range(per_landmark)]
        for k, name in enumerate(names):
            write_jpeg(image_dir_for(landmark) / f"{name}.jpg", index, size, seed=k)
        for q in range(1, queries_per_landmark + 1):
            query = names[q - 1]
            others = [n for n in names if n != query]
            good, ok, junk = others[: len(others) // 2], others[len(others) // 2: -1], others[-1:]
            good = [query] + good                       # the query image is itself a positive: compute_ap keeps it
            query_name = f"{landmark}_{q}"
            (gt_dir / f"{query_name}_query.txt").write_text(f"{query_prefix}{query} 1.5 2.0 6.5 7.0\n")
            for kind, rows in (("good", good), ("ok", ok), ("junk", junk)):
                (gt_dir / f"{query_name}_{kind}.txt").write_text("".join(f"{row}\n" for row in rows))
            ground_truth[query_name] = {"query": query, "good": good, "ok": ok, "junk": junk}
            replica.queries.append(query_name)
    for k in range(distractors):
        name = f"{prefix}distractor_{k:06d}"
        write_jpeg(image_dir_for("distractor") / f"{name}.jpg", 50 + k, size, seed=k)
    replica.images = len(landmarks) * per_landmark + distractors
    replica.extra["ground_truth"] = ground_truth
    return replica


def make_oxford5k(
    root: Path, landmarks: tuple[str, ...] = OXFORD_LANDMARKS, per_landmark: int = 5,
    queries_per_landmark: int = 2, distractors: int = 3, size: int = 8, gt_in_root: bool = False,
) -> Replica:
    """oxbuild_images/<landmark>_<nnnnnn>.jpg and gt_files_170407/<landmark>_<k>_{good,ok,junk,query}.txt
    (query lines `oxc1_<image> x1 y1 x2 y2`); `gt_in_root` puts the ground truth in ROOT itself."""
    root = Path(root)
    gt_dir = root if gt_in_root else root / "gt_files_170407"
    return _landmark_replica(root, lambda _: root / "oxbuild_images", gt_dir, landmarks, "", "oxc1_",
                             per_landmark, queries_per_landmark, distractors, size)


def make_paris6k(
    root: Path, landmarks: tuple[str, ...] = PARIS_LANDMARKS, per_landmark: int = 5,
    queries_per_landmark: int = 2, distractors: int = 3, corrupt: int = 1, size: int = 8,
) -> Replica:
    """paris/<landmark>/paris_<landmark>_<nnnnnn>.jpg and paris_120310/*_{good,ok,junk,query}.txt
    (query lines `<image> x1 y1 x2 y2`), plus `corrupt` unreadable .jpg files, as the archive ships."""
    root = Path(root)
    replica = _landmark_replica(root, lambda landmark: root / "paris" / landmark, root / "paris_120310",
                                landmarks, "paris_", "", per_landmark, queries_per_landmark, distractors, size)
    corrupt_names = []
    for k in range(corrupt):
        name = f"paris_{landmarks[0]}_{900 + k:06d}"
        (root / "paris" / landmarks[0] / f"{name}.jpg").write_bytes(b"not a jpeg at all")
        corrupt_names.append(name)
    replica.extra["corrupt"] = corrupt_names
    return replica


def make_ukbench(root: Path, groups: int = 3, size: int = 8) -> Replica:
    """full/ukbenchNNNNN.jpg, four consecutive numbers per object."""
    replica = Replica(root=Path(root))
    for n in range(4 * groups):
        write_jpeg(Path(root) / "full" / f"ukbench{n:05d}.jpg", n // 4, size, seed=n)
        replica.queries.append(f"ukbench{n:05d}")
    replica.images = 4 * groups
    return replica


def make_revisited(root: Path, dataset: str = "roxford5k", landmarks: tuple[str, ...] = OXFORD_LANDMARKS,
                   per_landmark: int = 6, queries_per_landmark: int = 2, distractors: int = 0,
                   size: int = 8) -> Replica:
    """revisitop's layout: jpg/<name>.jpg and gnd_<dataset>.pkl, a pickle (protocol 2, as revisitop's)
    of {imlist, qimlist, gnd: [{bbx, easy, hard, junk}]} with numpy index arrays. The images of a
    landmark share its colour; easy, hard and junk split the query's landmark-mates. `distractors`
    > 0 also writes a revisitop1m-style folder ROOT/r1m (jpg/ and revisitop1m.txt)."""
    import pickle

    root = Path(root)
    replica = Replica(root=root)
    imlist, qimlist, gnd = [], [], []
    for index, landmark in enumerate(landmarks):
        names = [f"{landmark}_{k:06d}" for k in range(per_landmark)]
        start = len(imlist)
        for k, name in enumerate(names):
            write_jpeg(root / "jpg" / f"{name}.jpg", index, size, seed=k)
        imlist.extend(names)
        mates = list(range(start, start + per_landmark))
        for q in range(queries_per_landmark):
            query = f"{landmark}_query_{q}"
            write_jpeg(root / "jpg" / f"{query}.jpg", index, size, seed=100 + q)
            qimlist.append(query)
            gnd.append({"bbx": np.array([1.0, 1.0, size - 1.0, size - 1.0]),
                        "easy": np.array(mates[:3]), "hard": np.array(mates[3:-1]), "junk": np.array(mates[-1:])})
            replica.queries.append(query)
    with open(root / f"gnd_{dataset}.pkl", "wb") as handle:
        pickle.dump({"imlist": imlist, "qimlist": qimlist, "gnd": gnd}, handle, protocol=2)
    if distractors:
        names = [f"distractor_{k:07d}" for k in range(distractors)]
        for k, name in enumerate(names):
            write_jpeg(root / "r1m" / "jpg" / f"{name}.jpg", 90 + k, size, seed=k)
        (root / "r1m" / "revisitop1m.txt").write_text("".join(f"{name}.jpg\n" for name in names))
    replica.images = len(imlist)
    replica.extra["gnd"] = gnd
    return replica


MAKERS = {
    "voc2007": make_voc2007,
    "mit67": make_mit67,
    "cub200_2011": make_cub200_2011,
    "flowers102": make_flowers102,
    "sun397": make_sun397,
    "caltech101": make_caltech101,
    "caltech256": make_caltech256,
    "holidays": make_holidays,
    "oxford5k": make_oxford5k,
    "paris6k": make_paris6k,
    "ukbench": make_ukbench,
    "roxford5k": make_revisited,
}


def make_replica(name: str, root: Path, **options: Any | None) -> Replica:
    """The replica of benchmark `name` under root (see MAKERS)."""
    return MAKERS[name](Path(root), **options)
