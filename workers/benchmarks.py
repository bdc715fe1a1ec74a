"""The benchmark registry: name -> (loader, protocol kind, official metric).

Official benchmarks read a local copy of their distribution through `workers.datasets`
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

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workers.contract import EngineError
from workers.datasets.base import ClassificationData, ImageRecord, RetrievalData, RetrievalQuery

Data = ClassificationData | RetrievalData


@dataclass(frozen=True)
class Benchmark:
    name: str
    kind: str                 # classification | retrieval
    metric: str               # mean_class_accuracy | voc07_map | oxford_map | holidays_map | ukbench_ns
    title: str
    loader: Callable[..., Data]
    needs_root: bool = True
    paper_multiclass: str = "ovr"   # what [1] used: "ovo" for MIT67, CUB, Flowers

    def load(self, root: Path | None = None, **options) -> Data:
        if self.needs_root:
            if root is None:
                raise EngineError(f"{self.name} needs --data ROOT, "
                                  "the folder its official archives were extracted into")
            return self.loader(root, **options)
        return self.loader(**options)


def _official(name: str) -> Callable[..., Data]:
    def load(root: Path, **options) -> Data:
        from workers.datasets import load_dataset

        return load_dataset(name, root, **options)

    return load


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

_OFFICIAL = (
    ("voc2007", "classification", "voc07_map", "PASCAL VOC2007 classification", "ovr"),
    ("mit67", "classification", "mean_class_accuracy", "MIT Indoor 67 scenes", "ovo"),
    ("cub200_2011", "classification", "mean_class_accuracy", "CUB-200-2011 birds", "ovo"),
    ("flowers102", "classification", "mean_class_accuracy", "Oxford Flowers 102", "ovo"),
    ("sun397", "classification", "mean_class_accuracy", "SUN397 scenes (mean over partitions)", "ovr"),
    ("caltech101", "classification", "mean_class_accuracy", "Caltech-101", "ovr"),
    ("caltech256", "classification", "mean_class_accuracy", "Caltech-256", "ovr"),
    ("holidays", "retrieval", "holidays_map", "INRIA Holidays", "ovr"),
    ("oxford5k", "retrieval", "oxford_map", "Oxford 5k buildings", "ovr"),
    ("paris6k", "retrieval", "oxford_map", "Paris 6k", "ovr"),
    ("ukbench", "retrieval", "ukbench_ns", "UKBench (N-S score)", "ovr"),
)

BENCHMARKS: dict[str, Benchmark] = {
    "digits": Benchmark("digits", "classification", "mean_class_accuracy",
                        "demo: scikit-learn digits (no download)", lambda: load_digits_benchmark(), needs_root=False),
    "skimage_holidays": Benchmark("skimage_holidays", "retrieval", "holidays_map",
                                  "demo: scikit-image photos, Holidays protocol (no download)",
                                  lambda: load_skimage_holidays_benchmark(), needs_root=False),
}
for _name, _kind, _metric, _title, _multiclass in _OFFICIAL:
    BENCHMARKS[_name] = Benchmark(_name, _kind, _metric, _title, _official(_name), paper_multiclass=_multiclass)


def get_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise EngineError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


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
