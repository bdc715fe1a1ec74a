"""The benchmark registry: each benchmark declared once, with its reader, title, metric, the layout
its ROOT holds and the multi-class SVM scheme the paper ([1], Razavian et al. 2014) used on it.

Official benchmarks read a local copy of their distribution with the readers in `workers.datasets`
(`load_dataset(name, ROOT)`). Two demo benchmarks run on real images that installed packages
ship, so the engine can be tried and tested with no download:

- `digits`: scikit-learn's 1,797 handwritten digits (8x8, upscaled x8 to 64x64 RGB uint8),
  10 classes, a fixed stratified half/half split (`train_test_split(test_size=0.5,
  stratify=y, random_state=0)`), mean class accuracy.
- `skimage_holidays`: 12 scikit-image sample photos, each in 4 deterministic views (the photo,
  a zoomed crop, a rotated crop, a colour-jittered rescaled crop), named like INRIA Holidays
  `GGGGII` with II = 00 the group's query, scored with `holidays_map` under the Holidays protocol.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workers.contract import EngineError
from workers.datasets import (
    caltech,
    cub200_2011,
    flowers102,
    holidays,
    imagenet,
    mit67,
    oxford,
    revisited,
    sun397,
    ukbench,
    voc2007,
)
from workers.datasets.base import ClassificationData, DatasetError, ImageRecord, RetrievalData, RetrievalQuery

Data = ClassificationData | RetrievalData
MULTICLASS_SCHEMES = ("ovr", "ovo")
PAPER = "paper"   # a multiclass choice meaning "the benchmark's paper_multiclass"


@dataclass(frozen=True)
class Benchmark:
    name: str
    kind: str                 # classification | retrieval
    metric: str               # mean_class_accuracy | voc07_map | oxford_map | holidays_map | ukbench_ns
    title: str
    reader: Callable[..., Data]      # official: reader(ROOT, **options); demo: reader(**options)
    layout: str = ""                 # what ROOT holds, as the official archives extract
    needs_root: bool = True
    paper_multiclass: str = "ovr"    # what [1] used: "ovo" (one-vs-one SVMs) for MIT67, CUB, Flowers

    def options(self) -> dict[str, Any]:
        """The options the reader takes beyond ROOT, with their defaults (for the CLI and the site)."""
        parameters = list(inspect.signature(self.reader).parameters.values())
        return {p.name: p.default for p in parameters[1 if self.needs_root else 0:]}

    def parse_options(self, pairs: Sequence[str]) -> dict[str, Any]:
        """KEY=VALUE reader options (the CLI's -o), converted to the types of the reader's defaults;
        an unknown key is left for `load` to refuse."""
        defaults, options = self.options(), {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep:
                raise EngineError(f"option {pair!r} is not KEY=VALUE")
            options[key] = _option_value(value, defaults.get(key))
        return options

    def load(self, root: Path | None = None, **options) -> Data:
        """Read the benchmark (from ROOT, the folder its official archives were extracted into)."""
        unknown = sorted(set(options) - set(self.options()))
        if unknown:
            known = ", ".join(self.options()) or "none"
            raise DatasetError(f"{self.name}: unknown option '{unknown[0]}' (options: {known})")
        if not self.needs_root:
            return self.reader(**options)
        if root is None:
            raise DatasetError(f"{self.name} needs --data ROOT, the folder its official archives were extracted into")
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"{self.name}: {root} not found")
        return self.reader(root, **options)

    def multiclass(self, choice: str) -> str:
        """The SVM scheme `choice` means here: "ovr", "ovo", or PAPER for what [1] used on this benchmark."""
        resolved = self.paper_multiclass if choice == PAPER else choice
        if resolved not in MULTICLASS_SCHEMES:
            raise EngineError(f"unknown multiclass scheme {choice!r}: use ovr, ovo or {PAPER}")
        return resolved

    def image_ids(self, root: Path | None = None) -> set[str]:
        """Every image id of the benchmark: what a precomputed-features file must cover."""
        data = self.load(root)
        if isinstance(data, ClassificationData):
            return {record.id for records in data.splits.values() for record in records}
        return {record.id for record in data.database} | {query.image.id for query in data.queries}


# ---- demo benchmarks ------------------------------------------------------------------------------

DIGITS_SCALE = 8


def load_digits_benchmark() -> ClassificationData:
    """scikit-learn's digits as RGB images, split half/half, stratified, random_state=0."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    gray = np.clip(np.rint(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)   # values 0..16
    big = np.kron(gray, np.ones((1, DIGITS_SCALE, DIGITS_SCALE), dtype=np.uint8))
    rgb = np.repeat(big[..., None], 3, axis=-1)
    index = np.arange(len(gray))
    train, test = train_test_split(index, test_size=0.5, stratify=digits.target, random_state=0)
    splits, labels = {}, {}
    for split, rows in (("train", np.sort(train)), ("test", np.sort(test))):
        splits[split] = [ImageRecord(id=f"digit{i:04d}", pixels=rgb[i]) for i in rows]
        labels[split] = digits.target[rows].astype(np.int64)
    return ClassificationData(
        name="digits", classes=[str(d) for d in range(10)], splits=splits, labels=labels,
        info={"source": "sklearn.datasets.load_digits", "upscale": f"x{DIGITS_SCALE} nearest",
              "split": "train_test_split(test_size=0.5, stratify=y, random_state=0)"},
    )


SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "moon",
                  "hubble_deep_field", "immunohistochemistry", "retina", "clock", "cell")
VIEWS_PER_PHOTO = 4


def _skimage_photo(name: str) -> np.ndarray:
    import skimage.data

    image = np.asarray(getattr(skimage.data, name)())
    if image.dtype != np.uint8:
        image = (image * 255).astype(np.uint8) if image.dtype == bool or image.max() <= 1 else image.astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    return np.ascontiguousarray(image[..., :3])


def _views(photo: np.ndarray, group: int) -> list[np.ndarray]:
    """Four deterministic views: the photo, a zoomed crop, a rotated crop, a recoloured rescaled crop."""
    from PIL import Image, ImageEnhance

    image = Image.fromarray(photo)
    width, height = image.size
    rng = np.random.default_rng(1000 + group)

    def crop(img: Image.Image, fraction: float) -> Image.Image:
        w, h = img.size
        cw, ch = int(w * fraction), int(h * fraction)
        x = int(rng.integers(0, w - cw + 1))
        y = int(rng.integers(0, h - ch + 1))
        return img.crop((x, y, x + cw, y + ch))

    zoomed = crop(image, 0.7).resize((width, height), Image.BICUBIC)
    angle = float(rng.choice([-1, 1]) * rng.uniform(8, 15))
    rotated = crop(image.rotate(angle, resample=Image.BICUBIC, expand=False), 0.8)
    recoloured = crop(image, 0.85)
    recoloured = recoloured.resize((int(recoloured.width * 0.6), int(recoloured.height * 0.6)), Image.BILINEAR)
    recoloured = ImageEnhance.Brightness(recoloured).enhance(float(rng.uniform(0.7, 1.3)))
    recoloured = ImageEnhance.Contrast(recoloured).enhance(float(rng.uniform(0.7, 1.3)))
    recoloured = ImageEnhance.Color(recoloured).enhance(float(rng.uniform(0.5, 1.5)))
    return [np.asarray(view.convert("RGB")) for view in (image, zoomed, rotated, recoloured)]


def load_skimage_holidays_benchmark() -> RetrievalData:
    """Holidays-style retrieval over scikit-image's photos: one query (II = 00) per group."""
    database: list[ImageRecord] = []
    queries: list[RetrievalQuery] = []
    for group, name in enumerate(SKIMAGE_PHOTOS):
        records = [ImageRecord(id=f"{1000 + group:04d}{i:02d}", pixels=view)
                   for i, view in enumerate(_views(_skimage_photo(name), group))]
        database.extend(records)
        queries.append(RetrievalQuery(id=records[0].id, image=records[0],
                                      good=[r.id for r in records[1:]], name=name))
    return RetrievalData(name="skimage_holidays", database=database, queries=queries, metric="holidays_map",
                         info={"source": "skimage.data", "photos": list(SKIMAGE_PHOTOS),
                               "views_per_photo": VIEWS_PER_PHOTO})


# ---- the registry -------------------------------------------------------------------------------

_BENCHMARKS = (
    Benchmark("digits", "classification", "mean_class_accuracy", "demo: scikit-learn digits (no download)",
              load_digits_benchmark, needs_root=False),
    Benchmark("skimage_holidays", "retrieval", "holidays_map",
              "demo: scikit-image photos, Holidays protocol (no download)",
              load_skimage_holidays_benchmark, needs_root=False),
    Benchmark("voc2007", "classification", "voc07_map", "PASCAL VOC2007 classification", voc2007.load,
              "VOCdevkit/VOC2007"),
    Benchmark("mit67", "classification", "mean_class_accuracy", "MIT Indoor 67 scenes", mit67.load,
              "Images/, TrainImages.txt, TestImages.txt", paper_multiclass="ovo"),
    Benchmark("cub200_2011", "classification", "mean_class_accuracy", "CUB-200-2011 birds", cub200_2011.load,
              "CUB_200_2011/", paper_multiclass="ovo"),
    Benchmark("flowers102", "classification", "mean_class_accuracy", "Oxford Flowers 102", flowers102.load,
              "jpg/, imagelabels.mat, setid.mat", paper_multiclass="ovo"),
    Benchmark("sun397", "classification", "mean_class_accuracy", "SUN397 scenes (mean over partitions)",
              sun397.load, "SUN397/, Partitions/ (10 partitions)"),
    Benchmark("caltech101", "classification", "mean_class_accuracy", "Caltech-101", caltech.load_caltech101,
              "101_ObjectCategories/ (seeded 30 train / 50 test per class)"),
    Benchmark("caltech256", "classification", "mean_class_accuracy", "Caltech-256", caltech.load_caltech256,
              "256_ObjectCategories/ (seeded 60 train / rest test per class)"),
    Benchmark("imagenet1k", "classification", "mean_class_accuracy", "ImageNet-1k (ILSVRC-2012): linear probe and k-NN",
              imagenet.load, "train/<wnid>/, val/, ILSVRC2012_devkit_t12/"),
    Benchmark("holidays", "retrieval", "holidays_map", "INRIA Holidays", holidays.load, "jpg/"),
    Benchmark("oxford5k", "retrieval", "oxford_map", "Oxford 5k buildings", oxford.load_oxford5k,
              "oxbuild_images/, gt_files_170407/"),
    Benchmark("paris6k", "retrieval", "oxford_map", "Paris 6k", oxford.load_paris6k, "paris/, paris_120310/"),
    Benchmark("ukbench", "retrieval", "ukbench_ns", "UKBench (N-S score)", ukbench.load, "full/"),
    Benchmark("roxford5k", "retrieval", "revisited_map", "Revisited Oxford (Easy / Medium / Hard)",
              revisited.load_roxford5k, "jpg/, gnd_roxford5k.pkl"),
    Benchmark("rparis6k", "retrieval", "revisited_map", "Revisited Paris (Easy / Medium / Hard)",
              revisited.load_rparis6k, "jpg/, gnd_rparis6k.pkl"),
)
BENCHMARKS: dict[str, Benchmark] = {benchmark.name: benchmark for benchmark in _BENCHMARKS}


def _option_value(text: str, default: Any) -> Any:
    """Convert a KEY=VALUE option to the type of the reader's default (int, bool, str)."""
    if isinstance(default, bool):
        if text.lower() in ("1", "true", "yes"):
            return True
        if text.lower() in ("0", "false", "no"):
            return False
        raise EngineError(f"option value {text!r} is not a boolean")
    if isinstance(default, (tuple, list)):
        return tuple(part for part in text.split(",") if part)
    if isinstance(default, int) or (default is None and text.lstrip("-").isdigit()):
        try:
            return int(text)
        except ValueError:
            raise EngineError(f"option value {text!r} is not an integer") from None
    return text


def official_benchmarks() -> list[str]:
    """The benchmarks read from a local copy of their official distribution, by name."""
    return sorted(name for name, benchmark in BENCHMARKS.items() if benchmark.needs_root)


def get_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise EngineError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


def official_benchmark(name: str) -> Benchmark:
    """The official benchmark `name`; anything else is a DatasetError naming the known ones."""
    benchmark = BENCHMARKS.get(name)
    if benchmark is None or not benchmark.needs_root:
        raise DatasetError(f"unknown dataset '{name}' (known: {', '.join(official_benchmarks())})")
    return benchmark


def load_dataset(name: str, root: str | Path, **options: Any) -> Data:
    """Read official benchmark `name` from ROOT, the folder its official archives were extracted into."""
    return official_benchmark(name).load(Path(root), **options)


def availability(name: str, root: Path | None = None) -> tuple[bool, str]:
    """Whether the benchmark's data can be read now, and why not."""
    benchmark = get_benchmark(name)
    if not benchmark.needs_root:
        return True, "ships with the installed packages"
    if root is None:
        return False, "needs --data ROOT"
    try:
        benchmark.load(root)
    except EngineError as exc:
        return False, str(exc)
    return True, f"found at {root}"
