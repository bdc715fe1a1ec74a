"""Batched feature extraction: decode in DataLoader workers, forward on the device, cache on disk.

Images are decoded, cropped to their box (where the protocol gives one), resized (shorter side)
and centre-cropped in worker processes with PIL, and travel as uint8 tensors; normalisation
happens on the device. On CUDA: bf16 autocast, channels_last, pinned memory, non-blocking copies.
On CPU: fp32 (channels_last too: it is faster for these convnets on CPU).

Jittering ("aug" in [1]) uses the classic deterministic ten views: centre and four corners of an
image resized to 1.14x the crop, each with its horizontal flip. `jitter="average"` averages the
views' features; `jitter="keep"` returns them all, (N, V, D).

Features are rounded to float16 precision always, so a result is the same whether its features
came from the cache (stored as float16) or were just extracted. Post-processing (power and L2
normalisation) is the protocol's business and is not cached: re-scoring never re-extracts.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from workers.contract import EngineError, Progress, ProgressCallback
from workers.datasets.base import ImageRecord
from workers.models import DataConfig

EXTRACTOR_VERSION = "3"   # bump when a change here alters features: it is part of every cache key
JITTER_VIEWS = 10
# On CPU, convnets run 2-3x faster per image in batches of a few images than of 32 (the working set
# stays in cache: EfficientNet-Lite0 on 2 cores, 63 vs 22 images/s): loader batches are split.
CPU_MICRO_BATCH = 4
_JITTER_SCALE = 1.14
_INTERPOLATION = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}


class FeatureExtractor(Protocol):
    data_config: DataConfig
    model_hash: str

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


def resolve_device(device: str = "auto") -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise EngineError("--device cuda asked for, but no CUDA device is available")
    if device not in ("cpu", "cuda"):
        raise EngineError(f"unknown device {device!r}: use auto, cpu or cuda")
    return device


def load_image(record: ImageRecord, draft_size: int | None = None) -> Image.Image:
    """The record's image as RGB, cropped to its box when it has one.

    `draft_size`: let libjpeg decode a JPEG at 1/2, 1/4 or 1/8 scale while both sides stay at least
    that size (PIL's draft mode). A 3264 x 2448 Holidays photo resized to 256 anyway then decodes
    several times faster, which is what keeps a GPU fed. Not used with a box (its coordinates are
    in full-resolution pixels).
    """
    if record.pixels is not None:
        image = Image.fromarray(np.ascontiguousarray(record.pixels))
    elif record.path is not None:
        try:
            image = Image.open(record.path)
            if draft_size and record.box is None and image.format == "JPEG":
                image.draft("RGB", (draft_size, draft_size))
            image.load()
        except (OSError, ValueError) as exc:
            raise EngineError(f"cannot read image {record.id} ({record.path}): {exc}") from None
    else:
        raise EngineError(f"image {record.id} has neither a path nor pixels")
    image = image.convert("RGB")
    if record.box is not None:
        x1, y1, x2, y2 = record.box
        image = image.crop((round(x1), round(y1), round(x2), round(y2)))
    return image


def _resize_shorter(image: Image.Image, size: int, interpolation: int) -> Image.Image:
    width, height = image.size
    scale = size / min(width, height)
    new = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(new, interpolation) if new != image.size else image


def _crop(image: Image.Image, size: int, where: str) -> Image.Image:
    width, height = image.size
    left = {"l": 0, "c": (width - size) // 2, "r": width - size}
    top = {"t": 0, "c": (height - size) // 2, "b": height - size}
    x = left[where[1]]
    y = top[where[0]]
    return image.crop((x, y, x + size, y + size))


def _to_uint8_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)


def preprocess(image: Image.Image, config: DataConfig, jitter: bool = False) -> torch.Tensor:
    """(V, 3, S, S) uint8 views of one image: V = 1, or `JITTER_VIEWS` when jittering."""
    interpolation = _INTERPOLATION[config.interpolation]
    size = config.input_size
    if not jitter:
        return _to_uint8_tensor(_crop(_resize_shorter(image, config.resize_size, interpolation), size, "cc"))[None]
    resized = _resize_shorter(image, decode_size(config, True), interpolation)
    views = [_crop(resized, size, where) for where in ("cc", "tl", "tr", "bl", "br")]
    views += [view.transpose(Image.FLIP_LEFT_RIGHT) for view in views]
    return torch.stack([_to_uint8_tensor(view) for view in views])


class ImageViews(torch.utils.data.Dataset):
    """The records as uint8 view stacks; runs in DataLoader workers."""

    def __init__(self, records: Sequence[ImageRecord], config: DataConfig, jitter: bool):
        self.records = list(records)
        self.config = config
        self.jitter = jitter

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> torch.Tensor:
        return preprocess(load_image(self.records[index], draft_size=decode_size(self.config, self.jitter)),
                          self.config, self.jitter)


def decode_size(config: DataConfig, jitter: bool) -> int:
    """The shorter side the preprocessing resizes to: JPEGs need not be decoded any larger."""
    return max(config.input_size, round(config.input_size * _JITTER_SCALE)) if jitter else config.resize_size


def _worker_init(_worker_id: int) -> None:
    torch.set_num_threads(1)   # decoding is single-threaded PIL; leave the cores to the forward pass


def pipeline_settings(model: FeatureExtractor, *, jitter: str | None) -> dict:
    """Everything about extraction that changes the features (the cache key, minus the images)."""
    describe = getattr(model, "describe", None)
    info = describe() if describe else {"data_config": model.data_config.to_dict()}
    return {
        "extractor_version": EXTRACTOR_VERSION,
        "model_hash": model.model_hash,
        "layer": info.get("layer"),
        "pooling": info.get("pooling"),
        "data_config": info["data_config"],
        "jitter": jitter,
        "jitter_views": JITTER_VIEWS if jitter else 1,
        "feature_precision": "float16",
        "jpeg_decode": "draft (DCT-scaled) to the resize size",
    }


class FeatureCache:
    """float16 features on disk, keyed by model hash + dataset + split + pipeline settings + image ids."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.hits = 0

    @staticmethod
    def key(dataset: str, split: str, settings: dict, ids: Sequence[str]) -> str:
        canonical = json.dumps(
            {"dataset": dataset, "split": split, "settings": settings,
             "ids": hashlib.sha256("\n".join(ids).encode()).hexdigest()},
            sort_keys=True, separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.root / f"{key}.npz"

    def load(self, key: str, ids: Sequence[str]) -> np.ndarray | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as stored:
                if list(stored["ids"]) != list(ids):
                    return None
                return stored["features"].astype(np.float32)
        except (OSError, KeyError, ValueError):
            return None   # a damaged entry is re-extracted

    def store(self, key: str, ids: Sequence[str], features: np.ndarray, settings: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{key}.tmp.npz"
        np.savez(tmp, features=features.astype(np.float16), ids=np.asarray(list(ids), dtype=str),
                 settings=json.dumps(settings, sort_keys=True))
        tmp.replace(self.path(key))


def extract_features(
    model: FeatureExtractor,
    records: Sequence[ImageRecord],
    *,
    device: str = "auto",
    batch_size: int = 32,
    num_workers: int = 2,
    jitter: str | None = None,
    progress: ProgressCallback | None = None,
    cache: FeatureCache | None = None,
    dataset: str = "",
    split: str = "",
) -> np.ndarray:
    """Features of `records`: (N, D) float32, or (N, V, D) with `jitter="keep"`.

    jitter: None | "average" | "keep". The cache (when given) is consulted first and filled after.
    """
    if jitter not in (None, "average", "keep"):
        raise EngineError(f"unknown jitter mode {jitter!r}: use average or keep")
    ids = [record.id for record in records]
    settings = pipeline_settings(model, jitter=jitter)
    key = FeatureCache.key(dataset, split, settings, ids) if cache is not None else None
    if cache is not None:
        cached = cache.load(key, ids)
        if cached is not None:
            cache.hits += 1
            if progress:
                progress(Progress("extracting", len(ids), len(ids), 0.0, f"{split}: from the feature cache"))
            return cached

    features = _run(model, records, resolve_device(device), batch_size, num_workers, jitter is not None,
                    progress, split)
    features = features.astype(np.float16).astype(np.float32)
    if jitter == "average":
        features = features.mean(axis=1).astype(np.float16).astype(np.float32)
    elif jitter is None:
        features = features[:, 0]
    if cache is not None:
        cache.store(key, ids, features, settings)
    return features


def forward(model, images: torch.Tensor, *, on_cuda: bool) -> torch.Tensor:
    """The model on a normalised batch: bf16 autocast on CUDA, CPU micro-batches in fp32."""
    if on_cuda:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=isinstance(model, torch.nn.Module)):
            return model(images)
    return torch.cat([model(chunk) for chunk in images.split(CPU_MICRO_BATCH)])


def _run(model, records, device, batch_size, num_workers, jitter, progress, split) -> np.ndarray:
    if not records:
        raise EngineError(f"no images to extract ({split or 'split'} is empty)")
    config = model.data_config
    on_cuda = device == "cuda"
    is_torch = isinstance(model, torch.nn.Module)
    if is_torch:
        model.eval().to(device)
        model.to(memory_format=torch.channels_last)
    loader = torch.utils.data.DataLoader(
        ImageViews(records, config, jitter),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=on_cuda,
        worker_init_fn=_worker_init if num_workers > 0 else None,
        prefetch_factor=4 if num_workers > 0 else None,
    )
    mean = torch.tensor(config.mean, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(config.std, device=device).view(1, 3, 1, 1) * 255
    chunks: list[np.ndarray] = []
    done, total, start = 0, len(records), time.perf_counter()
    with torch.inference_mode():
        for batch in loader:
            n, views = batch.shape[:2]
            images = batch.to(device, non_blocking=on_cuda).flatten(0, 1).float()
            images = ((images - mean) / std).contiguous(memory_format=torch.channels_last)
            out = forward(model, images, on_cuda=on_cuda)
            chunks.append(out.float().reshape(n, views, -1).cpu().numpy())
            done += n
            if progress:
                rate = done / max(time.perf_counter() - start, 1e-9)
                progress(Progress("extracting", done, total, rate, split))
    features = np.concatenate(chunks)
    if not np.isfinite(features).all():
        raise EngineError("the model produced NaN or infinite features")
    return features
