"""Confidence intervals of measured scores, and whether two results can be told apart.

Every score Shelfmark measures gets a 95% bootstrap interval: the test images (queries, for
retrieval) are resampled with replacement 1,000 times with a fixed seed, the benchmark's metric is
recomputed on each resample, and the 2.5th and 97.5th percentiles are the interval. Partitioned
benchmarks (SUN397's 10) resample each partition's test images and average, as their score does.

Two results on the same test units are compared by a paired bootstrap: the same resamples score
both, and the 95% interval of their difference tells whether it could be nothing. The boards group
adjacent rows that cannot be told apart into one rank group ("1–3").

`workers.bundle`'s reproduce.py carries a copy of `bootstrap_interval`, so a bundle recomputes it.
"""
from __future__ import annotations

import numpy as np

from workers.contract import EngineError
from workers.protocols import UnitOutputs

RESAMPLES = 1000
LEVEL = 0.95
SEED = 0


def _mean_class_accuracy(labels: np.ndarray, predictions: np.ndarray, n_classes: int) -> float:
    totals = np.bincount(labels, minlength=n_classes)
    correct = np.bincount(labels, weights=(labels == predictions).astype(np.float64), minlength=n_classes)
    present = totals > 0
    return float(np.mean(correct[present] / totals[present]))


def _statistic(units: UnitOutputs, index: np.ndarray) -> float:
    """The metric of the units at `index` (a resample of unit positions)."""
    if units.kind == "predictions":
        labels = np.asarray(units.labels, dtype=np.int64)
        n_classes = int(max(labels.max(), np.asarray(units.values).max())) + 1
        return _mean_class_accuracy(labels[index], np.asarray(units.values, dtype=np.int64)[index], n_classes)
    if units.kind == "draws":
        labels = np.asarray(units.labels, dtype=np.int64)
        draws = np.asarray(units.values, dtype=np.int64)
        n_classes = int(max(labels.max(), draws.max())) + 1
        return float(np.mean([_mean_class_accuracy(labels[index], draw[index], n_classes) for draw in draws]))
    if units.kind == "scores":   # VOC07 mAP; a class with no positive in the resample is left out of the mean
        from workers.metrics import voc07_ap

        scores, labels = np.asarray(units.values)[index], np.asarray(units.labels)[index]
        aps = [voc07_ap(scores[:, k], labels[:, k]) for k in range(labels.shape[1]) if (labels[:, k] > 0).any()]
        return float(np.mean(aps)) if aps else float("nan")
    if units.kind == "per_query":
        values = np.asarray(units.values, dtype=np.float64)[index]
        return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    raise EngineError(f"unknown kind of unit outputs {units.kind!r}")


def unit_count(units: UnitOutputs) -> int:
    return np.asarray(units.values).shape[1 if units.kind == "draws" else 0]


def _partitions(units: UnitOutputs) -> list[np.ndarray]:
    n = unit_count(units)
    if units.partition is None:
        return [np.arange(n)]
    partition = np.asarray(units.partition)
    return [np.flatnonzero(partition == p) for p in np.unique(partition)]


def resampled_scores(units: UnitOutputs, *, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """The metric on `resamples` bootstrap resamples of the test units (per partition, averaged)."""
    rng = np.random.default_rng(seed)
    parts = _partitions(units)
    out = np.empty(resamples)
    for r in range(resamples):
        scores = [_statistic(units, part[rng.integers(0, len(part), len(part))]) for part in parts]
        out[r] = float(np.mean(scores))
    return out


def bootstrap_interval(units: UnitOutputs, *, resamples: int = RESAMPLES, seed: int = SEED,
                       level: float = LEVEL) -> dict:
    """The percentile bootstrap interval of the score: {"low", "high", "level", "resamples", "seed", "unit"}."""
    scores = resampled_scores(units, resamples=resamples, seed=seed)
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(scores, [tail, 100 - tail])
    return {"low": float(low), "high": float(high), "level": level, "resamples": resamples, "seed": seed,
            "unit": "queries" if units.kind == "per_query" else "test images", "units": unit_count(units)}


def comparable(a: UnitOutputs, b: UnitOutputs) -> bool:
    """Whether two results were scored on the same test units, in the same order (same ids, labels)."""
    if a.kind != b.kind and {a.kind, b.kind} != {"predictions", "draws"}:
        return False
    if unit_count(a) != unit_count(b):
        return False
    same = [np.array_equal(np.asarray(x), np.asarray(y)) for x, y in ((a.ids, b.ids), (a.labels, b.labels))
            if x is not None and y is not None]
    return all(same)


def paired_difference(a: UnitOutputs, b: UnitOutputs, *, resamples: int = RESAMPLES, seed: int = SEED,
                      level: float = LEVEL) -> tuple[float, float]:
    """The bootstrap interval of score(a) - score(b), both scored on the same resamples."""
    if not comparable(a, b):
        raise EngineError("the two results were not scored on the same test units")
    difference = resampled_scores(a, resamples=resamples, seed=seed) - resampled_scores(b, resamples=resamples,
                                                                                          seed=seed)
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(difference, [tail, 100 - tail])
    return float(low), float(high)


def separable(a: UnitOutputs, b: UnitOutputs, **options) -> bool:
    """Whether the paired interval of the difference excludes 0 (the two can be told apart)."""
    low, high = paired_difference(a, b, **options)
    return low > 0 or high < 0


def save_units(path, units: UnitOutputs) -> None:
    """Write unit outputs to an .npz (numbers and strings only: read back with allow_pickle=False)."""
    arrays = {"kind": np.asarray(units.kind), "values": np.asarray(units.values)}
    for name in ("labels", "ids", "partition"):
        value = getattr(units, name)
        if value is not None:
            arrays[name] = np.asarray(value)
    np.savez_compressed(path, **arrays)


def load_units(path) -> UnitOutputs:
    with np.load(path, allow_pickle=False) as stored:
        return UnitOutputs(kind=str(stored["kind"]), values=stored["values"],
                           **{name: stored[name] for name in ("labels", "ids", "partition") if name in stored.files})
