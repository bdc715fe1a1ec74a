"""Batched feature extraction: decode in DataLoader workers, forward on the device, cache on disk.

Two decode pipelines, chosen by `extract_features(decode=...)`:
  "pil":  images are decoded, cropped to their box (where the protocol gives one), resized (shorter
          side) and centre-cropped in worker processes with PIL, and travel as uint8 tensors.
  "gpu":  workers only read the files' bytes; the main process decodes each batch of plain JPEGs on
          the extraction device (batched nvjpeg on CUDA; libjpeg-turbo on CPU, which is how the path
          is tested without a GPU) and resizes and crops there with antialiased interpolation.
          Meant to feed a GPU that runs a model at ~17,000 images/s where PIL workers decode ~1,000/s;
          measured slower than PIL so far (see AUTO_DEVICE_DECODE). Boxes, non-JPEG files and JPEGs
          nvjpeg can't read (CMYK, 12-bit, arithmetic-coded, corrupt) take the PIL path, image by image.
  "auto" (the default) is "pil" for now: see AUTO_DEVICE_DECODE for the measurement that says so.
The two resize differently (within a few grey levels), so the pipeline is part of the settings:
of the feature cache key and of the recorded provenance.

The "pil" pipeline's JPEG decoder (`jpeg_decoder=`): "pil" (libjpeg-turbo through PIL, in draft mode)
or "simplejpeg" (libjpeg-turbo through simplejpeg, DCT-scaled by the same 1/2, 1/4, 1/8 rule as PIL's
draft, then the same PIL resize). Both are libjpeg-turbo with the same IDCT and upsampling, and
decode to the same pixels here; simplejpeg skips PIL's file parsing and mode conversion. Anything
simplejpeg doesn't take (non-JPEGs, CMYK, 12-bit, arithmetic-coded, a file it refuses; images cropped
to a box) goes to PIL. "auto" is `AUTO_JPEG_DECODER` (see the measurement there). The decoder is part
of the settings whenever it is not PIL and files are decoded, so a change of decoder never serves
cached features.

A prepared-images store (`prepared=`, workers/prepared.py) keeps every image decoded and resized
once, memory-mapped; later models whose preprocessing up to the resize is the same read it instead
of the files, and crop at batch time. Its features are the "pil" pipeline's, bit for bit (the crop
of a uint8 image is exact), so it is not part of the settings.
Normalisation happens on the device. On CUDA: bf16 autocast, channels_last, non-blocking copies.
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
import os
import time
import uuid
import zipfile
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np
import torch
from PIL import Image

from workers.contract import EngineError, Progress, ProgressCallback
from workers.datasets.base import ImageRecord
from workers.models import DataConfig

EXTRACTOR_VERSION = "4"   # bump when a change here alters features: it is part of every cache key
JITTER_VIEWS = 10
# On CPU, convnets run 2-3x faster per image in batches of a few images than of 32 (the working set
# stays in cache: EfficientNet-Lite0 on 2 cores, 63 vs 22 images/s): loader batches are split.
CPU_MICRO_BATCH = 4
_JITTER_SCALE = 1.14
_INTERPOLATION = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}
DECODE_MODES = ("auto", "pil", "gpu")
JPEG_DECODERS = ("auto", "pil", "simplejpeg")
# What jpeg_decoder="auto" means: PIL. simplejpeg decodes to the same pixels (both are libjpeg-turbo with
# DCT scaling: PIL's draft mode already has the 1/2, 1/4, 1/8 decode) and does not beat it by a margin worth a
# new cache key for every file-based set: bench/extract.py's decoder rows (2 shared cores, CPU time per image,
# decoders interleaved image by image, resized to 224 bicubic / 256 bilinear), simplejpeg / PIL time:
# 500 x 375 JPEGs 0.98-1.00 (3.3-3.7 ms each), 2500 x 1875 ones 0.95-0.97 (9-10 ms each); end to end with
# EfficientNet-Lite0 on CPU the same within noise (alternated runs: 40-49 images/s both).
AUTO_JPEG_DECODER = "pil"
# Whether "auto" picks the device pipeline on CUDA (when nvjpeg works there). Off: on an H200 with
# 16 cores (torch 2.11, torchvision 0.26, EfficientNet-Lite0, batch 128) nvjpeg end-to-end ran 567
# images/s against 1268 for PIL in 14 workers (~500 x 375 JPEGs), 148 vs 258 (2500 x 1875):
# torchvision's decoder is one mutex-guarded instance, fed from the main process only.
AUTO_DEVICE_DECODE = False
# The pipelines as recorded in the settings: "gpu" is nvjpeg on CUDA, libjpeg-turbo on CPU.
_DECODERS = {"pil": "pil", "cuda": "nvjpeg", "cpu": "torchvision-cpu"}
# JPEG frame types nvjpeg decodes (baseline, extended and progressive Huffman), 8-bit, gray or YCbCr.
_DEVICE_JPEG_FRAMES = (0xC0, 0xC1, 0xC2)
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Resize at most this many float pixel values at once (1 GiB): a batch of 128 12-megapixel photos
# would need 18 GiB in one go.
_RESIZE_CHUNK_VALUES = 256 * 2**20


class FeatureExtractor(Protocol):
    data_config: DataConfig
    model_hash: str

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


class ImageStore(Protocol):
    """A prepared-images store (workers/prepared.py `PreparedStore`): the records' decoded, resized images,
    served as view batches for a model's crop (`building` on first use). Named here by its shape only, so
    the store may use this module's preprocessing without an import circle."""

    def source(self, records: Sequence[ImageRecord], config: DataConfig, jitter: bool, *, dataset: str = "",
               split: str = "", jpeg_decoder: str = "auto", batch_size: int = 32, num_workers: int = 2,
               pin: bool = False): ...


def resolve_device(device: str = "auto") -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise EngineError("--device cuda asked for, but no CUDA device is available")
    if device not in ("cpu", "cuda"):
        raise EngineError(f"unknown device {device!r}: use auto, cpu or cuda")
    return device


def load_image(record: ImageRecord, draft_size: int | None = None, decoder: str = "pil") -> Image.Image:
    """The record's image as RGB, cropped to its box when it has one.

    `draft_size`: let libjpeg decode a JPEG at 1/2, 1/4 or 1/8 scale while both sides stay at least
    that size (PIL's draft mode). A 3264 x 2448 Holidays photo resized to 256 anyway then decodes
    several times faster, which is what keeps a GPU fed. Not used with a box (its coordinates are
    in full-resolution pixels).
    `decoder`: "pil", or "simplejpeg" for the JPEGs it takes without a box (the same scale rule; PIL for
    the rest, so an image cropped to a box is decoded as the device pipeline's fallback decodes it).
    """
    if record.pixels is not None:
        image = Image.fromarray(np.ascontiguousarray(record.pixels))
    elif record.path is not None:
        image = _simplejpeg_image(record, draft_size) if decoder == "simplejpeg" and record.box is None else None
        if image is None:
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


def draft_scale(width: int, height: int, draft_size: int | None) -> int:
    """The JPEG scale-down factor (1, 2, 4 or 8) PIL's draft mode picks: the largest that keeps both sides
    at least `draft_size` (JpegImagePlugin.draft), 1 without a draft size."""
    if not draft_size:
        return 1
    scale = min(width // draft_size, height // draft_size)
    return next((factor for factor in (8, 4, 2) if scale >= factor), 1)


@lru_cache(maxsize=1)
def simplejpeg_available() -> bool:
    try:
        import simplejpeg  # noqa: F401
    except ImportError:
        return False
    return True


def _simplejpeg_image(record: ImageRecord, draft_size: int | None) -> Image.Image | None:
    """The record's JPEG (no box) decoded by simplejpeg at PIL's draft scale; None where PIL should decode
    it (not a plain 8-bit Huffman JPEG in gray or YCbCr, or one simplejpeg refuses)."""
    try:
        data = Path(record.path).read_bytes()
    except OSError as exc:
        raise EngineError(f"cannot read image {record.id} ({record.path}): {exc}") from None
    if not device_decodable(data):   # CMYK/YCCK, 12-bit, arithmetic-coded, not a JPEG: PIL converts them right
        return None
    import simplejpeg

    try:
        height, width, _, _ = simplejpeg.decode_jpeg_header(data)
        factor = draft_scale(width, height, draft_size)
        shape = (-(-height // factor), -(-width // factor))   # PIL's draft size: rounded up
        pixels = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=shape[0], min_width=shape[1],
                                        min_factor=factor)
    except ValueError:
        return None   # simplejpeg refuses it (corrupt, truncated, unsupported): PIL decides
    if pixels.shape[:2] != shape:
        return None
    return Image.fromarray(pixels)


def resolve_jpeg_decoder(decoder: str) -> str:
    """The decoder `decoder` ("auto" | "pil" | "simplejpeg") means here: "pil" or "simplejpeg"."""
    if decoder not in JPEG_DECODERS:
        raise EngineError(f"unknown JPEG decoder {decoder!r}: use auto, pil or simplejpeg")
    if decoder == "auto":
        decoder = AUTO_JPEG_DECODER
        if decoder == "simplejpeg" and not simplejpeg_available():
            return "pil"
    if decoder == "simplejpeg" and not simplejpeg_available():
        raise EngineError("jpeg_decoder='simplejpeg' asked for, but simplejpeg is not installed")
    return decoder


def resized_shape(width: int, height: int, size: int, mode: str) -> tuple[int, int]:
    """(width, height) after resizing: the shorter side to `size` ("shorter"), or both sides ("squash").

    The longer side is int(size * long / short), truncated, as torchvision's Resize computes it (and
    with it timm's, OpenCLIP's and transformers' transforms): features match the libraries' own.
    """
    if mode == "squash" or width == height:
        return size, size
    if width < height:
        return size, max(1, int(size * height / width))
    return max(1, int(size * width / height)), size


def _resize(image: Image.Image, size: int, interpolation: int, mode: str) -> Image.Image:
    new = resized_shape(*image.size, size, mode)
    return image.resize(new, interpolation) if new != image.size else image


def _crop_origin(width: int, height: int, size: int, where: str, centre: str = "round") -> tuple[int, int]:
    """Top-left corner of the `size` square at `where` ("cc", "tl", "tr", "bl", "br"): both pipelines use it.

    The centre's offset is int(round((side - size) / 2)) as torchvision's CenterCrop computes it
    (timm, OpenCLIP, torchvision), or int((side - size) / 2) as transformers' image processors do
    (`DataConfig.centre_crop`): they differ by a pixel when side - size is odd."""
    halve = (lambda room: int(round(room / 2.0))) if centre == "round" else (lambda room: int(room / 2.0))
    left = {"l": 0, "c": halve(width - size), "r": width - size}
    top = {"t": 0, "c": halve(height - size), "b": height - size}
    return left[where[1]], top[where[0]]


def _crop(image: Image.Image, size: int, where: str, centre: str = "round") -> Image.Image:
    x, y = _crop_origin(*image.size, size, where, centre)
    return image.crop((x, y, x + size, y + size))


_JITTER_CROPS = ("cc", "tl", "tr", "bl", "br")


def _to_uint8_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)


def preprocess(image: Image.Image, config: DataConfig, jitter: bool = False) -> torch.Tensor:
    """(V, 3, S, S) uint8 views of one image: V = 1, or `JITTER_VIEWS` when jittering."""
    interpolation = _INTERPOLATION[config.interpolation]
    size = config.input_size
    if not jitter:
        resized = _resize(image, config.resize_size, interpolation, config.resize_mode)
        return _to_uint8_tensor(_crop(resized, size, "cc", config.centre_crop))[None]
    resized = _resize(image, decode_size(config, True), interpolation, config.resize_mode)
    views = [_crop(resized, size, where, config.centre_crop) for where in _JITTER_CROPS]
    views += [view.transpose(Image.FLIP_LEFT_RIGHT) for view in views]
    return torch.stack([_to_uint8_tensor(view) for view in views])


class _Records(torch.utils.data.Dataset):
    """The records and the preprocessing they get; subclasses say what a worker returns per record."""

    def __init__(self, records: Sequence[ImageRecord], config: DataConfig, jitter: bool, decoder: str = "pil"):
        self.records = list(records)
        self.config = config
        self.jitter = jitter
        self.decoder = decoder   # the JPEG decoder of the PIL path: pil | simplejpeg

    def __len__(self) -> int:
        return len(self.records)


class ImageViews(_Records):
    """The records as uint8 view stacks; runs in DataLoader workers."""

    def __getitem__(self, index: int) -> torch.Tensor:
        return preprocess(load_image(self.records[index], draft_size=decode_size(self.config, self.jitter),
                                     decoder=self.decoder), self.config, self.jitter)


def decode_size(config: DataConfig, jitter: bool) -> int:
    """The shorter side (both, "squash") the preprocessing resizes to: JPEGs need not be decoded larger."""
    return max(config.input_size, round(config.input_size * _JITTER_SCALE)) if jitter else config.resize_size


def _worker_init(_worker_id: int) -> None:
    torch.set_num_threads(1)   # decoding is single-threaded PIL; leave the cores to the forward pass


def pipeline_settings(model: FeatureExtractor, *, jitter: str | None, decode: str = "pil",
                      jpeg_decoder: str | None = None) -> dict:
    """Everything about extraction that changes the features (the cache key, minus the images).

    `decode`: the resolved pipeline, "pil", "nvjpeg" or "torchvision-cpu" (see `resolve_decode`).
    `jpeg_decoder`: the PIL pipeline's JPEG decoder where files are decoded ("pil" | "simplejpeg");
    recorded when it is not PIL (so the keys of features decoded by PIL stay what they were).
    """
    describe = getattr(model, "describe", None)
    info = describe() if describe else {"data_config": model.data_config.to_dict()}
    if decode == "pil":
        jpeg_decode = "draft (DCT-scaled) to the resize size"
    else:
        jpeg_decode = "full size, then antialiased torch interpolation; boxes and non-JPEGs as with pil"
    settings = {
        "extractor_version": EXTRACTOR_VERSION,
        "model_hash": model.model_hash,
        "layer": info.get("layer"),
        "pooling": info.get("pooling"),
        "data_config": info["data_config"],
        "jitter": jitter,
        "jitter_views": JITTER_VIEWS if jitter else 1,
        "feature_precision": "float16",
        "decode": decode,
        "jpeg_decode": jpeg_decode,
    }
    if decode == "pil" and jpeg_decoder not in (None, "pil"):
        settings["jpeg_decoder"] = jpeg_decoder
        settings["jpeg_decode"] = (f"{jpeg_decoder}, DCT-scaled by PIL's draft rule to the resize size; PIL for "
                                   "non-JPEGs, CMYK, 12-bit and arithmetic-coded JPEGs")
    if info.get("readout"):   # library families: what the vector is read from (CLS, mean, projected, ...)
        settings["readout"] = info["readout"]
    return settings


# --- the device decode pipeline ("gpu"): bytes in the workers, decode + resize on the device ---

def resolve_decode(decode: str, device: str) -> str:
    """The pipeline `decode` ("auto" | "pil" | "gpu") means on `device`: "pil", "nvjpeg" or "torchvision-cpu"."""
    if decode not in DECODE_MODES:
        raise EngineError(f"unknown decode {decode!r}: use auto, pil or gpu")
    if decode == "pil" or (decode == "auto" and (device != "cuda" or not AUTO_DEVICE_DECODE)):
        return "pil"
    if device == "cuda" and not nvjpeg_available():
        if decode == "gpu":
            raise EngineError("decode='gpu' asked for, but this torchvision cannot decode JPEGs on CUDA (nvjpeg)")
        return "pil"
    return _DECODERS[device]


@lru_cache(maxsize=1)
def nvjpeg_available() -> bool:
    """Whether torchvision decodes JPEGs on CUDA here (built with nvjpeg, and a GPU to run it on)."""
    if not torch.cuda.is_available():
        return False
    try:
        from torchvision.io import ImageReadMode, decode_jpeg, encode_jpeg

        probe = encode_jpeg(torch.full((3, 16, 16), 128, dtype=torch.uint8))
        return tuple(decode_jpeg([probe], mode=ImageReadMode.RGB, device="cuda")[0].shape) == (3, 16, 16)
    except Exception:
        return False


def jpeg_frame(data: bytes) -> tuple[int, int, int] | None:
    """(SOF marker, sample precision, components) of a JPEG file's frame header; None if not a JPEG."""
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:                        # fill byte
            i += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:   # markers without a length
            i += 2
        elif marker in _SOF_MARKERS:
            return (marker, data[i + 4], data[i + 9]) if i + 10 <= len(data) else None
        elif marker == 0xDA:                      # a scan before any frame header: malformed
            return None
        else:
            i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return None


def device_decodable(data: bytes) -> bool:
    """A JPEG nvjpeg reads as RGB: Huffman-coded (baseline, extended, progressive), 8-bit, gray or YCbCr.

    CMYK/YCCK (Adobe) JPEGs, 12-bit and arithmetic-coded ones go to PIL, which converts them right.
    """
    frame = jpeg_frame(data)
    return frame is not None and frame[0] in _DEVICE_JPEG_FRAMES and frame[1] == 8 and frame[2] in (1, 3)


class EncodedImages(_Records):
    """Runs in DataLoader workers: plain JPEG files as their bytes, anything else as PIL-path views."""

    def __getitem__(self, index: int) -> bytes | torch.Tensor:
        record = self.records[index]
        if record.pixels is None and record.path is not None and record.box is None:
            try:
                data = Path(record.path).read_bytes()
            except OSError as exc:
                raise EngineError(f"cannot read image {record.id} ({record.path}): {exc}") from None
            if device_decodable(data):
                return data
        return preprocess(load_image(record, draft_size=decode_size(self.config, self.jitter)),
                          self.config, self.jitter)


class EncodedBatch(NamedTuple):
    """A batch as it leaves a worker: all JPEG bytes in one tensor (one shared-memory block, not 128)."""

    size: int
    jpegs: torch.Tensor            # uint8, the files' bytes concatenated
    jpeg_lengths: list[int]
    jpeg_positions: list[int]      # where each JPEG sits in the batch
    views: torch.Tensor | None     # (k, V, 3, S, S) uint8: the images the PIL path prepared
    view_positions: list[int]


def pack_encoded(items: list[bytes | torch.Tensor]) -> EncodedBatch:
    """DataLoader collate_fn of `EncodedImages`."""
    blobs = [(i, item) for i, item in enumerate(items) if isinstance(item, bytes)]
    views = [(i, item) for i, item in enumerate(items) if not isinstance(item, bytes)]
    joined = b"".join(blob for _, blob in blobs)
    jpegs = torch.frombuffer(bytearray(joined), dtype=torch.uint8) if joined else torch.empty(0, dtype=torch.uint8)
    return EncodedBatch(
        size=len(items), jpegs=jpegs, jpeg_lengths=[len(blob) for _, blob in blobs],
        jpeg_positions=[i for i, _ in blobs],
        views=torch.stack([v for _, v in views]) if views else None, view_positions=[i for i, _ in views],
    )


def decode_jpegs(blobs: Sequence[torch.Tensor], device: str) -> list[torch.Tensor | None]:
    """(3, H, W) uint8 RGB images on `device` (nvjpeg, batched, on CUDA); None where one can't be decoded."""
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        return list(decode_jpeg(list(blobs), mode=ImageReadMode.RGB, device=device))
    except RuntimeError:
        pass   # one bad file fails the whole batch: decode them one by one to find it
    decoded: list[torch.Tensor | None] = []
    for blob in blobs:
        try:
            decoded.append(decode_jpeg(blob, mode=ImageReadMode.RGB, device=device))
        except RuntimeError:
            decoded.append(None)
    return decoded


def _resize_tensor(images: torch.Tensor, size: tuple[int, int], interpolation: str) -> torch.Tensor:
    """PIL-like resize of a float (N, 3, H, W) batch: antialiased when shrinking, rounded to grey levels."""
    if interpolation == "nearest":
        resized = torch.nn.functional.interpolate(images, size=size, mode="nearest")
    else:
        resized = torch.nn.functional.interpolate(images, size=size, mode=interpolation, align_corners=False,
                                                  antialias=True)
    return resized.clamp_(0, 255).round_()


def _tensor_views(images: torch.Tensor, size: int, jitter: bool, centre: str = "round") -> torch.Tensor:
    """(N, V, 3, S, S) crops of a resized (N, 3, H, W) batch, in `preprocess`'s order."""
    height, width = images.shape[-2:]
    crops = []
    for where in _JITTER_CROPS if jitter else ("cc",):
        x, y = _crop_origin(width, height, size, where, centre)
        crops.append(images[..., y:y + size, x:x + size])
    if jitter:
        crops += [crop.flip(-1) for crop in crops]
    return torch.stack(crops, dim=1)


def preprocess_decoded(images: Sequence[torch.Tensor], config: DataConfig, jitter: bool = False) -> torch.Tensor:
    """The device pipeline's `preprocess`: (N, V, 3, S, S) float grey levels of decoded (3, H, W) uint8 images.

    Images of one size are resized together (a dataset's photos share a few sizes), in chunks that
    bound the float memory.
    """
    size, target = config.input_size, decode_size(config, jitter)
    views = JITTER_VIEWS if jitter else 1
    out = torch.empty((len(images), views, 3, size, size), dtype=torch.float32, device=images[0].device)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, image in enumerate(images):
        groups.setdefault((int(image.shape[-2]), int(image.shape[-1])), []).append(i)
    for (height, width), members in groups.items():
        new = resized_shape(width, height, target, config.resize_mode)[::-1]   # (height, width)
        per_chunk = max(1, _RESIZE_CHUNK_VALUES // (3 * max(height * width, new[0] * new[1])))
        for start in range(0, len(members), per_chunk):
            chunk = members[start:start + per_chunk]
            batch = torch.stack([images[i] for i in chunk]).float()
            if new != (height, width):
                batch = _resize_tensor(batch, new, config.interpolation)
            out[chunk] = _tensor_views(batch, size, jitter, config.centre_crop)
    return out


def decode_on_device(batch: EncodedBatch, records: Sequence[ImageRecord], config: DataConfig, jitter: bool,
                     device: str) -> torch.Tensor:
    """(N, V, 3, S, S) float grey levels of an `EncodedBatch` on `device`; `records` are the batch's records.

    A JPEG the device decoder refuses takes the PIL path here, in the main process.
    """
    views = JITTER_VIEWS if jitter else 1
    size = config.input_size
    out = torch.empty((batch.size, views, 3, size, size), dtype=torch.float32, device=device)
    if batch.views is not None:
        out[batch.view_positions] = batch.views.to(device).float()
    if batch.jpeg_positions:
        decoded = decode_jpegs(batch.jpegs.split(batch.jpeg_lengths), device)
        good = [i for i, image in enumerate(decoded) if image is not None]
        if good:
            out[[batch.jpeg_positions[i] for i in good]] = preprocess_decoded([decoded[i] for i in good], config,
                                                                              jitter)
        for i, image in enumerate(decoded):
            if image is None:
                position = batch.jpeg_positions[i]
                pil = load_image(records[position], draft_size=decode_size(config, jitter))
                out[position] = preprocess(pil, config, jitter).to(device).float()
    return out


def cache_key(dataset: str, split: str, settings: dict, ids: Sequence[str]) -> str:
    """sha256 of a split's images (their ids, in order) and the settings that make what is stored of them:
    the key of the feature cache and of the prepared-images store."""
    canonical = json.dumps(
        {"dataset": dataset, "split": split, "settings": settings,
         "ids": hashlib.sha256("\n".join(ids).encode()).hexdigest()},
        sort_keys=True, separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class FeatureCache:
    """float16 features on disk, keyed by model hash + dataset + split + pipeline settings + image ids."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.hits = 0

    @staticmethod
    def key(dataset: str, split: str, settings: dict, ids: Sequence[str]) -> str:
        return cache_key(dataset, split, settings, ids)

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
        except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError):
            return None   # a damaged entry is re-extracted

    def store(self, key: str, ids: Sequence[str], features: np.ndarray, settings: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        # a name of its own: two writers of one entry at once (a shard sent again while its first attempt
        # still runs) must not rename each other's half-written file
        tmp = self.root / f".{key}.{os.getpid()}.{uuid.uuid4().hex}.tmp.npz"
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
    decode: str = "auto",
    jpeg_decoder: str = "auto",
    prepared: ImageStore | None = None,
    settings_out: dict | None = None,
) -> np.ndarray:
    """Features of `records`: (N, D) float32, or (N, V, D) with `jitter="keep"`.

    jitter: None | "average" | "keep". The cache (when given) is consulted first and filled after.
    decode: "auto" | "pil" | "gpu" (see the module's docstring); jpeg_decoder: "auto" | "pil" |
    "simplejpeg", the PIL pipeline's. `prepared`: a prepared-images store (`PreparedStore`), for the
    PIL pipeline: built on first use (the images are decoded and resized once, while this model
    runs on them), read by every later model with the same resize. `settings_out`, when given, is
    filled with the pipeline settings used (for provenance).
    """
    if jitter not in (None, "average", "keep"):
        raise EngineError(f"unknown jitter mode {jitter!r}: use average or keep")
    device = resolve_device(device)
    pipeline = resolve_decode(decode, device)
    decoder = resolve_jpeg_decoder(jpeg_decoder)
    files = any(record.path is not None and record.box is None for record in records)   # what a decoder decodes
    ids = [record.id for record in records]
    settings = {**pipeline_settings(model, jitter=jitter, decode=pipeline, jpeg_decoder=decoder if files else None),
                **precision(model, device)}
    if settings_out is not None:
        settings_out.update(settings)
    key = FeatureCache.key(dataset, split, settings, ids) if cache is not None else None
    if cache is not None:
        cached = cache.load(key, ids)
        if cached is not None:
            cache.hits += 1
            if progress:
                progress(Progress("extracting", len(ids), len(ids), 0.0, f"{split}: from the feature cache"))
            return cached

    fit = MemoryFit()
    batches, message = None, split
    # in-memory pixels (the demo sets) cost no decoding: nothing to prepare
    if prepared is not None and pipeline == "pil" and any(record.path is not None for record in records):
        source = prepared.source(records, model.data_config, jitter is not None, dataset=dataset, split=split,
                              jpeg_decoder=decoder, batch_size=batch_size, num_workers=num_workers,
                              pin=device == "cuda")
        batches = source
        message = f"{split}: preparing images (first use)" if source.building else f"{split}: prepared images"
        if settings_out is not None:
            settings_out["prepared_store"] = "built" if source.building else "read"
    features = _run(model, records, device, batch_size, num_workers, jitter is not None, progress, message,
                    on_device_decode=pipeline != "pil", fit=fit, decoder=decoder, batches=batches)
    if settings_out is not None and fit.size:
        settings_out["gpu_micro_batch"] = fit.size
    features = features.astype(np.float16).astype(np.float32)
    if jitter == "average":
        features = features.mean(axis=1).astype(np.float16).astype(np.float32)
    elif jitter is None:
        features = features[:, 0]
    if cache is not None:
        cache.store(key, ids, features, settings)
    return features


class MemoryFit:
    """Runs a forward pass in the largest micro-batch that fits the device's memory.

    The first batch runs whole; on running out of memory it is halved until it fits, and later
    batches start at the size that fitted (big models: a ViT-g at batch 128 does not fit every GPU).
    """

    def __init__(self, out_of_memory: type[BaseException] = torch.cuda.OutOfMemoryError):
        self.out_of_memory = out_of_memory
        self.size: int | None = None   # the micro-batch that fitted; None: whole batches so far

    def __call__(self, run, images: torch.Tensor) -> torch.Tensor:
        while True:
            size = self.size or len(images)
            try:
                return torch.cat([run(chunk) for chunk in images.split(size)]) if size < len(images) else run(images)
            except self.out_of_memory:
                if size == 1:
                    raise EngineError("one image does not fit in the GPU's memory at this model's input size") from None
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                self.size = max(1, size // 2)


def forward(model, images: torch.Tensor, *, on_cuda: bool, fit: MemoryFit | None = None) -> torch.Tensor:
    """The model on a normalised batch: bf16 autocast on CUDA in micro-batches that fit its memory,
    CPU micro-batches in fp32."""
    if on_cuda:
        def run(chunk: torch.Tensor) -> torch.Tensor:
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=isinstance(model, torch.nn.Module)):
                return model(chunk)

        return (fit or MemoryFit())(run, images)
    return torch.cat([model(chunk) for chunk in images.split(CPU_MICRO_BATCH)])


def precision(model, device: str) -> dict:
    """The arithmetic the forward pass runs in (it changes the features: part of the cache key)."""
    if device == "cuda" and isinstance(model, torch.nn.Module):
        return {"precision": "bfloat16 autocast", "memory_format": "channels_last"}
    return {"precision": "float32", "memory_format": "channels_last" if isinstance(model, torch.nn.Module) else None}


def _run(model, records, device, batch_size, num_workers, jitter, progress, split, *,
         on_device_decode: bool = False, fit: MemoryFit | None = None, decoder: str = "pil",
         batches=None) -> np.ndarray:
    """The model on every record's views: (N, V, D). `batches`: (n, V, 3, S, S) uint8 view batches
    in the records' order from elsewhere (a prepared-images store) instead of a DataLoader of the files;
    `split` is what progress reports say."""
    if not records:
        raise EngineError(f"no images to extract ({split or 'split'} is empty)")
    config = model.data_config
    on_cuda = device == "cuda"
    is_torch = isinstance(model, torch.nn.Module)
    if is_torch:
        model.eval().to(device)
        model.to(memory_format=torch.channels_last)
    loader = batches if batches is not None else torch.utils.data.DataLoader(
        EncodedImages(records, config, jitter) if on_device_decode else ImageViews(records, config, jitter, decoder),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=pack_encoded if on_device_decode else None,
        pin_memory=on_cuda and not on_device_decode,   # nvjpeg copies the bytes itself
        worker_init_fn=_worker_init if num_workers > 0 else None,
        prefetch_factor=4 if num_workers > 0 else None,
    )
    mean = torch.tensor(config.mean, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(config.std, device=device).view(1, 3, 1, 1) * 255
    chunks: list[np.ndarray] = []
    in_flight: list[tuple[torch.Tensor, torch.cuda.Event]] = []
    done, total, start = 0, len(records), time.perf_counter()
    with torch.inference_mode():
        for batch in loader:
            if on_device_decode:
                batch = decode_on_device(batch, records[done:done + batch.size], config, jitter, device)
            else:
                batch = batch.to(device, non_blocking=on_cuda).float()
            n, views = batch.shape[:2]
            images = ((batch.flatten(0, 1) - mean) / std).contiguous(memory_format=torch.channels_last)
            out = forward(model, images, on_cuda=on_cuda, fit=fit).float().reshape(n, views, -1)
            if on_cuda:
                # copy back without waiting, so the next batch is fetched and decoded while this one runs
                ready = torch.cuda.Event()
                in_flight.append((out.to("cpu", non_blocking=True), ready))
                ready.record()
                while len(in_flight) > 1:
                    host, ready = in_flight.pop(0)
                    ready.synchronize()
                    chunks.append(host.numpy())
            else:
                chunks.append(out.cpu().numpy())
            done += n
            if progress:
                rate = done / max(time.perf_counter() - start, 1e-9)
                progress(Progress("extracting", done, total, rate, split))
        for host, ready in in_flight:
            ready.synchronize()
            chunks.append(host.numpy())
    features = np.concatenate(chunks)
    if not np.isfinite(features).all():
        raise EngineError("the model produced NaN or infinite features")
    return features
