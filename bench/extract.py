"""Extraction throughput: end to end (JPEG decode + resize + forward, DataLoader pipeline) against
model-only forward on pre-decoded tensors, and against a naive one-image-at-a-time loop.

    python bench/extract.py [--device cpu|cuda] [--images 200] [--model efficientnet_lite0]
                            [--batch-size 32] [--workers 2] [--threads N] [--decode auto|pil|gpu]

Images: scikit-image's photos resized to typical photo sizes (about 500 x 375) and written as JPEG
files, so decoding is real work. Goal: end-to-end >= 0.8 x model-only.
End-to-end uses `--decode` (default: gpu, i.e. nvjpeg, on CUDA; auto elsewhere); when that is not
the PIL pipeline, the PIL-worker pipeline is timed too, as a third comparison, and so is the device
decoding alone (bytes already in memory: decode, resize and crop, no model), to show which stage
limits it. The naive loop runs on the first `--naive-images`.
Not a test: prints images/s and the ratios.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch
from PIL import Image

from workers.datasets.base import ImageRecord
from workers.extract import (
    decode_jpegs,
    decode_size,
    extract_features,
    forward,
    load_image,
    nvjpeg_available,
    preprocess,
    preprocess_decoded,
    resolve_decode,
    resolve_device,
)
from workers.models import create_model

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "moon", "hubble_deep_field",
          "immunohistochemistry", "retina", "clock", "cell")
SIZES = ((500, 375), (375, 500), (640, 480), (480, 360), (512, 512))


def write_jpegs(folder: Path, count: int, scale: float = 1.0) -> list[ImageRecord]:
    """`count` JPEG files (written by a thread pool: PIL releases the GIL while resizing and encoding)."""
    from concurrent.futures import ThreadPoolExecutor

    import skimage.data

    photos = []
    for name in PHOTOS:
        image = np.asarray(getattr(skimage.data, name)())
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=-1)
        photos.append(Image.fromarray(image[..., :3].astype(np.uint8)))

    def write(i: int) -> ImageRecord:
        path = folder / f"{i:05d}.jpg"
        width, height = SIZES[i % len(SIZES)]
        size = (round(width * scale), round(height * scale))
        photos[i % len(photos)].resize(size, Image.BICUBIC).save(path, quality=90)
        return ImageRecord(id=path.stem, path=path)

    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        return list(pool.map(write, range(count)))


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def device_decode_only(records: list[ImageRecord], config, device: str, batch_size: int) -> float:
    """Seconds to decode, resize and crop the files' bytes on `device` in batches, bytes read beforehand."""
    blobs = [torch.frombuffer(bytearray(r.path.read_bytes()), dtype=torch.uint8) for r in records]

    def run():
        for i in range(0, len(blobs), batch_size):
            preprocess_decoded(decode_jpegs(blobs[i:i + batch_size], device), config)
        if device == "cuda":
            torch.cuda.synchronize()

    return timed(run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, help="torch.set_num_threads for the forward pass")
    parser.add_argument("--photo-scale", type=float, default=1.0,
                        help="scale the JPEGs' sizes (5 gives 2500 x 1875, about a Holidays photo)")
    parser.add_argument("--decode", choices=("auto", "pil", "gpu"),
                        help="the end-to-end decode pipeline (default: gpu on CUDA, auto elsewhere)")
    parser.add_argument("--naive-images", type=int, default=200, help="images for the naive loop")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.decode is None:
        args.decode = "gpu" if device == "cuda" and nvjpeg_available() else "auto"
    pipeline = resolve_decode(args.decode, device)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = create_model(args.model)
    config = model.data_config

    with tempfile.TemporaryDirectory() as folder:
        records = write_jpegs(Path(folder), args.images, args.photo_scale)
        n = len(records)

        def end_to_end(decode: str, subset=records, workers=args.workers) -> float:
            return timed(lambda: extract_features(model, subset, device=device, batch_size=args.batch_size,
                                                  num_workers=workers, decode=decode))

        # warm-up (allocator, cudnn autotune, nvjpeg, first-call overheads)
        for decode in {args.decode, "pil"}:
            end_to_end(decode, records[: args.batch_size], workers=0)
        seconds = {"end-to-end": end_to_end(args.decode)}
        if pipeline != "pil":
            seconds["end-to-end (pil)"] = end_to_end("pil")
            seconds["device decode only"] = device_decode_only(records, config, device, args.batch_size)

        # model only: the same images, decoded and normalised beforehand, same batches, same device path
        tensors = torch.cat([preprocess(load_image(r, decode_size(config, False)), config) for r in records])
        mean = torch.tensor(config.mean, device=device).view(1, 3, 1, 1) * 255
        std = torch.tensor(config.std, device=device).view(1, 3, 1, 1) * 255
        batches = [tensors[i:i + args.batch_size] for i in range(0, n, args.batch_size)]
        if device == "cuda":
            batches = [b.to(device) for b in batches]
        net = model.to(device).to(memory_format=torch.channels_last)

        def model_only():
            with torch.inference_mode():
                for batch in batches:
                    x = ((batch.to(device).float() - mean) / std).contiguous(memory_format=torch.channels_last)
                    forward(net, x, on_cuda=device == "cuda").float().cpu()

        seconds["model-only"] = timed(model_only)

        # naive: one image at a time, decode + preprocess + forward in the main process, no channels_last,
        # no overlap of decoding with the forward pass
        naive_records = records[: args.naive_images]

        def naive():
            plain = model.to(memory_format=torch.contiguous_format)
            with torch.inference_mode():
                for record in naive_records:
                    image = load_image(record, decode_size(config, False))
                    x = (preprocess(image, config).to(device).float() - mean) / std
                    plain(x).cpu()

        naive_seconds = timed(naive)

    rates = {name: n / s for name, s in seconds.items()}
    rates["naive"] = len(naive_records) / naive_seconds
    print(f"{args.model} on {device} ({torch.get_num_threads()} torch threads, {args.workers} loader workers, "
          f"batch {args.batch_size}, {n} JPEGs at {args.photo_scale:g}x the base sizes, decode {pipeline})")
    for name, rate in rates.items():
        print(f"  {name:<17} {rate:8.1f} images/s")
    print(f"  end-to-end / model-only = {rates['end-to-end'] / rates['model-only']:.2f}  (goal >= 0.8)")
    print(f"  end-to-end / naive      = {rates['end-to-end'] / rates['naive']:.2f}")
    if "end-to-end (pil)" in rates:
        print(f"  end-to-end (pil) / model-only = {rates['end-to-end (pil)'] / rates['model-only']:.2f}")
        print(f"  end-to-end / end-to-end (pil) = {rates['end-to-end'] / rates['end-to-end (pil)']:.2f}")


if __name__ == "__main__":
    main()
