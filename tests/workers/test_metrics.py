"""The official metrics: worked examples, ties, where naive versions differ, and randomized
cross-checks against straightforward ports of the official code written here independently."""
from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, balanced_accuracy_score, precision_recall_curve

from workers import metrics

# MATLAB R20xx: `format long; 0:0.1:1` prints these doubles (0.3 is 3 * 0.1, 0.6 and 0.7 are 1 - k * 0.1).
MATLAB_THRESHOLDS = [0.0, 0.1, 0.2, 0.30000000000000004, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]


# ---- independent reference implementations ---------------------------------------------------

def devkit_voc07_ap(scores, labels, thresholds=MATLAB_THRESHOLDS):
    """Line-by-line port of VOCevalcls.m's AP (sort(-confidence), cumsum, for t=0:0.1:1)."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])    # Python's sort is stable, like MATLAB's
    gt = [labels[i] for i in order]
    tp, fp, rec, prec = 0, 0, [], []
    npos = sum(1 for g in labels if g > 0)
    for g in gt:
        tp += g > 0
        fp += g < 0
        rec.append(tp / npos)
        prec.append(tp / (fp + tp) if fp + tp else math.nan)
    ap = 0.0
    for t in thresholds:
        candidates = [p for r, p in zip(rec, prec) if r >= t and not math.isnan(p)]
        p = max(candidates) if candidates else 0.0
        ap = ap + p / 11
    return ap


def compute_ap_cpp(ranked, good, ok, junk):
    """compute_ap.cpp in double precision."""
    pos = set(good) | set(ok)
    amb = set(junk)
    old_recall, old_precision, ap = 0.0, 1.0, 0.0
    intersect_size, j = 0, 0
    for item in ranked:
        if item in amb:
            continue
        if item in pos:
            intersect_size += 1
        recall = intersect_size / len(pos)
        precision = intersect_size / (j + 1.0)
        ap += (recall - old_recall) * ((old_precision + precision) / 2.0)
        old_recall, old_precision = recall, precision
        j += 1
    return ap


def compute_ap_cpp_float32(ranked, good, ok, junk):
    """compute_ap.cpp with its C types: float variables, double temporaries."""
    f = np.float32
    pos, amb = set(good) | set(ok), set(junk)
    old_recall, old_precision, ap = f(0.0), f(1.0), f(0.0)
    intersect_size, j = 0, 0
    for item in ranked:
        if item in amb:
            continue
        if item in pos:
            intersect_size += 1
        recall = f(f(intersect_size) / f(len(pos)))                 # float / float
        precision = f(intersect_size / (j + 1.0))                   # double, stored as float
        step = f(recall - old_recall)                               # float - float
        mean = np.float64(f(old_precision + precision)) / 2.0       # (float + float) / 2.0 is double
        ap = f(np.float64(ap) + np.float64(step) * mean)            # ap += double
        old_recall, old_precision = recall, precision
        j += 1
    return float(ap)


def eval_holidays(results_with_query, all_names):
    """holidays_map.py: ranks include the query, which shifts later ranks by one."""
    total = 0.0
    for query, results in results_with_query.items():
        gt_results = {n for n in all_names if n[:4] == query[:4] and n != query}
        tp_ranks, rank_shift = [], 0
        for rank, name in enumerate(results):
            if name == query:
                rank_shift = -1
            elif name in gt_results:
                tp_ranks.append(rank + rank_shift)
        ap, recall_step = 0.0, 1.0 / len(gt_results)
        for ntp, rank in enumerate(tp_ranks):
            precision_0 = 1.0 if rank == 0 else ntp / float(rank)
            precision_1 = (ntp + 1) / float(rank + 1)
            ap += (precision_1 + precision_0) * recall_step / 2.0
        total += ap
    return total / len(results_with_query)


def envelope_ap_from_sklearn(scores, binary):
    """VOC2010+ AP from sklearn's precision-recall points (no ties) and a monotone envelope."""
    precision, recall, _ = precision_recall_curve(binary, scores)
    precision, recall = precision[::-1], recall[::-1]     # increasing recall, starting at (0, 1)
    ap = 0.0
    for k in range(1, len(recall)):
        ap += (recall[k] - recall[k - 1]) * max(precision[k:])
    return ap


# ---- VOC2007 11-point AP ---------------------------------------------------------------------

def test_thresholds_are_matlabs_colon_not_numpy_arange():
    assert list(metrics.VOC07_RECALL_THRESHOLDS) == MATLAB_THRESHOLDS
    assert metrics.VOC07_RECALL_THRESHOLDS[6] != np.arange(0, 1.1, 0.1)[6]
    assert metrics.matlab_colon(0, 0.25, 1) == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_voc07_worked_example():
    ap = metrics.voc07_ap([0.9, 0.8, 0.7, 0.6], [1, -1, 1, -1])
    assert ap == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)
    assert round(ap, 4) == 0.8485
    assert type(ap) is float


def test_voc07_190_positives_where_arange_thresholds_differ():
    # 114 positives (recall exactly 0.6), 300 negatives, 19 positives (recall exactly 0.7), 57 more.
    labels = [1] * 114 + [-1] * 300 + [1] * 19 + [-1] * 100 + [1] * 57
    scores = list(np.linspace(1, 0, len(labels)))
    ours = metrics.voc07_ap(scores, labels)
    assert ours == pytest.approx(devkit_voc07_ap(scores, labels), abs=1e-15)
    arange = devkit_voc07_ap(scores, labels, thresholds=list(np.arange(0, 1.1, 0.1)))
    assert ours - arange > 0.05     # at 0.6 the devkit still sees precision 1.0


def test_voc07_ties_keep_input_order():
    assert metrics.voc07_ap([0.5, 0.5], [-1, 1]) == pytest.approx(0.5)     # negative ranked first
    assert metrics.voc07_ap([0.5, 0.5], [1, -1]) == pytest.approx(1.0)


def test_voc07_difficult_counts_neither_way():
    # A difficult image ranked first: precision is undefined there, not 0; a naive AP that made it
    # a negative would give 0.5.
    assert metrics.voc07_ap([0.9, 0.8, 0.7], [0, 1, -1]) == pytest.approx(1.0)
    assert metrics.voc07_ap([0.9, 0.8, 0.7], [1, 0, 1]) == pytest.approx(1.0)


def test_voc07_refuses_bad_input():
    with pytest.raises(ValueError, match="no positive"):
        metrics.voc07_ap([0.1, 0.2], [-1, 0])
    with pytest.raises(ValueError, match="labels"):
        metrics.voc07_ap([0.1, 0.2], [2, 1])
    with pytest.raises(ValueError, match="differ"):
        metrics.voc07_ap([0.1], [1, -1])


def test_voc07_matches_devkit_port_on_random_rankings():
    rng = np.random.default_rng(7)
    for trial in range(200):
        n = int(rng.integers(2, 60))
        labels = rng.choice([1, -1, -1, 0], size=n)
        labels[rng.integers(n)] = 1
        scores = rng.integers(0, 8, size=n) / 8.0          # coarse scores: many ties
        assert metrics.voc07_ap(scores, labels) == pytest.approx(
            devkit_voc07_ap(scores.tolist(), labels.tolist()), abs=1e-12
        ), trial


def test_voc07_map_is_the_mean_over_classes():
    scores = np.array([[0.9, 0.1], [0.8, 0.9], [0.7, 0.5], [0.6, 0.2]])
    labels = np.array([[1, 1], [-1, -1], [1, 1], [-1, -1]])
    mean, per_class = metrics.voc07_map(scores, labels)
    assert per_class[0] == pytest.approx(metrics.voc07_ap(scores[:, 0], labels[:, 0]))
    assert per_class[1] == pytest.approx(metrics.voc07_ap(scores[:, 1], labels[:, 1]))
    assert mean == pytest.approx(sum(per_class) / 2)
    with pytest.raises(ValueError):
        metrics.voc07_map(scores, labels[:, :1])


# ---- VOC2010+ AP -----------------------------------------------------------------------------

def test_voc_ap_worked_example():
    ap = metrics.voc_ap([0.9, 0.8, 0.7, 0.6], [1, -1, 1, -1])
    assert ap == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert round(ap, 4) == 0.8333


def test_voc_ap_is_not_plain_average_precision():
    # Precision rises after a miss (1/2 then 2/3): the envelope lifts the first hit's step.
    scores, labels = [0.9, 0.8, 0.7], [-1, 1, 1]
    assert metrics.voc_ap(scores, labels) == pytest.approx(2 / 3)
    assert average_precision_score([0, 1, 1], scores) == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_voc_ap_matches_sklearn_curve_envelope_on_random_rankings():
    rng = np.random.default_rng(3)
    for _ in range(100):
        n = int(rng.integers(3, 80))
        binary = rng.random(n) < 0.3
        binary[0] = True
        scores = rng.permutation(n).astype(float)         # distinct scores: no ties
        labels = np.where(binary, 1, -1)
        ours = metrics.voc_ap(scores, labels)
        assert ours == pytest.approx(envelope_ap_from_sklearn(scores, binary), abs=1e-12)
        assert ours >= average_precision_score(binary, scores) - 1e-12


# ---- Oxford / Paris compute_ap ---------------------------------------------------------------

def test_oxford_worked_example():
    ap = metrics.oxford_ap(["a", "x", "b", "j", "c"], good=["a", "b"], ok=["c"], junk=["j"])
    assert round(ap, 4) == 0.7639
    assert ap == pytest.approx(1 / 3 + 0 + (1 / 3) * (1 / 2 + 2 / 3) / 2 + (1 / 3) * (2 / 3 + 3 / 4) / 2, abs=1e-6)


def test_oxford_junk_is_skipped_not_negative():
    with_junk = metrics.oxford_ap(["j", "a"], good=["a"], ok=[], junk=["j"])
    as_negative = metrics.oxford_ap(["j", "a"], good=["a"], ok=[], junk=[])
    assert with_junk == pytest.approx(1.0)
    assert as_negative == pytest.approx(0.25)        # after the miss precision is 0: trapezoid (0 + 1/2) / 2


def test_oxford_ap_matches_compute_ap_port_on_random_rankings():
    rng = np.random.default_rng(11)
    for _ in range(100):
        names = [f"img{k}" for k in range(int(rng.integers(5, 200)))]
        kinds = rng.choice(["good", "ok", "junk", "neg", "neg"], size=len(names))
        kinds[0] = "good"
        gt = {kind: [n for n, k in zip(names, kinds) if k == kind] for kind in ("good", "ok", "junk")}
        ranked = list(rng.permutation(names))
        ours = metrics.oxford_ap(ranked, gt["good"], gt["ok"], gt["junk"])
        # the official program sums in single precision: agreement to float32 accuracy
        assert ours == pytest.approx(compute_ap_cpp(ranked, gt["good"], gt["ok"], gt["junk"]), abs=2e-6)
        assert ours == compute_ap_cpp_float32(ranked, gt["good"], gt["ok"], gt["junk"])


def test_oxford_map_keys_and_mean():
    gt = {"q1": {"good": ["a"], "ok": [], "junk": []}, "q2": {"good": ["b"], "ok": ["c"], "junk": ["a"]}}
    rankings = {"q1": ["a", "b", "c"], "q2": ["a", "c", "b"]}
    mean, per_query = metrics.oxford_map(rankings, gt)
    assert per_query == {"q1": pytest.approx(1.0), "q2": pytest.approx(1.0)}
    assert mean == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no ranking"):
        metrics.oxford_map({"q1": ["a"]}, gt)


# ---- Holidays --------------------------------------------------------------------------------

def test_holidays_removes_the_query_and_uses_trapezoids():
    # group 1000: query 100000, relevant 100001 and 100002.
    rankings = {"100000": ["100000", "100001", "200001", "100002"]}
    # after removing the query: hit at rank 0 (p0 = 1, p1 = 1), hit at rank 2 (p0 = 1/2, p1 = 2/3)
    expected = (1 + 1) / 4 + (1 / 2 + 2 / 3) / 4
    assert metrics.holidays_map(rankings) == pytest.approx(expected)
    assert metrics.holidays_map({"100000.jpg": ["100001.jpg", "200001.jpg", "100002.jpg"]}) == pytest.approx(expected)


def test_holidays_counts_relevant_images_missing_from_a_short_ranking():
    database = ["100000", "100001", "100002", "200000"]
    assert metrics.holidays_map({"100000": ["100001"]}, database=database) == pytest.approx(0.5)


def test_holidays_matches_eval_holidays_port_on_random_rankings():
    rng = np.random.default_rng(5)
    names = [f"{1000 + g:04d}{i:02d}" for g in range(12) for i in range(int(rng.integers(2, 6)))]
    queries = [n for n in names if n.endswith("00")]
    rankings = {q: list(rng.permutation(names)) for q in queries}
    assert metrics.holidays_map(rankings, database=names) == pytest.approx(eval_holidays(rankings, names), abs=1e-12)
    assert metrics.holidays_map(rankings) == pytest.approx(eval_holidays(rankings, names), abs=1e-12)


# ---- UKBench and class accuracy --------------------------------------------------------------

def test_ukbench_ns_counts_the_group_in_the_top_four():
    rankings = {
        0: [0, 1, 2, 3, 4],        # 4
        1: [1, 5, 0, 9, 2],        # 2 (1 and 0)
        4: [8, 9, 10, 11, 4],      # 0: the query ranks fifth
    }
    assert metrics.ukbench_ns(rankings) == pytest.approx((4 + 2 + 0) / 3)


def test_ukbench_matches_brute_force_on_random_rankings():
    rng = np.random.default_rng(2)
    n = 40
    rankings = {q: list(rng.permutation(n)) for q in range(n)}
    brute = np.mean([len({q // 4 * 4 + k for k in range(4)} & set(r[:4])) for q, r in rankings.items()])
    assert metrics.ukbench_ns(rankings) == pytest.approx(brute)


def test_mean_class_accuracy_is_not_overall_accuracy():
    y_true = [0, 0, 0, 0, 1]
    y_pred = [0, 0, 0, 0, 0]
    assert metrics.mean_class_accuracy(y_true, y_pred) == pytest.approx(0.5)
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 7, 300), rng.integers(0, 7, 300)
    assert metrics.mean_class_accuracy(y_true, y_pred) == pytest.approx(balanced_accuracy_score(y_true, y_pred))
