"""The benchmarks' official metrics, reproduced exactly (PROTOCOLS.md describes each one).

Each function follows the official evaluation code of its benchmark, down to the details that
change the number: the VOC2007 devkit's MATLAB thresholds `0:0.1:1`, the trapezoids of Oxford's
`compute_ap.cpp` (computed in single precision, as that program does) and of INRIA's
`holidays_map.py`. Everything returns plain Python floats: fractions in [0, 1], N-S in [0, 4].
"""
from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "VOC07_RECALL_THRESHOLDS",
    "holidays_map",
    "matlab_colon",
    "mean_class_accuracy",
    "oxford_ap",
    "oxford_map",
    "revisited_map",
    "ukbench_counts",
    "ukbench_ns",
    "voc07_ap",
    "voc07_map",
    "voc_ap",
]


def matlab_colon(start: float, step: float, stop: float) -> list[float]:
    """The doubles MATLAB's `start:step:stop` yields (its `colonop` algorithm).

    MATLAB fills the first half as start + k*step and the second half as stop - k*step, working
    from both ends, with the exact midpoint (start + stop) / 2 when the count is even. This is
    why `0:0.1:1` holds 0.30000000000000004 but the plain doubles 0.6 and 0.7, unlike
    `numpy.arange(0, 1.1, 0.1)`.
    """
    n = int(np.floor((stop - start) / step + 1e-10))
    end = start + n * step
    if abs(end - stop) < 1e-10 * max(abs(start), abs(stop), 1.0):
        end = stop
    values = [0.0] * (n + 1)
    for k in range(n // 2 + 1):
        values[k] = start + k * step
        values[n - k] = end - k * step
    if n % 2 == 0:
        values[n // 2] = (start + end) / 2
    return values


VOC07_RECALL_THRESHOLDS: tuple[float, ...] = tuple(matlab_colon(0.0, 0.1, 1.0))


def _ranking_by_score(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Labels reordered by descending score; ties keep the input order (MATLAB's stable sort)."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"scores ({scores.size}) and labels ({labels.size}) differ in length")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    if not np.isin(labels, (-1, 0, 1)).all():
        raise ValueError("labels must be 1 (positive), -1 (negative) or 0 (difficult)")
    order = np.argsort(-scores, kind="stable")
    return labels[order].astype(np.int64), order


def _precision_recall(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Cumulated recall and precision down the ranking, as `VOCevalcls` computes them.

    Difficult images (label 0) stay in the ranking but count as neither TP nor FP, so precision
    is 0/0 (NaN) while only difficult images have been seen; MATLAB's `max` skips those NaNs.
    """
    ranked, _ = _ranking_by_score(scores, labels)
    n_positives = int((ranked > 0).sum())
    if n_positives == 0:
        raise ValueError("no positive example: average precision is undefined")
    tp = np.cumsum(ranked > 0).astype(np.float64)
    fp = np.cumsum(ranked < 0).astype(np.float64)
    recall = tp / n_positives
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp / (fp + tp)
    return recall, precision


def voc07_ap(scores: Any, labels: Any) -> float:
    """PASCAL VOC2007 11-point interpolated AP, as the devkit's `VOCevalcls` computes it.

    labels: 1 present, -1 absent, 0 difficult (ranked, but neither TP nor FP).
    AP = sum over t in MATLAB's 0:0.1:1 of max(precision where recall >= t) / 11, 0 when no
    recall reaches t; accumulated term by term in the devkit's order.
    """
    recall, precision = _precision_recall(scores, labels)
    ap = 0.0
    for t in VOC07_RECALL_THRESHOLDS:
        reached = precision[(recall >= t) & ~np.isnan(precision)]
        p = float(reached.max()) if reached.size else 0.0
        ap = ap + p / 11
    return float(ap)


def voc07_map(scores_matrix: Any, labels_matrix: Any) -> tuple[float, list[float]]:
    """VOC2007 mAP: `voc07_ap` per class (column), then the mean over classes.

    scores_matrix, labels_matrix: (n_images, n_classes). Returns (mean, per-class APs).
    """
    scores_matrix = np.asarray(scores_matrix, dtype=np.float64)
    labels_matrix = np.asarray(labels_matrix)
    if scores_matrix.ndim != 2 or scores_matrix.shape != labels_matrix.shape:
        raise ValueError(
            f"scores {scores_matrix.shape} and labels {labels_matrix.shape} must be equal (n, n_classes)"
        )
    per_class = [voc07_ap(scores_matrix[:, c], labels_matrix[:, c]) for c in range(scores_matrix.shape[1])]
    return float(np.mean(per_class)), per_class


def voc_ap(scores: Any, labels: Any) -> float:
    """PASCAL VOC2010+ AP (devkit `VOCap`): area under the monotone precision envelope.

    Precision at each rank is replaced by the highest precision at any equal or higher recall,
    then AP = sum of recall steps times that envelope. Difficult labels (0) are handled as in
    `voc07_ap`.
    """
    recall, precision = _precision_recall(scores, labels)
    precision = np.nan_to_num(precision, nan=0.0)
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[steps] - mrec[steps - 1]) * mpre[steps]))


def oxford_ap(ranked: Sequence[str], good: Iterable[str], ok: Iterable[str], junk: Iterable[str]) -> float:
    """Oxford 5k / Paris 6k AP, exactly as the official `compute_ap.cpp`.

    Positives are good and ok images; junk images are skipped as if absent; the query is not
    removed. AP is a sum of trapezoids (previous precision starting at 1). The official program
    keeps recall, precision and the sum in C `float`s; this does the same, so results match it
    to the last printed digit.
    """
    positives = set(good) | set(ok)
    junk = set(junk)
    if not positives:
        raise ValueError("no positive image: average precision is undefined")
    is_hit = np.array([name in positives for name in ranked if name not in junk], dtype=bool)
    if not is_hit.any():
        return 0.0
    hits = np.cumsum(is_hit)
    recall = (hits / np.float32(len(positives))).astype(np.float32)
    precision = (hits / (np.arange(len(hits)) + 1.0)).astype(np.float32)
    # Only a hit changes recall; elsewhere the official trapezoid adds exactly 0.
    f32 = np.float32
    ap = f32(0.0)
    for i in np.flatnonzero(is_hit).tolist():
        old_recall = float(recall[i - 1]) if i else 0.0
        old_precision = float(precision[i - 1]) if i else 1.0
        # C: float - float and float + float stay float; `/ 2.0` and the product are double.
        recall_step = float(f32(float(recall[i]) - old_recall))
        precision_sum = float(f32(old_precision + float(precision[i])))
        ap = f32(float(ap) + recall_step * (precision_sum / 2.0))
    return float(ap)


def _ground_truth_lists(entry: Any) -> tuple[Iterable[str], Iterable[str], Iterable[str]]:
    if isinstance(entry, Mapping):
        return entry.get("good", ()), entry.get("ok", ()), entry.get("junk", ())
    return entry.good, entry.ok, entry.junk


def oxford_map(
    rankings: Mapping[Hashable, Sequence[str]], ground_truth: Mapping[Hashable, Any]
) -> tuple[float, dict[Hashable, float]]:
    """Mean of `oxford_ap` over the queries of `ground_truth` (55 for Oxford and Paris).

    ground_truth values are `RetrievalQuery`s or mappings with `good`, `ok`, `junk` lists; every
    query needs a ranking. Returns (mAP, {query: AP}).
    """
    missing = [key for key in ground_truth if key not in rankings]
    if missing:
        raise ValueError(f"no ranking for {len(missing)} queries, e.g. {missing[0]!r}")
    if not ground_truth:
        raise ValueError("no query")
    per_query = {
        key: oxford_ap(rankings[key], *_ground_truth_lists(entry)) for key, entry in ground_truth.items()
    }
    return float(np.mean(list(per_query.values()))), per_query


def _holidays_stem(name: str) -> str:
    return name[:-4] if name[-4:] in (".jpg", ".JPG") else name


def holidays_map(rankings: Mapping[str, Sequence[str]], database: Iterable[str] | None = None) -> float:
    """INRIA Holidays mAP, as the official `holidays_map.py` (eval_holidays) computes it.

    rankings: {query name: database names, best first}, names as file stems ("100000"; a ".jpg"
    suffix is tolerated). The query is removed from its own ranking; relevant = the other images
    of its scene group (same first four digits), counted over `database` (default: the names in
    the query's ranking). AP sums trapezoids (precision before and after each hit) of width
    1 / #relevant; mAP is the mean over the queries given.
    """
    if not rankings:
        raise ValueError("no query")
    by_group: dict[str, set[str]] | None = None
    if database is not None:
        by_group = {}
        for name in map(_holidays_stem, database):
            by_group.setdefault(name[:4], set()).add(name)
    total = 0.0
    for query, ranking in rankings.items():
        query = _holidays_stem(query)
        group = query[:4]
        ranked = [name for name in map(_holidays_stem, ranking) if name != query]
        pool = by_group.get(group, set()) if by_group is not None else ranked
        relevant = {name for name in pool if name[:4] == group and name != query}
        if not relevant:
            raise ValueError(f"query {query}: no other image of group {group}")
        recall_step = 1.0 / len(relevant)
        ap = 0.0
        for ntp, rank in enumerate(rank for rank, name in enumerate(ranked) if name in relevant):
            precision_0 = 1.0 if rank == 0 else ntp / float(rank)
            precision_1 = (ntp + 1) / float(rank + 1)
            ap += (precision_1 + precision_0) * recall_step / 2.0
        total += ap
    return float(total / len(rankings))


def ukbench_counts(rankings: Mapping[int, Sequence[int]]) -> dict[int, int]:
    """Per query, how many of its group's 4 images are among its top 4 (0 to 4)."""
    return {query: sum(1 for other in ranking[:4] if int(other) // 4 == int(query) // 4)
            for query, ranking in rankings.items()}


def ukbench_ns(rankings: Mapping[int, Sequence[int]]) -> float:
    """UKBench N-S score: relevant images (same `number // 4`) among the top 4, averaged; 0 to 4.

    rankings: {image number: image numbers, best first}; the query stays in its own ranking
    (it normally ranks first and counts as one of the four).
    """
    if not rankings:
        raise ValueError("no query")
    return float(np.mean(list(ukbench_counts(rankings).values())))


# ---- Revisited Oxford and Paris (Radenović et al., CVPR 2018), revisitop's python/evaluate.py --------

REVISITED_PROTOCOLS = ("easy", "medium", "hard")


def _revisitop_ap(ranks: np.ndarray, nres: int) -> float:
    """revisitop's `compute_ap`: trapezoids over the positives' (junk-adjusted, 0-based) positions."""
    ap = 0.0
    recall_step = 1.0 / nres
    for j, rank in enumerate(ranks):
        precision_0 = 1.0 if rank == 0 else float(j) / rank
        precision_1 = float(j + 1) / (rank + 1)
        ap += (precision_0 + precision_1) * recall_step / 2.0
    return ap


def _revisitop_compute_map(ranks: np.ndarray, gnd: Sequence[Mapping[str, Any]], kappas: Sequence[int]):
    """revisitop's `compute_map(ranks, gnd, kappas)`: (mAP, per-query APs, mP@k, per-query P@k).

    ranks (n_db, n_queries) of 0-based database indices, best first; gnd[i]["ok"] the positives and
    gnd[i]["junk"] the junk of query i. A query with no positive gets NaN and is left out of the means.
    """
    nq = len(gnd)
    aps = np.zeros(nq)
    prs = np.zeros((nq, len(kappas)))
    total, pr, nempty = 0.0, np.zeros(len(kappas)), 0
    for i in range(nq):
        qgnd = np.array(gnd[i]["ok"])
        if qgnd.shape[0] == 0:
            aps[i] = float("nan")
            prs[i, :] = float("nan")
            nempty += 1
            continue
        qgndj = np.array(gnd[i].get("junk", []))
        pos = np.arange(ranks.shape[0])[np.isin(ranks[:, i], qgnd)]
        junk = np.arange(ranks.shape[0])[np.isin(ranks[:, i], qgndj)]
        k = ij = 0
        if len(junk):
            ip = 0
            while ip < len(pos):   # each positive moves up by the junk images ranked before it
                while ij < len(junk) and pos[ip] > junk[ij]:
                    k += 1
                    ij += 1
                pos[ip] = pos[ip] - k
                ip += 1
        ap = _revisitop_ap(pos, len(qgnd))
        total += ap
        aps[i] = ap
        pos = pos + 1   # 1-based
        for j, kappa in enumerate(kappas):
            kq = min(max(pos), kappa)
            prs[i, j] = (pos <= kq).sum() / kq
        pr = pr + prs[i, :]
    if nq == nempty:   # no query has a positive under this protocol (revisitop divides by zero): undefined
        return float("nan"), aps, np.full(len(kappas), float("nan")), prs
    return total / (nq - nempty), aps, pr / (nq - nempty), prs


def revisited_ground_truth(gnd: Sequence[Mapping[str, Any]], protocol: str) -> list[dict[str, np.ndarray]]:
    """The positives ("ok") and junk of each query under Easy, Medium or Hard (example_evaluate.py):
    Easy: ok = easy, junk = junk + hard; Medium: ok = easy + hard, junk = junk;
    Hard: ok = hard, junk = junk + easy."""
    parts = {"easy": (("easy",), ("junk", "hard")), "medium": (("easy", "hard"), ("junk",)),
             "hard": (("hard",), ("junk", "easy"))}
    if protocol not in parts:
        raise ValueError(f"unknown revisited protocol {protocol!r}: use easy, medium or hard")
    ok, junk = parts[protocol]
    return [{"ok": np.concatenate([np.asarray(g[key], dtype=np.int64) for key in ok]),
             "junk": np.concatenate([np.asarray(g[key], dtype=np.int64) for key in junk])} for g in gnd]


def revisited_map(ranks: Any, gnd: Sequence[Mapping[str, Any]], kappas: Sequence[int] = (1, 5, 10)) -> dict:
    """Revisited Oxford / Paris scores, as revisitop's `python/evaluate.py` computes them.

    ranks: (n_database, n_queries) 0-based database indices, best first (one column per query);
    gnd: the ground-truth pickle's per-query dicts with `easy`, `hard` and `junk` index lists.
    Returns {"easy"|"medium"|"hard": {"map": ..., "mp@1": ..., "mp@5": ..., "mp@10": ...,
    "aps": per-query APs (NaN where a query has no positive)}}, as fractions.
    """
    ranks = np.asarray(ranks)
    if ranks.ndim != 2 or ranks.shape[1] != len(gnd):
        raise ValueError(f"ranks must be (n_database, n_queries = {len(gnd)}), got {ranks.shape}")
    out = {}
    for protocol in REVISITED_PROTOCOLS:
        mean_ap, aps, mp, _ = _revisitop_compute_map(ranks, revisited_ground_truth(gnd, protocol), list(kappas))
        out[protocol] = {"map": float(mean_ap), **{f"mp@{k}": float(v) for k, v in zip(kappas, mp)},
                         "aps": [float(a) for a in aps]}
    return out


def mean_class_accuracy(y_true: Any, y_pred: Any) -> float:
    """Mean over classes (those present in y_true) of the fraction of their images predicted right.

    Not the overall accuracy: every class weighs the same whatever its number of test images.
    """
    y_true = np.asarray(y_true).ravel()
    y_pred = np.asarray(y_pred).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true ({y_true.size}) and y_pred ({y_pred.size}) differ in length")
    if y_true.size == 0:
        raise ValueError("no test example")
    per_class = [float(np.mean(y_pred[y_true == c] == c)) for c in np.unique(y_true)]
    return float(np.mean(per_class))
