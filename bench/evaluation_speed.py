"""Evaluation at the speed of the accelerator, in one run: every figure the goals of issue 11 name.

    python bench/evaluation_speed.py [--device cpu|cuda] [--images 160] [--batch-size 32] [--loader-workers 2]
                                     [--sizes default|sun397]
                                     [--workers 1 2 3] [--skip extraction,protocols,shards]

1. extraction (bench/extract.py): end to end from the JPEG files against the model-only forward pass,
   the first evaluation with the prepared-images store against a later one (goals: later / model-only
   >= 0.95 on a CPU, >= 0.8 on a GPU);
2. protocols (bench/protocols.py): each protocol's seconds on the reference (scikit-learn) and the
   accelerated path (batched torch on --device) at three problem sizes, so the growth with images and
   classes shows (--sizes sun397: the SUN397-sized problem, goal under a minute on a GPU);
3. shards (bench/shards.py): an ImageNet-1k replica's extraction sharded over 1, 2 and 3 Celery workers.

Ends with the goals and whether this run met them. Not a test; on a shared machine compare the ratios
of one run rather than absolute rates.
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
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _extraction(device: str, images: int, batch_size: int, workers: int) -> dict[str, float]:
    import torch

    from extract import extraction_rows, print_rows, write_jpegs

    with tempfile.TemporaryDirectory() as folder:
        records = write_jpegs(Path(folder), images)
        rows = extraction_rows(device, records, store_root=Path(folder) / "prepared", batch_size=batch_size,
                               workers=workers)
    print_rows(f"1. extraction: efficientnet_lite0 on {device} ({torch.get_num_threads()} torch threads, "
               f"{images} JPEGs of about 500 x 375, batch {batch_size}, {workers} loader workers)", rows)
    return {row["row"].strip(): row["value"] for row in rows}


def _protocols(device: str, sizes: str) -> list[dict]:
    from protocols import DEFAULT_SIZES, HEADER, SUN397, protocol_rows

    chosen = [(*SUN397, SUN397[0])] if sizes == "sun397" else DEFAULT_SIZES
    print(f"\n2. protocols: scikit-learn (reference, CPU) against batched torch on {device}")
    print(HEADER, flush=True)
    return protocol_rows(chosen, device, reference=sizes != "sun397")


def _shards(workers: list[int]) -> list[dict]:
    from shards import print_rows, shard_rows

    print(f"\n3. shards: imagenet1k replica (10 classes x 50 images), shards of 50, {os.cpu_count()} cores, "
          "1 torch thread per worker", flush=True)
    rows = shard_rows(tuple(workers))
    print_rows(rows)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--images", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--loader-workers", type=int, default=2, help="DataLoader processes decoding the files")
    parser.add_argument("--sizes", default="default", choices=("default", "sun397"))
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--skip", default="", help="comma-separated sections to leave out")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    clock = time.perf_counter()
    goals = []
    if "extraction" not in skip:
        figures = _extraction(args.device, args.images, args.batch_size, args.loader_workers)
        later = figures["later evaluation from the store / model-only"]
        target = 0.95 if args.device == "cpu" else 0.8
        goals.append((f"later evaluation from the store / model-only >= {target} ({args.device})", f"{later:.2f}",
                      later >= target))
        goals.append(("later / first evaluation", f"{figures['later / first evaluation (speed)']:.2f}", None))
    if "protocols" not in skip:
        rows = _protocols(args.device, args.sizes)
        agree = [r["score_diff_points"] for r in rows if r["score_diff_points"] is not None]
        if agree:
            goals.append(("accelerated protocols within 0.5 points of scikit-learn", f"max {max(agree):.2f}",
                          max(agree) <= 0.5))
        if args.sizes == "sun397":
            svm = next(r for r in rows if r["protocol"] == "svm")
            goals.append(("SUN397-sized SVM protocol (one partition) under 60 s", f"{svm['accelerated_s']:.1f} s",
                          svm["accelerated_s"] < 60))
    if "shards" not in skip:
        rows = _shards(args.workers)
        one_result = all(row["workers_used"] == row["workers"] for row in rows)
        goals.append((f"sharded over {args.workers[-1]} workers to one result, every worker used",
                      f"x{rows[-1]['speedup']:.2f} over 1 worker", one_result))
    print(f"\ngoals ({time.perf_counter() - clock:.0f} s in all)")
    for goal, figure, met in goals:
        verdict = "" if met is None else ("met" if met else "NOT met")
        print(f"  {goal:<72} {figure:>22}  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
