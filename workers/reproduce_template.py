#!/usr/bin/env python3
"""Recompute a Shelfmark score and its confidence interval from this bundle, with numpy and scikit-learn.

(This file is the template `workers/bundle.py` copies into every reproduction bundle as reproduce.py:
it must run alone, so it carries its own copies of the protocols, the metrics and the bootstrap.)

Protocols (protocol.json's "protocol"):
  svm           linear SVMs (LinearSVC) with the recorded C: one-vs-rest or one-vs-one; per class for VOC
  knn           weighted k-NN on L2-normalised features, votes exp(similarity / T) (DINOv2's eval/knn.py)
  linear_probe  logistic regression (L-BFGS) with the recorded C, per class for VOC
  fewshot       n-shot linear probes on the recorded seeded draws, averaged
  ranking       cosine ranking, scored by Holidays mAP, Oxford/Paris mAP or the UKBench N-S score
  easy, medium, hard   Revisited Oxford / Paris, revisitop's compute_map
Then the 95% percentile bootstrap interval over the test images (queries), from units.npz.
Exit status 0 iff the predictions, the score and the interval match the recorded ones.
Partitioned benchmarks (SUN397) ship their first partition's features: its score is recomputed.
"""
import hashlib
import json
import re
import sys
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def check_sums():
    for line in (HERE / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ", 1)
        if hashlib.sha256((HERE / name).read_bytes()).hexdigest() != digest:
            sys.exit(f"checksum mismatch: {name}")


# ---- metrics (copies of the official evaluation code's arithmetic) ----------------------------

def mean_class_accuracy(y_true, y_pred):
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in np.unique(y_true)]))


def matlab_colon(start, step, stop):
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


def voc07_ap(scores, labels):
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    ranked = np.asarray(labels)[order]
    tp = np.cumsum(ranked > 0).astype(np.float64)
    fp = np.cumsum(ranked < 0).astype(np.float64)
    recall = tp / int((ranked > 0).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp / (fp + tp)
    ap = 0.0
    for t in matlab_colon(0.0, 0.1, 1.0):
        reached = precision[(recall >= t) & ~np.isnan(precision)]
        ap = ap + (float(reached.max()) if reached.size else 0.0) / 11
    return ap


def holidays_ap(query, ranking, names):
    ranked = [n for n in ranking if n != query]
    relevant = {n for n in names if n[:4] == query[:4] and n != query}
    step, ap, ntp = 1.0 / len(relevant), 0.0, 0
    for rank, name in enumerate(ranked):
        if name not in relevant:
            continue
        p0 = 1.0 if rank == 0 else ntp / float(rank)
        p1 = (ntp + 1) / float(rank + 1)
        ap += (p1 + p0) * step / 2.0
        ntp += 1
    return ap


def holidays_map(rankings, database):
    names = set(database)
    return float(np.mean([holidays_ap(query, ranking, names) for query, ranking in rankings.items()]))


def oxford_ap(ranked, good, ok, junk):
    positives, junk, f32 = set(good) | set(ok), set(junk), np.float32
    n_pos = float(f32(len(positives)))
    old_r, old_p, ap, hits, j = f32(0.0), f32(1.0), f32(0.0), 0, 0
    for name in ranked:
        if name in junk:
            continue
        hits += name in positives
        r, p = f32(hits / n_pos), f32(hits / (j + 1.0))
        ap = f32(float(ap) + float(f32(float(r) - float(old_r))) * (float(f32(float(old_p) + float(p))) / 2.0))
        old_r, old_p, j = r, p, j + 1
    return float(ap)


def revisitop_aps(ranks, gnd, protocol):
    """revisitop's compute_map under Easy / Medium / Hard: per-query APs (NaN without positives)."""
    parts = {"easy": (("easy",), ("junk", "hard")), "medium": (("easy", "hard"), ("junk",)),
             "hard": (("hard",), ("junk", "easy"))}[protocol]
    aps = []
    for i, g in enumerate(gnd):
        ok = np.concatenate([np.asarray(g[k], dtype=np.int64) for k in parts[0]])
        junk = np.concatenate([np.asarray(g[k], dtype=np.int64) for k in parts[1]])
        if not len(ok):
            aps.append(float("nan"))
            continue
        pos = np.arange(ranks.shape[0])[np.isin(ranks[:, i], ok)]
        junk_pos = np.arange(ranks.shape[0])[np.isin(ranks[:, i], junk)]
        k = ij = 0
        for ip in range(len(pos)):
            while ij < len(junk_pos) and pos[ip] > junk_pos[ij]:
                k += 1
                ij += 1
            pos[ip] -= k
        ap = 0.0
        for j, rank in enumerate(pos):
            p0 = 1.0 if rank == 0 else float(j) / rank
            ap += (p0 + float(j + 1) / (rank + 1)) / (2.0 * len(ok))
        aps.append(ap)
    return np.asarray(aps)


# ---- protocols ------------------------------------------------------------------------------------

def l2(x):
    x = np.asarray(x, dtype=np.float32)
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def svc(c, settings):
    from sklearn.svm import LinearSVC

    return LinearSVC(C=float(c), dual="auto", max_iter=int(settings.get("max_iter", 20000)),
                     random_state=int(settings.get("random_state", 0)))


class _Logistic:
    """scikit-learn's LogisticRegression, fitted single-threaded on small problems (the engine's rule)."""

    def __init__(self, c, settings):
        from sklearn.linear_model import LogisticRegression

        self.model = LogisticRegression(C=float(c), max_iter=int(settings.get("max_iter", 1000)))

    def fit(self, x, y):
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1 if x.size < 2**24 else None):
            self.model.fit(x, y)
        return self

    def predict(self, x):
        return self.model.predict(x)

    def decision_function(self, x):
        return self.model.decision_function(x)


def logistic(c, settings):
    return _Logistic(c, settings)


def first(value):
    """A setting recorded per partition is a list: the first partition's."""
    return value[0] if isinstance(value, list) else value


def knn_votes(train_x, train_y, test_x, n_classes, k, temperature, multilabel, chunk=1024):
    train, test = l2(train_x), l2(test_x)
    votes = np.zeros((len(test), n_classes))
    k = min(k, len(train))
    for start in range(0, len(test), chunk):
        similarity = test[start:start + chunk] @ train.T
        order = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
        weights = np.exp(np.take_along_axis(similarity, order, axis=1).astype(np.float64) / temperature)
        rows = len(order)
        if multilabel:
            votes[start:start + rows] = np.einsum("qk,qkc->qc", weights, (train_y[order] == 1).astype(np.float64))
        else:
            flat = (np.arange(rows)[:, None] * n_classes + train_y[order]).ravel()
            votes[start:start + rows] = np.bincount(flat, weights=weights.ravel(),
                                                    minlength=rows * n_classes).reshape(rows, n_classes)
    return votes


def few_shot_draw(y, shots, seed):
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == label))[:shots] for label in np.unique(y)]))


def classification_units(data, settings):
    """(kind, values, labels) of the first partition, recomputed with the recorded protocol."""
    name = settings["protocol"]
    train_x, test_x = data["train_features"], data["test_features"]
    train_y, test_y = data["train_labels"], data["test_labels"]
    multilabel, n_classes = bool(data["multilabel"]), len(data["classes"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name == "knn":
            votes = knn_votes(train_x, train_y, test_x, n_classes, int(settings["k"]), float(settings["temperature"]),
                              multilabel)
            return ("scores", votes, test_y) if multilabel else ("predictions", votes.argmax(axis=1), test_y)
        if name in ("svm", "linear_probe"):
            if multilabel:
                chosen = first(settings["chosen_c"])
                scores = np.zeros(test_y.shape, dtype=np.float64)
                for k, class_name in enumerate(str(c) for c in data["classes"]):
                    keep = train_y[:, k] != 0
                    c = data["svm_c"][k] if name == "svm" else chosen[class_name]
                    x, test = (train_x, test_x) if name == "svm" else (l2(train_x).astype(np.float64),
                                                                          l2(test_x).astype(np.float64))
                    model = (svc(c, settings) if name == "svm" else logistic(c, settings))
                    scores[:, k] = model.fit(x[keep], (train_y[keep, k] == 1).astype(int)).decision_function(test)
                return "scores", scores, test_y
            if name == "svm":
                model = svc(data["svm_c"][0], settings)
                if str(data["multiclass"]) == "ovo":
                    from sklearn.multiclass import OneVsOneClassifier

                    model = OneVsOneClassifier(model)
                return "predictions", model.fit(train_x, train_y).predict(test_x), test_y
            model = logistic(first(settings["chosen_c"]), settings)
            x, test = l2(train_x).astype(np.float64), l2(test_x).astype(np.float64)
            return "predictions", model.fit(x, train_y).predict(test), test_y
        if name == "fewshot":
            shots, draws, seed = int(settings["headline_shots"]), int(settings["draws"]), int(settings["seed"])
            x, test = l2(train_x).astype(np.float64), l2(test_x).astype(np.float64)
            predictions = []
            for draw in range(draws):
                chosen = few_shot_draw(train_y, shots, seed + 1000 * shots + draw)
                predictions.append(logistic(settings["c"], settings).fit(x[chosen], train_y[chosen]).predict(test))
            return "draws", np.stack(predictions), test_y
    sys.exit(f"unknown classification protocol {name}")


def retrieval_units(data, settings, chunk=1024):
    db, q = l2(data["database_features"]), l2(data["query_features"])
    db_ids = [str(i) for i in data["database_ids"]]
    query_ids = [str(i) for i in data["query_ids"]]
    names = [str(n) for n in data["query_names"]]
    order = np.empty((len(q), len(db)), dtype=np.int64)
    for start in range(0, len(q), chunk):
        order[start:start + chunk] = np.argsort(-(q[start:start + chunk] @ db.T), axis=1, kind="stable")
    protocol, metric = settings["protocol"], settings["metric"]
    if protocol in ("easy", "medium", "hard"):
        return "per_query", revisitop_aps(order.T, json.loads(str(data["revisited_gnd"])), protocol), None
    ranked = {qid: [db_ids[i] for i in row] for qid, row in zip(query_ids, order)}
    if metric == "holidays_map":
        return "per_query", np.asarray([holidays_ap(qid, ranked[qid], set(db_ids)) for qid in query_ids]), None
    if metric == "oxford_map":
        truth = json.loads(str(data["ground_truth"]))
        return "per_query", np.asarray([oxford_ap(ranked[qid], truth[n]["good"], truth[n]["ok"], truth[n]["junk"])
                                        for qid, n in zip(query_ids, names)]), None
    if metric == "ukbench_ns":
        number = lambda s: int(re.search(r"(\d+)(?:\.jpg)?$", s).group(1))  # noqa: E731
        return "per_query", np.asarray([sum(number(o) // 4 == number(qid) // 4 for o in ranked[qid][:4])
                                        for qid in query_ids], dtype=np.float64), None
    sys.exit(f"unknown retrieval metric {metric}")


# ---- the bootstrap (a copy of workers/confidence.py) ----------------------------------------------

def class_accuracy_mean(labels, predictions, n_classes):
    totals = np.bincount(labels, minlength=n_classes)
    correct = np.bincount(labels, weights=(labels == predictions).astype(np.float64), minlength=n_classes)
    return float(np.mean(correct[totals > 0] / totals[totals > 0]))


def statistic(kind, values, labels, index):
    if kind in ("predictions", "draws"):
        labels = np.asarray(labels, dtype=np.int64)
        draws = np.asarray(values, dtype=np.int64).reshape(-1, labels.shape[0])
        n_classes = int(max(labels.max(), draws.max())) + 1
        return float(np.mean([class_accuracy_mean(labels[index], draw[index], n_classes) for draw in draws]))
    if kind == "scores":
        scores, labels = np.asarray(values)[index], np.asarray(labels)[index]
        aps = [voc07_ap(scores[:, k], labels[:, k]) for k in range(labels.shape[1]) if (labels[:, k] > 0).any()]
        return float(np.mean(aps)) if aps else float("nan")
    values = np.asarray(values, dtype=np.float64)[index]
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def bootstrap(units, resamples, seed, level):
    kind, values, labels = str(units["kind"]), units["values"], units.get("labels")
    n = values.shape[1] if kind == "draws" else values.shape[0]
    partition = units.get("partition")
    parts = [np.arange(n)] if partition is None else [np.flatnonzero(partition == p) for p in np.unique(partition)]
    rng = np.random.default_rng(seed)
    scores = np.empty(resamples)
    for r in range(resamples):
        scores[r] = np.mean([statistic(kind, values, labels, part[rng.integers(0, len(part), len(part))])
                             for part in parts])
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(scores, [tail, 100 - tail])
    return float(low), float(high)


def main():
    check_sums()
    protocol = json.loads((HERE / "protocol.json").read_text())
    with np.load(HERE / "features.npz", allow_pickle=False) as stored:
        data = {name: stored[name] for name in stored.files}
    if str(data["kind"]) == "classification":
        kind, values, labels = classification_units(data, protocol)
    else:
        kind, values, labels = retrieval_units(data, protocol)
    n = values.shape[1] if kind == "draws" else values.shape[0]
    score = statistic(kind, values, labels, np.arange(n))
    recorded = float(protocol["partition_scores"][0] if protocol.get("partitions") else protocol["recorded_score"])
    tolerance = float(protocol.get("tolerance", 1e-6))
    report = {"protocol": protocol["protocol"], "metric": protocol["metric"], "score": score,
              "recorded_score": recorded, "match": abs(score - recorded) <= tolerance}
    interval = protocol.get("recorded_interval")
    if interval and (HERE / "units.npz").is_file():
        with np.load(HERE / "units.npz", allow_pickle=False) as stored:
            units = {name: stored[name] for name in stored.files}
        first_part = units["partition"] == units["partition"].min() if "partition" in units else slice(None)
        stored_values = units["values"][:, first_part] if kind == "draws" else units["values"][first_part]
        same = (np.array_equal(stored_values, values) if kind in ("predictions", "draws")
                else np.allclose(stored_values, values, atol=1e-6, equal_nan=True))
        low, high = bootstrap(units, int(interval["resamples"]), int(interval["seed"]), float(interval["level"]))
        report.update(units_match=bool(same or tolerance > 1e-6), confidence_interval=[low, high],
                      recorded_interval=[interval["low"], interval["high"]])
        report["match"] = bool(report["match"] and report["units_match"] and abs(low - interval["low"]) <= 1e-9
                               and abs(high - interval["high"]) <= 1e-9)
    print(json.dumps(report))
    return 0 if report["match"] else 1


if __name__ == "__main__":
    sys.exit(main())
