"""Time the classification protocols: the scikit-learn reference against the torch path (workers/accelerated.py).

    .venv/bin/python bench/protocols.py                       # CPU sizes, torch on the CPU
    .venv/bin/python bench/protocols.py --device cuda --sizes sun397

Each protocol (svm: one-vs-rest LinearSVC with C from the 4-C x 3-fold CV; linear_probe: logistic
regression with C from its validation split; knn: weighted k-NN, every k) runs on synthetic
class-structured features (class means plus noise, L2-normalised; test set 1/4 of train) once with
solver="sklearn" (CPU) and once with solver="torch" on --device. Printed: seconds of each, the speed-up
and |score difference| in points. `protocol_rows(sizes, device)` returns the rows for a combined benchmark.
The sun397 size (19,850 train x 4,096-d x 397 classes, test as large: one partition) is for a GPU; its
scikit-learn reference takes hours on a CPU, so it is skipped there unless --reference is given.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_SIZES = [(1000, 256, 10), (2000, 512, 30), (3000, 768, 60)]
SUN397 = (19850, 4096, 397)
PROTOCOLS = ("svm", "linear_probe", "knn")


def synthetic(n: int, dim: int, classes: int, seed: int = 0, test: int | None = None, separation: float = 0.05):
    """(train_x, train_y, test_x, test_y, class names): class means N(0, I) * separation plus N(0, 0.1 I)
    noise, every class present; post-processed as the engine does (L2)."""
    from workers.protocols import postprocess

    rng = np.random.default_rng(seed)
    means = rng.normal(size=(classes, dim)).astype(np.float32)
    test = max(classes, n // 4) if test is None else test

    def draw(count):
        y = np.concatenate([np.arange(classes), rng.integers(0, classes, count - classes)])
        x = means[y] * separation + rng.normal(size=(count, dim)).astype(np.float32) * 0.1 ** 0.5
        return postprocess(x), y

    train_x, train_y = draw(n)
    test_x, test_y = draw(test)
    return train_x, train_y, test_x, test_y, [f"c{k}" for k in range(classes)]


def _protocol(name: str, solver: str, device: str):
    from workers.probes import KNNClassification, LinearProbe
    from workers.protocols import LinearSVMClassification

    if name == "svm":
        return LinearSVMClassification(multiclass="ovr", solver=solver, device=device)
    if name == "linear_probe":
        return LinearProbe(solver=solver, device=device)
    if name == "knn":
        return KNNClassification(solver=solver, device=device)
    raise SystemExit(f"unknown protocol {name}")


def _timed(protocol, data) -> tuple[float, float]:
    start = time.perf_counter()
    outcome = protocol.run(*data)
    return time.perf_counter() - start, float(outcome.score)


def _warm_up(device: str) -> None:
    """One tiny solve of each torch path, so library loading and kernel start-up are not timed."""
    data = synthetic(60, 8, 3, seed=1)
    for name in PROTOCOLS:
        _protocol(name, "torch", device).run(*data)


def protocol_rows(sizes, device: str = "cpu", protocols=PROTOCOLS, reference: bool = True) -> list[dict]:
    """One row per (protocol, size): reference_s (scikit-learn / numpy on the CPU), accelerated_s
    (torch on `device`), speedup, and score_diff_points = 100 |score difference| (None without reference)."""
    _warm_up(device)
    rows = []
    for size in sizes:
        n, dim, classes = size[:3]
        test = size[3] if len(size) > 3 else None
        data = synthetic(n, dim, classes, test=test)
        for name in protocols:
            accelerated_s, accelerated = _timed(_protocol(name, "torch", device), data)
            row = {"protocol": name, "size": f"{n:,}x{dim:,}x{classes:,}", "device": device,
                   "reference_s": None, "accelerated_s": accelerated_s, "speedup": None,
                   "score_diff_points": None, "score": accelerated}
            if reference:
                reference_s, expected = _timed(_protocol(name, "sklearn", "cpu"), data)
                row.update(reference_s=reference_s, speedup=reference_s / accelerated_s,
                           score_diff_points=100 * abs(accelerated - expected))
            rows.append(row)
            print(_line(row), flush=True)
    return rows


HEADER = f"{'protocol':<13} {'size (train x dim x classes)':<29} {'reference s':>11} {'accelerated s':>13} " \
         f"{'speed-up':>8} {'|diff| pts':>10}"


def _line(row: dict) -> str:
    fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    return (f"{row['protocol']:<13} {row['size']:<29} {fmt(row['reference_s'], '11.2f')} "
            f"{fmt(row['accelerated_s'], '13.2f')} {fmt(row['speedup'], '8.1f')} "
            f"{fmt(row['score_diff_points'], '10.2f')}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="where the torch path runs: cpu | cuda")
    parser.add_argument("--sizes", default="default",
                        help="default | sun397 | NxDxC[,NxDxC...] (train images x dim x classes)")
    parser.add_argument("--protocols", default=",".join(PROTOCOLS))
    parser.add_argument("--reference", action="store_true", help="time scikit-learn even at the sun397 size")
    parser.add_argument("--no-reference", action="store_true", help="time the torch path alone")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.sizes == "default":
        sizes, reference = DEFAULT_SIZES, True
    elif args.sizes == "sun397":
        sizes, reference = [(*SUN397, SUN397[0])], args.reference
    else:
        sizes, reference = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")], True
    reference = reference and not args.no_reference
    print(HEADER, flush=True)
    protocol_rows(sizes, args.device, tuple(args.protocols.split(",")), reference)
    return 0


if __name__ == "__main__":
    sys.exit(main())
