"""A tiny ImageNet-1k (ILSVRC-2012) in the official formats, for tests.

    replica = write_imagenet_replica(folder, classes=4, train_per_class=6, val_per_class=3)

writes into `folder` the three official archives (`archives=True`, the default):

    ILSVRC2012_img_train.tar       a tar of per-class tars <wnid>.tar, each of <wnid>_<n>.JPEG
    ILSVRC2012_img_val.tar         ILSVRC2012_val_00000001.JPEG ... flat, classes shuffled
    ILSVRC2012_devkit_t12.tar.gz   ILSVRC2012_devkit_t12/data/meta.mat (a MATLAB struct array
                                   `synsets` with the official fields, written by scipy.io.savemat,
                                   with two non-leaf synsets, num_children > 0, to be ignored, and
                                   the synsets in shuffled order) and
                                   .../data/ILSVRC2012_validation_ground_truth.txt

and/or (`extracted=True`) the layout they extract to, which `workers.datasets.imagenet.load` reads:
`folder/train/<wnid>/`, `folder/val/`, `folder/ILSVRC2012_devkit_t12/`. The archives are byte-for-byte
deterministic for the same arguments (tar and gzip times are 0), so their checksums are stable.

Images are `size` x `size` JPEGs: random crops of a scikit-image sample photo (one photo per class,
cycling) blended with a strong colour per class, so even a per-channel mean feature separates the
classes. Classes are in ILSVRC2012_ID order (IDs 1..classes); their WNIDs are not in sorted order.

The returned `ImagenetReplica` says what the reader must find (ids and labels in its order) and, for
the archives, their md5 / sha256 / sizes; `sources_table(path)` writes a lab source table (the
project's imagenet1k entry with file:// URLs and these checksums) for
`fetch("imagenet1k", ROOT, sources_file=...)`, and `mirrors()` gives `--mirror NAME=URL` pairs.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

TRAIN_ARCHIVE = "ILSVRC2012_img_train.tar"
VAL_ARCHIVE = "ILSVRC2012_img_val.tar"
DEVKIT_ARCHIVE = "ILSVRC2012_devkit_t12.tar.gz"
DEVKIT = "ILSVRC2012_devkit_t12"
GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
SYNSET_FIELDS = ("ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
                 "num_train_images")
# The first ILSVRC2012_IDs' synsets, in ID order (not in sorted-WNID order); more classes get made-up WNIDs.
KNOWN_CLASSES = (
    ("n02119789", "kit fox, Vulpes macrotis"), ("n02100735", "English setter"), ("n02110185", "Siberian husky"),
    ("n02096294", "Australian terrier"), ("n02102040", "English springer, English springer spaniel"),
    ("n02066245", "grey whale, gray whale, devilfish"), ("n02509815", "lesser panda, red panda"),
    ("n02124075", "Egyptian cat"), ("n02417914", "ibex, Capra ibex"), ("n02123394", "Persian cat"),
)
NON_LEAF = (("n02075296", "carnivore"), ("n01317541", "domestic animal, domesticated animal"))
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "moon", "clock")


@dataclass
class ImagenetReplica:
    folder: Path
    wnids: list[str]                 # the classes in ILSVRC2012_ID order: what the reader's `classes` is
    words: list[str]
    non_leaf: list[str]              # WNIDs of the synsets with children, which the reader ignores
    train: list[str]                 # train image ids, in the reader's order
    train_labels: list[int]
    val: list[str]                   # val image ids 1..N
    val_labels: list[int]            # class index of val image i (line i of the ground truth, minus 1)
    archives: dict[str, Path] = field(default_factory=dict)    # official file name -> path (archives=True)
    md5: dict[str, str] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)

    @property
    def images(self) -> int:
        return len(self.train) + len(self.val)

    def mirrors(self) -> dict[str, str]:
        """{archive name: file:// URL}, as `fetch(..., mirrors=...)` and `--mirror NAME=URL` take them."""
        return {name: path.resolve().as_uri() for name, path in self.archives.items()}

    def sources_table(self, path: Path, *, wrong: str | None = None) -> Path:
        """Write a lab source table: the project's imagenet1k entry (its into / nested settings) with
        this replica's file:// URLs, sizes, md5 and sha256 (an all-zero md5 for archive `wrong`)."""
        from workers.datasets.sources import SOURCES_FILE

        entry = json.loads(SOURCES_FILE.read_text(encoding="utf-8"))["benchmarks"]["imagenet1k"]
        archives = []
        for spec in entry["archives"]:
            name = spec["name"]
            archives.append({**{key: value for key, value in spec.items() if key not in ("checksum", "note")},
                             "url": self.mirrors()[name], "size": self.sizes[name],
                             "md5": "0" * 32 if name == wrong else self.md5[name], "sha256": self.sha256[name],
                             "checksum_source": "computed from the replica by tests/workers/imagenet_replica.py"})
        table = {"benchmarks": {"imagenet1k": {"page": "replica", "archives": archives}}}
        Path(path).write_text(json.dumps(table, indent=1), encoding="utf-8")
        return Path(path)


def tar_bytes(members: dict[str, bytes], *, gzipped: bool = False, folders: tuple[str, ...] = ()) -> bytes:
    """A deterministic tar (or tar.gz) of `members` (name -> bytes), with `folders` as directory entries first."""
    buffer = io.BytesIO()
    target = gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) if gzipped else buffer
    with tarfile.open(fileobj=target, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name in folders:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    if gzipped:
        target.close()
    return buffer.getvalue()


@cache
def _photo(name: str) -> np.ndarray:
    import skimage.data

    image = np.asarray(getattr(skimage.data, name)())
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    small = Image.fromarray(np.ascontiguousarray(image[..., :3]).astype(np.uint8))
    small.thumbnail((160, 160))
    return np.asarray(small)


def _colour(index: int) -> np.ndarray:
    hue = np.random.default_rng(7 + index).integers(0, 256, size=3)
    hue[index % 3] = 255 - hue[index % 3] // 4        # one strong channel per class, cycling
    return hue.astype(np.float32)


def _jpeg(class_index: int, rng: np.random.Generator, size: int) -> bytes:
    photo = _photo(PHOTOS[class_index % len(PHOTOS)])
    height, width = photo.shape[:2]
    fraction = rng.uniform(0.55, 0.9)
    ch, cw = int(height * fraction), int(width * fraction)
    y, x = int(rng.integers(0, height - ch + 1)), int(rng.integers(0, width - cw + 1))
    crop = Image.fromarray(photo[y:y + ch, x:x + cw]).resize((size, size), Image.BILINEAR)
    pixels = 0.45 * np.asarray(crop, dtype=np.float32) + 0.55 * _colour(class_index)[None, None, :]
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _classes(count: int) -> list[tuple[str, str]]:
    made_up = [(f"n{30000000 + 1013 * i:08d}", f"replica class {i}") for i in range(len(KNOWN_CLASSES), count)]
    return list(KNOWN_CLASSES[:count]) + made_up


def _meta_mat(classes: list[tuple[str, str]], seed: int) -> bytes:
    """meta.mat as the devkit has it: a struct array `synsets` (column), leaves IDs 1..K, non-leaves after."""
    k = len(classes)
    rows = [(i + 1, wnid, words, f"gloss of {words.split(',')[0]}", 0, np.zeros((0,)), 0, 1300)
            for i, (wnid, words) in enumerate(classes)]
    half = max(1, k // 2)
    children = [list(range(1, half + 1)), [k + 1] + list(range(half + 1, k + 1))]
    for j, (wnid, words) in enumerate(NON_LEAF):
        rows.append((k + j + 1, wnid, words, f"gloss of {words.split(',')[0]}", len(children[j]),
                     np.asarray(children[j], dtype=np.float64), j + 1, 0))
    order = np.random.default_rng(seed).permutation(len(rows))      # a reader must sort by ILSVRC2012_ID
    synsets = np.empty((len(rows),), dtype=[(name, object) for name in SYNSET_FIELDS])
    for at, row in enumerate(rows[i] for i in order):
        identifier, wnid, words, gloss, num_children, kids, height, train_images = row
        synsets[at] = (float(identifier), wnid, words, gloss, float(num_children), kids, float(height),
                       float(train_images))
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"synsets": synsets}, oned_as="column")
    return buffer.getvalue()


def write_imagenet_replica(folder: Path, classes: int = 4, train_per_class: int = 6, val_per_class: int = 3, *,
                           archives: bool = True, extracted: bool = False, size: int = 32,
                           seed: int = 0) -> ImagenetReplica:
    """Write the replica's official archives (`archives`) and/or their extracted layout (`extracted`)
    into `folder`; returns what the reader must find. See the module docstring."""
    if not (archives or extracted):
        raise ValueError("write the archives, the extracted layout, or both")
    if classes < 1 or train_per_class < 1 or val_per_class < 1:
        raise ValueError("classes, train_per_class and val_per_class must be at least 1")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    chosen = _classes(classes)
    wnids = [wnid for wnid, _ in chosen]

    train: dict[str, dict[str, bytes]] = {}
    train_ids, train_labels = [], []
    for index, wnid in enumerate(wnids):
        numbers = sorted(rng.choice(np.arange(10, 20000), size=train_per_class, replace=False).tolist())
        names = sorted(f"{wnid}_{number}.JPEG" for number in numbers)
        train[wnid] = {name: _jpeg(index, rng, size) for name in names}
        train_ids += [f"train/{wnid}/{name[:-5]}" for name in names]
        train_labels += [index] * len(names)
    val_labels = rng.permutation(np.repeat(np.arange(classes), val_per_class)).tolist()
    val = {f"ILSVRC2012_val_{i:08d}.JPEG": _jpeg(label, rng, size) for i, label in enumerate(val_labels, start=1)}
    devkit = {
        f"{DEVKIT}/readme.txt": b"ILSVRC2012 development kit (a test replica)\n",
        f"{DEVKIT}/data/meta.mat": _meta_mat(chosen, seed),
        f"{DEVKIT}/data/{GROUND_TRUTH}": "".join(f"{label + 1}\n" for label in val_labels).encode(),
    }
    replica = ImagenetReplica(folder=folder, wnids=wnids, words=[words for _, words in chosen],
                              non_leaf=[wnid for wnid, _ in NON_LEAF], train=train_ids, train_labels=train_labels,
                              val=[f"val/{name[:-5]}" for name in val], val_labels=val_labels)
    if archives:
        files = {
            TRAIN_ARCHIVE: tar_bytes({f"{wnid}.tar": tar_bytes(images) for wnid, images in train.items()}),
            VAL_ARCHIVE: tar_bytes(val),
            DEVKIT_ARCHIVE: tar_bytes(devkit, gzipped=True, folders=(f"{DEVKIT}/", f"{DEVKIT}/data/")),
        }
        for name, data in files.items():
            path = folder / name
            path.write_bytes(data)
            replica.archives[name] = path
            replica.md5[name] = hashlib.md5(data).hexdigest()
            replica.sha256[name] = hashlib.sha256(data).hexdigest()
            replica.sizes[name] = len(data)
    if extracted:
        layout = {f"train/{wnid}/{name}": data for wnid, images in train.items() for name, data in images.items()}
        layout.update({f"val/{name}": data for name, data in val.items()})
        layout.update(devkit)
        for relative, data in layout.items():
            path = folder / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    return replica
