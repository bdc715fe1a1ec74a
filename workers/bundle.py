"""Reproduction bundles: one zip per evaluated result that anyone can re-score with numpy + scikit-learn.

Contents: `features.npz` (the engine's artifact: post-processed features, labels and image ids of
every split, the SVM's C), `splits.json` (the ids of each split), `protocol.json` (the settings and
the recorded score), `provenance.json`, `reproduce.py` (a standalone copy of the protocol and metric
code) and `SHA256SUMS`. `python reproduce.py` checks the sums, recomputes the score and exits 0 iff
it equals the recorded one to 1e-6. Nothing here imports Django.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

TOLERANCE = 1e-6


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def split_ids(features_npz: Path) -> dict[str, list[str]]:
    """The image ids of each split stored in the engine's features.npz."""
    with np.load(features_npz, allow_pickle=False) as stored:
        names = [n for n in ("train_ids", "test_ids", "database_ids", "query_ids") if n in stored.files]
        return {name[: -len("_ids")]: [str(i) for i in stored[name]] for name in names}


def write_bundle(target: Path, *, features_npz: Path, protocol: dict[str, Any], provenance: dict[str, Any],
                 score: float, metric: str, readme: str = "") -> Path:
    """Write the zip atomically at `target` (a temp file in the same folder, then renamed)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    features = Path(features_npz).read_bytes()
    members: dict[str, bytes] = {
        "features.npz": features,
        "splits.json": _json_bytes(split_ids(features_npz)),
        "protocol.json": _json_bytes({**protocol, "metric": metric, "recorded_score": score,
                                      "tolerance": TOLERANCE}),
        "provenance.json": _json_bytes(provenance),
        "reproduce.py": REPRODUCE_PY.encode("utf-8"),
        "README.txt": (readme or _README).encode("utf-8"),
    }
    members["SHA256SUMS"] = "".join(f"{_sha256(data)}  {name}\n" for name, data in members.items()).encode()
    handle, tmp = tempfile.mkstemp(dir=target.parent, suffix=".zip.tmp")
    os.close(handle)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, data in members.items():
                archive.writestr(name, data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, indent=2, sort_keys=True, default=str).encode("utf-8")


_README = """Reproduction bundle of a Shelfmark result.

    python reproduce.py        # needs numpy and scikit-learn only

checks SHA256SUMS, recomputes the score from features.npz with the recorded protocol settings
(protocol.json) and exits 0 iff it matches the recorded score to 1e-6. provenance.json says how the
features were produced (model and weights hash, code and protocol versions, hardware, date).
"""

REPRODUCE_PY = r'''#!/usr/bin/env python3
"""Recompute a Shelfmark score from this bundle with numpy and scikit-learn alone.

Classification: linear SVMs (sklearn LinearSVC) with the recorded C, one-vs-rest or one-vs-one,
scored by mean class accuracy, or one binary SVM per class scored by VOC2007 11-point mAP.
Retrieval: cosine ranking of L2-normalised features, scored by Holidays mAP, Oxford/Paris mAP or
the UKBench N-S score. Exit status 0 iff the score matches the recorded one (protocol.json).
"""
import hashlib
import json
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


def holidays_map(rankings, database):
    names = set(database)
    total = 0.0
    for query, ranking in rankings.items():
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
        total += ap
    return total / len(rankings)


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


# ---- protocols ------------------------------------------------------------------------------------

def svc(c, settings):
    from sklearn.svm import LinearSVC

    return LinearSVC(C=float(c), dual="auto", max_iter=int(settings.get("max_iter", 20000)),
                     random_state=int(settings.get("random_state", 0)))


def classification(data, settings):
    train_x, test_x = data["train_features"], data["test_features"]
    train_y, test_y = data["train_labels"], data["test_labels"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if bool(data["multilabel"]):
            scores = np.zeros(test_y.shape, dtype=np.float64)
            for k, c in enumerate(data["svm_c"]):
                keep = train_y[:, k] != 0
                model = svc(c, settings).fit(train_x[keep], (train_y[keep, k] == 1).astype(int))
                scores[:, k] = model.decision_function(test_x)
            return float(np.mean([voc07_ap(scores[:, k], test_y[:, k]) for k in range(test_y.shape[1])]))
        model = svc(data["svm_c"][0], settings)
        if str(data["multiclass"]) == "ovo":
            from sklearn.multiclass import OneVsOneClassifier

            model = OneVsOneClassifier(model)
        predictions = model.fit(train_x, train_y).predict(test_x)
    return mean_class_accuracy(test_y, predictions)


def l2(x):
    x = np.asarray(x, dtype=np.float32)
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def retrieval(data, metric, chunk=1024):
    db, q = l2(data["database_features"]), l2(data["query_features"])
    db_ids = [str(i) for i in data["database_ids"]]
    query_ids = [str(i) for i in data["query_ids"]]
    order = np.empty((len(q), len(db)), dtype=np.int64)
    for start in range(0, len(q), chunk):
        order[start:start + chunk] = np.argsort(-(q[start:start + chunk] @ db.T), axis=1, kind="stable")
    ranked = {qid: [db_ids[i] for i in row] for qid, row in zip(query_ids, order)}
    if metric == "holidays_map":
        return holidays_map(ranked, db_ids)
    if metric == "oxford_map":
        truth = json.loads(str(data["ground_truth"]))
        names = [str(n) for n in data["query_names"]]
        return float(np.mean([oxford_ap(ranked[qid], truth[n]["good"], truth[n]["ok"], truth[n]["junk"])
                              for qid, n in zip(query_ids, names)]))
    if metric == "ukbench_ns":
        import re

        number = lambda s: int(re.search(r"(\d+)(?:\.jpg)?$", s).group(1))  # noqa: E731
        return float(np.mean([sum(number(o) // 4 == number(qid) // 4 for o in ranked[qid][:4]) for qid in query_ids]))
    sys.exit(f"unknown retrieval metric {metric}")


def main():
    check_sums()
    protocol = json.loads((HERE / "protocol.json").read_text())
    with np.load(HERE / "features.npz", allow_pickle=False) as data:
        data = {name: data[name] for name in data.files}
    kind, metric = str(data["kind"]), protocol["metric"]
    score = classification(data, protocol) if kind == "classification" else retrieval(data, metric)
    recorded = float(protocol["recorded_score"])
    ok = abs(score - recorded) <= float(protocol.get("tolerance", 1e-6))
    print(json.dumps({"metric": metric, "score": score, "recorded_score": recorded, "match": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
'''
