"""Extraction throughput: end to end (JPEG decode + resize + forward, DataLoader pipeline) against
model-only forward on pre-decoded tensors, with the prepared-images store (workers/prepared.py), and
against a naive one-image-at-a-time loop.

    python bench/extract.py [--device cpu|cuda] [--images 160] [--model efficientnet_lite0]
                            [--batch-size 32] [--workers 2] [--threads N] [--decode auto|pil|gpu]
                            [--photo-scale 1] [--decoder-images 60] [--naive-images 100] [--repeats 4]

Images: scikit-image's photos resized to typical photo sizes (about 500 x 375; `--photo-scale 5`:
about 2500 x 1875, a Holidays photo) and written as JPEG files, so decoding is real work.
Rows (`extraction_rows`, importable for a combined benchmark):
  decode+resize per image, PIL and simplejpeg (one process, no model: the decoders alone), at 1x
    and 5x the base sizes;
  model-only: the forward pass on pre-decoded tensors, same batches, same device path;
  end to end from the files, with the PIL decoder and with simplejpeg (`--decode`: when that is
    not the PIL pipeline, it is timed too, and the device decoding alone);
  first evaluation with the store (decode + resize in the workers, written to the store while the
    model runs on it) and a later one from the store (memory-mapped, cropped by a thread), and the
    store's reading and cropping alone (what a later evaluation adds to the model's time);
  ratios: end-to-end / model-only (goal >= 0.8 from files; >= 0.95 from the store), later / first.
Every row is measured `--repeats` times, round robin, the order reversed every other time: a rate
is the best of its times, a ratio the geometric mean of the ratios within each round (an even
number of rounds: the order's own bias cancels). The naive loop runs
on the first `--naive-images`. Figures from a shared machine are noisy: compare the ratios of one
run. Not a test: prints a table.
"""
from __future__ import annotations

import argparse
import os
import shutil
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
    resolve_jpeg_decoder,
    simplejpeg_available,
)
from workers.models import create_model
from workers.prepared import PreparedStore

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


def cpu_decoders() -> list[str]:
    """The PIL pipeline's JPEG decoders installed here: PIL, and simplejpeg when it is."""
    return ["pil"] + (["simplejpeg"] if simplejpeg_available() else [])


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


def decoder_rows(folder: Path, count: int, config, scales=(1.0, 5.0), repeats: int = 4) -> list[dict]:
    """CPU ms per image to decode (at the draft scale) and resize to `config.resize_size`, PIL against
    simplejpeg, for JPEGs at each of `scales` x the base sizes. Interleaved image by image (the order
    alternating between repeats) and timed in this thread's CPU time, so the load of other processes
    on a shared machine moves both alike."""
    from workers.extract import _INTERPOLATION, _resize

    decoders = cpu_decoders()
    interpolation = _INTERPOLATION[config.interpolation]
    rows = []
    for scale in scales:
        sub = folder / f"decoders-{scale:g}x"
        sub.mkdir(parents=True, exist_ok=True)
        records = write_jpegs(sub, count, scale)
        for record in records:
            record.path.read_bytes()   # in the page cache for both
        spent = dict.fromkeys(decoders, 0.0)
        for repeat in range(repeats):
            for record in records:
                for decoder in decoders if repeat % 2 == 0 else decoders[::-1]:
                    start = time.thread_time()
                    _resize(load_image(record, config.resize_size, decoder), config.resize_size, interpolation,
                            config.resize_mode)
                    spent[decoder] += time.thread_time() - start
        width, height = SIZES[0]
        for decoder in decoders:
            rows.append({"row": f"decode+resize {decoder} ({round(width * scale)}x{round(height * scale)} and alike)",
                         "value": spent[decoder] / (repeats * len(records)) * 1000, "unit": "ms CPU/image"})
        if "simplejpeg" in spent:
            rows.append({"row": f"  simplejpeg / pil time ({scale:g}x)", "value": spent["simplejpeg"] / spent["pil"],
                         "unit": "x"})
    return rows


def extraction_rows(device: str, records: list[ImageRecord], *, model_name: str = "efficientnet_lite0", model=None,
                    batch_size: int = 32, workers: int = 2, decode: str = "pil", store_root: Path | None = None,
                    repeats: int = 4) -> list[dict]:
    """Rows {"row", "value", "unit"}: model-only, end to end from `records`' files (PIL and simplejpeg
    decoders; `decode` too when it is not the PIL pipeline), first and later evaluation with a
    prepared-images store (in `store_root`, or a temporary folder), and their ratios. Each is timed
    `repeats` times, round robin: a rate is the best of them, a ratio the geometric mean of the repeats' own."""
    device = resolve_device(device)
    model = model or create_model(model_name)
    config = model.data_config
    pipeline = resolve_decode(decode, device)
    n = len(records)

    def end_to_end(subset=records, **options) -> float:
        options = {"decode": "pil", "num_workers": workers, **options}
        return timed(lambda: extract_features(model, subset, device=device, batch_size=batch_size, **options))

    # warm-up (allocator, cudnn autotune, nvjpeg, first-call overheads)
    for options in ({"decode": decode}, {"decode": "pil"}):
        end_to_end(records[:batch_size], num_workers=0, **options)
    decoders = cpu_decoders()
    store_decoder = resolve_jpeg_decoder("auto")   # what an evaluation with the store uses

    # model only: the same images, decoded and normalised beforehand, same batches, same device path
    tensors = torch.cat([preprocess(load_image(r, decode_size(config, False)), config) for r in records])
    mean = torch.tensor(config.mean, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(config.std, device=device).view(1, 3, 1, 1) * 255
    batches = [tensors[i:i + batch_size] for i in range(0, n, batch_size)]
    if device == "cuda":
        batches = [b.to(device) for b in batches]
    net = model.to(device).to(memory_format=torch.channels_last)

    def model_only():
        with torch.inference_mode():
            for batch in batches:
                x = ((batch.to(device).float() - mean) / std).contiguous(memory_format=torch.channels_last)
                forward(net, x, on_cuda=device == "cuda").float().cpu()
        if device == "cuda":
            torch.cuda.synchronize()

    # each measurement `repeats` times, round robin (the load of a shared machine drifts)
    seconds: dict[str, list[float]] = {}

    def keep(name: str, value: float) -> None:
        seconds.setdefault(name, []).append(value)

    first_name = f"first evaluation with the store (build + extract, {store_decoder})"
    scratch = Path(tempfile.mkdtemp())

    def with_store(repeat: int) -> None:   # the pair in its order: the first builds, the later reads
        store = PreparedStore((store_root or scratch) / f"prepared-{repeat}")
        keep(first_name, end_to_end(prepared=store, jpeg_decoder=store_decoder))
        keep("later evaluation from the store", end_to_end(prepared=store, jpeg_decoder=store_decoder))
        source = store.source(records, config, False, jpeg_decoder=store_decoder, batch_size=batch_size)
        keep("store read + crop alone (no model)", timed(lambda: [batch.float() for batch in source]))
        assert store.builds == 1 and store.reads == 2, (store.builds, store.reads)
        shutil.rmtree(store.root, ignore_errors=True)

    steps = [lambda _r, d=decoder: keep(f"end to end from files ({d} decoder)", end_to_end(jpeg_decoder=d))
             for decoder in decoders]
    if pipeline != "pil":
        steps.append(lambda _r: keep(f"end to end from files ({pipeline})", end_to_end(decode=decode)))
        steps.append(lambda _r: keep(f"{pipeline} decode only", device_decode_only(records, config, device,
                                                                                    batch_size)))
    steps += [lambda _r: keep("model-only forward", timed(model_only)), with_store]
    try:
        for repeat in range(repeats):   # the order reversed every other time: no row always runs first
            for step in steps if repeat % 2 == 0 else steps[::-1]:
                step(repeat)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    # rates: the best of the repeats; ratios: the geometric mean of each repeat's own ratio (side by side)
    rows = [{"row": name, "value": n / min(times), "unit": "images/s"} for name, times in seconds.items()]

    def ratio(name: str, base: str) -> float:
        # geometric mean over the rounds: they alternate the order, so running first or second (measured
        # here at +-10% on a 2-core machine) cancels out with an even number of rounds
        return float(np.exp(np.mean(np.log([b / t for t, b in zip(seconds[name], seconds[base], strict=True)]))))

    for name in list(seconds):
        if name != "model-only forward" and "decode only" not in name and "alone" not in name:
            rows.append({"row": f"  {name} / model-only", "value": ratio(name, "model-only forward"), "unit": "x"})
    rows.append({"row": "  later / first evaluation (speed)", "value": ratio("later evaluation from the store",
                                                                          first_name), "unit": "x"})
    return rows


def print_rows(title: str, rows: list[dict]) -> None:
    print(title)
    for row in rows:
        value = f"{row['value']:8.2f}" if row["unit"] in ("x", "ms CPU/image") else f"{row['value']:8.1f}"
        print(f"  {row['row']:<66} {value} {row['unit']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--images", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, help="torch.set_num_threads for the forward pass")
    parser.add_argument("--photo-scale", type=float, default=1.0,
                        help="scale the JPEGs' sizes (5 gives 2500 x 1875, about a Holidays photo)")
    parser.add_argument("--decode", choices=("auto", "pil", "gpu"),
                        help="also time this decode pipeline (default: gpu on CUDA, auto elsewhere)")
    parser.add_argument("--decoder-images", type=int, default=60,
                        help="JPEGs per size for the decode+resize rows (0: skip them)")
    parser.add_argument("--naive-images", type=int, default=100, help="images for the naive loop")
    parser.add_argument("--repeats", type=int, default=4,
                        help="times each row is measured (rates: the best; ratios: the geometric mean of each time's)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.decode is None:
        args.decode = "gpu" if device == "cuda" and nvjpeg_available() else "auto"
    if args.threads:
        torch.set_num_threads(args.threads)
    model = create_model(args.model)
    config = model.data_config

    with tempfile.TemporaryDirectory() as folder:
        decoders = decoder_rows(Path(folder), args.decoder_images, config) if args.decoder_images else []
        (Path(folder) / "photos").mkdir()
        records = write_jpegs(Path(folder) / "photos", args.images, args.photo_scale)
        rows = extraction_rows(device, records, model=model, batch_size=args.batch_size, workers=args.workers,
                               decode=args.decode, store_root=Path(folder) / "prepared", repeats=args.repeats)

        # naive: one image at a time, decode + preprocess + forward in the main process, no channels_last,
        # no overlap of decoding with the forward pass
        naive_records = records[: args.naive_images]
        mean = torch.tensor(config.mean, device=device).view(1, 3, 1, 1) * 255
        std = torch.tensor(config.std, device=device).view(1, 3, 1, 1) * 255

        def naive():
            plain = model.to(memory_format=torch.contiguous_format)
            with torch.inference_mode():
                for record in naive_records:
                    image = load_image(record, decode_size(config, False))
                    x = (preprocess(image, config).to(device).float() - mean) / std
                    plain(x).cpu()

        naive_rate = len(naive_records) / timed(naive) if naive_records else float("nan")

    rows.append({"row": "naive (one image at a time, main process)", "value": naive_rate, "unit": "images/s"})
    pil_rate = next(row["value"] for row in rows if row["row"] == "end to end from files (pil decoder)")
    rows.append({"row": "  end to end (pil decoder) / naive", "value": pil_rate / naive_rate, "unit": "x"})
    print_rows(f"{args.model} on {device} ({torch.get_num_threads()} torch threads, {args.workers} loader workers, "
               f"batch {args.batch_size}, {len(records)} JPEGs at {args.photo_scale:g}x the base sizes)",
               decoders + rows)


if __name__ == "__main__":
    main()
