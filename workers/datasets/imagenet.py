"""ImageNet-1k (ILSVRC-2012 classification) in its official layout, as the three official archives
extract:

    ROOT/train/<wnid>/<wnid>_<n>.JPEG            ILSVRC2012_img_train.tar: a tar of 1,000 per-class tars,
                                                 each extracted into its own folder
    ROOT/val/ILSVRC2012_val_<8 digits>.JPEG      ILSVRC2012_img_val.tar: 50,000 images, flat
    ROOT/ILSVRC2012_devkit_t12/data/meta.mat     ILSVRC2012_devkit_t12.tar.gz
    ROOT/ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt

The devkit defines the classes: the synsets of `meta.mat` with num_children == 0 (ILSVRC2012_ID 1..1000
in the official file), in ILSVRC2012_ID order, so label k is ILSVRC2012_ID k + 1 (torchvision's
ImageNet numbers them in sorted-WNID order instead; features do not depend on it). Each listed class
needs its train/<wnid>/ folder and nothing else may be there; val image i's label is line i of the
ground truth, and val must hold exactly images 1..N for its N lines. A torchvision-prepared val
(val/<wnid>/ILSVRC2012_val_*.JPEG) is read too, its folders checked against the ground truth, and a
devkit left as ROOT/ILSVRC2012_devkit_t12.tar.gz is read without extracting it.

Splits: "train" (1,281,167 images) and "val" (50,000, the test split). ImageNet reports top-1 accuracy;
val holds 50 images per class, so top-1 equals mean class accuracy there, the metric the engine uses
(`info["top1_equals_mean_class_accuracy"]` says whether the copy read is balanced so). Image ids:
"train/n01440764/n01440764_10026" and "val/ILSVRC2012_val_00000001", whatever the val layout.

Built for 1.28 M files: one os.scandir per folder (its entries' types, no stat of each file), nothing
decoded (`verify_images` does that).
"""
from __future__ import annotations

import io
import os
import re
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import scipy.io

from workers.datasets._files import and_more
from workers.datasets.base import ClassificationData, DatasetError, ImageRecord

NAME = "imagenet1k"
DEVKIT = "ILSVRC2012_devkit_t12"
DEVKIT_ARCHIVE = f"{DEVKIT}.tar.gz"
META = "data/meta.mat"
GROUND_TRUTH = "data/ILSVRC2012_validation_ground_truth.txt"
SYNSET_FIELDS = ("ILSVRC2012_ID", "WNID", "words", "num_children")
SUFFIXES = (".jpeg", ".jpg")
_VAL_NAME = re.compile(r"^ILSVRC2012_val_(\d{8})\.jpe?g$", re.IGNORECASE)
_WNID = re.compile(r"^n\d{8}$")
_SHOWN = 3


# ---- the devkit ---------------------------------------------------------------------------------

def _devkit_files(root: Path) -> tuple[str, bytes, bytes]:
    """(where, meta.mat bytes, ground-truth bytes): from the extracted devkit folder, else its archive."""
    folder = root / DEVKIT
    if folder.is_dir():
        files = []
        for relative in (META, GROUND_TRUTH):
            path = folder / relative
            if not path.is_file():
                raise DatasetError(f"{NAME}: {path} not found (the devkit, {DEVKIT_ARCHIVE}, extracts it)")
            try:
                files.append(path.read_bytes())
            except OSError as exc:
                raise DatasetError(f"{NAME}: cannot read {path}: {exc.strerror}") from None
        return str(folder), files[0], files[1]
    archive = root / DEVKIT_ARCHIVE
    if archive.is_file():
        return str(archive), *_from_archive(archive)
    raise DatasetError(f"{NAME}: the devkit is not in {root}: neither {DEVKIT}/ (as {DEVKIT_ARCHIVE} extracts) nor "
                       f"{DEVKIT_ARCHIVE} was found")


def _from_archive(archive: Path) -> tuple[bytes, bytes]:
    """meta.mat and the ground truth read out of the devkit archive (read only: nothing is written)."""
    wanted = {f"{DEVKIT}/{META}": None, f"{DEVKIT}/{GROUND_TRUTH}": None}
    try:
        with tarfile.open(archive, "r:*") as handle:
            for member in handle:
                name = member.name.lstrip("./")
                if name in wanted and member.isreg() and member.size < 64 * 2**20:
                    wanted[name] = handle.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DatasetError(f"{NAME}: cannot read {archive}: {exc}") from None
    missing = [name for name, data in wanted.items() if data is None]
    if missing:
        raise DatasetError(f"{NAME}: {archive} holds no {missing[0]}")
    return wanted[f"{DEVKIT}/{META}"], wanted[f"{DEVKIT}/{GROUND_TRUTH}"]


def _shown(where: str, relative: str) -> str:
    """A devkit file as an error names it: in the extracted folder, or inside the archive."""
    return f"{where}:{DEVKIT}/{relative}" if where.endswith(".tar.gz") else f"{where}/{relative}"


def _text(value) -> str:
    return str(np.asarray(value).item() if np.asarray(value).size == 1 else value).strip()


def _leaf_synsets(where: str, meta: bytes) -> list[tuple[int, str, str]]:
    """(ILSVRC2012_ID, WNID, words) of the leaf synsets (num_children == 0), in ILSVRC2012_ID order."""
    shown = _shown(where, META)
    try:
        synsets = scipy.io.loadmat(io.BytesIO(meta), squeeze_me=True)["synsets"]
    except KeyError:
        raise DatasetError(f"{NAME}: {shown} holds no 'synsets' struct") from None
    except Exception as exc:    # scipy raises ValueError, TypeError, MatReadError ... on a file that is not .mat
        raise DatasetError(f"{NAME}: {shown} is not a readable MATLAB file ({type(exc).__name__}: {exc})") from None
    synsets = np.atleast_1d(synsets)
    names = synsets.dtype.names or ()
    absent = [field for field in SYNSET_FIELDS if field not in names]
    if absent:
        raise DatasetError(f"{NAME}: {shown}: 'synsets' has no field {absent[0]} "
                           f"(fields: {', '.join(names) or 'none'})")
    leaves = []
    for number, synset in enumerate(synsets, start=1):
        try:
            children = int(synset["num_children"])
            identifier = int(synset["ILSVRC2012_ID"])
        except (TypeError, ValueError):
            raise DatasetError(f"{NAME}: {shown}: synset {number} has a non-numeric ILSVRC2012_ID or "
                               "num_children") from None
        if children == 0:
            wnid = _text(synset["WNID"])
            if not _WNID.match(wnid):
                raise DatasetError(f"{NAME}: {shown}: synset {number} has WNID {wnid!r}, not n + 8 digits")
            leaves.append((identifier, wnid, _text(synset["words"])))
    if not leaves:
        raise DatasetError(f"{NAME}: {shown} lists no leaf synset (num_children == 0)")
    leaves.sort()
    for field, values in (("ILSVRC2012_ID", [leaf[0] for leaf in leaves]), ("WNID", [leaf[1] for leaf in leaves])):
        repeated = [value for value, count in Counter(values).items() if count > 1]
        if repeated:
            raise DatasetError(f"{NAME}: {shown}: {field} {repeated[0]} is given to two leaf synsets")
    return leaves


def _ground_truth(where: str, text: bytes, ids: dict[int, int]) -> list[int]:
    """The class index of val images 1..N, from the ground truth's ILSVRC2012_IDs."""
    shown = _shown(where, GROUND_TRUTH)
    labels = []
    for number, line in enumerate(text.decode("ascii", errors="replace").splitlines(), start=1):
        value = line.strip()
        if not value:
            continue
        if not value.isdigit():
            raise DatasetError(f"{NAME}: {shown} line {number} malformed (expected an ILSVRC2012_ID): {value[:40]!r}")
        if int(value) not in ids:
            raise DatasetError(f"{NAME}: {shown} line {number}: ILSVRC2012_ID {value} is not a leaf synset of "
                               f"{META}")
        labels.append(ids[int(value)])
    if not labels:
        raise DatasetError(f"{NAME}: {shown} is empty")
    return labels


# ---- the images ---------------------------------------------------------------------------------

def _scan(folder: Path) -> tuple[list[str], list[str]]:
    """(sub-folders, image file names) directly in `folder`; hidden entries skipped, one scandir."""
    folders, images = [], []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    folders.append(entry.name)
                elif entry.name.lower().endswith(SUFFIXES) and entry.is_file():
                    images.append(entry.name)
    except OSError as exc:
        raise DatasetError(f"{NAME}: cannot list {folder}: {exc.strerror}") from None
    return folders, images


def _train(root: Path, wnids: list[str]) -> tuple[list[ImageRecord], np.ndarray]:
    train = root / "train"
    if not train.is_dir():
        raise DatasetError(f"{NAME}: {train} not found (ILSVRC2012_img_train.tar's per-class tars extract into "
                           "train/<wnid>/)")
    folders, _ = _scan(train)
    present, listed = set(folders), set(wnids)
    missing = [wnid for wnid in wnids if wnid not in present]
    if missing:
        raise DatasetError(f"{NAME}: class folder {train / missing[0]}/ not found{and_more(missing)}: the devkit lists "
                           f"{len(wnids)} classes, train/ holds {len(present & listed)} of them")
    stray = sorted(present - listed)
    if stray:
        raise DatasetError(f"{NAME}: {train / stray[0]}/ is not a class the devkit lists{and_more(stray)}")
    records, labels = [], []
    for index, wnid in enumerate(wnids):
        folder = train / wnid
        _, names = _scan(folder)
        if not names:
            raise DatasetError(f"{NAME}: {folder}/ holds no JPEG image")
        names.sort()
        prefix = f"train/{wnid}/"
        records.extend(ImageRecord(id=prefix + name.rpartition(".")[0], path=folder / name) for name in names)
        labels.append(np.full(len(names), index, dtype=np.int64))
    return records, np.concatenate(labels)


def _val(root: Path, truth: list[int], wnids: list[str]) -> tuple[list[ImageRecord], str]:
    """Val images 1..N in order, from val/ (flat) or val/<wnid>/ (torchvision's layout); returns the layout."""
    val = root / "val"
    if not val.is_dir():
        raise DatasetError(f"{NAME}: {val} not found (ILSVRC2012_img_val.tar extracts into val/)")
    folders, names = _scan(val)
    found: dict[int, tuple[Path, str | None]] = {}

    def take(folder: Path, name: str, wnid: str | None) -> None:
        match = _VAL_NAME.match(name)
        if not match:
            raise DatasetError(f"{NAME}: {folder / name} is not named ILSVRC2012_val_<8 digits>.JPEG")
        number = int(match.group(1))
        if number in found:
            raise DatasetError(f"{NAME}: val image {number} is there twice: {found[number][0]} and {folder / name}")
        found[number] = (folder / name, wnid)

    for name in names:
        take(val, name, None)
    known = set(wnids)
    for wnid in sorted(folders):
        if wnid not in known:
            raise DatasetError(f"{NAME}: {val / wnid}/ is not a class the devkit lists")
        _, inside = _scan(val / wnid)
        for name in inside:
            take(val / wnid, name, wnid)
    if not found:
        raise DatasetError(f"{NAME}: {val} holds no ILSVRC2012_val_*.JPEG image")
    missing = [number for number in range(1, len(truth) + 1) if number not in found]
    if missing:
        raise DatasetError(f"{NAME}: val image ILSVRC2012_val_{missing[0]:08d}.JPEG not found in {val}"
                           f"{and_more(missing)}; the ground truth lists {len(truth)}")
    extra = sorted(number for number in found if number > len(truth))
    if extra:
        raise DatasetError(f"{NAME}: {found[extra[0]][0]} has no line in the ground truth ({len(truth)} lines)"
                           f"{and_more(extra)}")
    records = []
    for number in range(1, len(truth) + 1):
        path, wnid = found[number]
        if wnid is not None and wnid != wnids[truth[number - 1]]:
            raise DatasetError(f"{NAME}: {path} is in {wnid}/ but the ground truth says {wnids[truth[number - 1]]}")
        records.append(ImageRecord(id=f"val/ILSVRC2012_val_{number:08d}", path=path))
    layout = "per_class" if folders else "flat"
    if folders and names:
        layout = "mixed"
    return records, layout


def load(root: Path) -> ClassificationData:
    """Read ROOT/train/<wnid>/, ROOT/val/ and the devkit (ROOT/ILSVRC2012_devkit_t12/ or its .tar.gz)."""
    root = Path(root)
    where, meta, truth_text = _devkit_files(root)
    leaves = _leaf_synsets(where, meta)
    wnids = [wnid for _, wnid, _ in leaves]
    index = {identifier: i for i, (identifier, _, _) in enumerate(leaves)}
    truth = _ground_truth(where, truth_text, index)
    train, train_labels = _train(root, wnids)
    val, layout = _val(root, truth, wnids)
    val_labels = np.asarray(truth, dtype=np.int64)
    per_class = np.bincount(val_labels, minlength=len(wnids))
    balanced = bool(per_class.min() == per_class.max() > 0)
    return ClassificationData(
        name=NAME,
        classes=wnids,
        splits={"train": train, "val": val},
        labels={"train": train_labels, "val": val_labels},
        train_split="train",
        test_split="val",
        metric="mean_class_accuracy",
        info={
            "root": str(root),
            "devkit": where,
            "val_layout": layout,
            "class_order": "ILSVRC2012_ID",
            "class_words": [words for _, _, words in leaves],
            "val_per_class": int(per_class[0]) if balanced else None,
            # top-1 accuracy equals mean class accuracy exactly when every class has as many val images
            "top1_equals_mean_class_accuracy": balanced,
        },
    )
