"""The evaluation protocols of [1], scikit-learn style: configure in __init__, then `run(...)`.

Today's protocols (weighted k-NN, the linear probe, few-shot) are in `workers.probes`; the names a
job asks for and each benchmark's defaults are in `workers.protocol_catalog`.

- `LinearSVMClassification`: linear SVMs (sklearn `LinearSVC`) on the training split's features,
  C chosen by stratified cross-validation on the training split over a small grid (or fixed), and
  scored on the test split with the benchmark's official metric. Single-label sets: one-vs-rest
  (default) or one-vs-one with voting, as [1] used for MIT67, CUB and Flowers; mean class accuracy.
  Multi-label sets (VOC): one binary SVM per class, images labelled 0 ("difficult") left out of its
  training, scored by VOC2007 11-point AP (`workers.metrics.voc07_map`). solver="torch" minimises
  LinearSVC's objective with every class, fold and C batched on the accelerator (`workers.accelerated`);
  scikit-learn stays the reference and the CPU default.
- `CosineRetrieval`: L2-normalised features ranked by cosine similarity (optionally after a PCA
  whitening learned on a disjoint set), scored by oxford_map / holidays_map / ukbench_ns.

`postprocess` applies the feature normalisations of [1] (signed power, then L2).
Every outcome carries the settings used and `PROTOCOL_VERSION`.
"""
from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workers.contract import EngineError

PROTOCOL_VERSION = "shelfmark-protocols/1.0"
DEFAULT_C_GRID = (0.01, 0.1, 1.0, 10.0)
TORCH_SVM = "torch squared-hinge Newton-CG (liblinear's objective)"


def resolve_solver(solver: str, device: str) -> str:
    """"auto": torch on CUDA (`workers.accelerated`), scikit-learn on the CPU (the reference, which the
    reproduction bundles re-solve exactly); "sklearn" or "torch" as asked."""
    if solver not in ("auto", "sklearn", "torch"):
        raise EngineError(f"unknown solver {solver!r}: use auto, sklearn or torch")
    if solver == "auto":
        return "torch" if str(device).startswith("cuda") else "sklearn"
    return solver


def postprocess(features: np.ndarray, *, power_norm: float | None = None, l2: bool = True) -> np.ndarray:
    """Signed power normalisation sign(x)|x|^p (when p is given), then L2 normalisation, on the last axis."""
    x = np.asarray(features, dtype=np.float32)
    if power_norm is not None:
        if power_norm <= 0:
            raise EngineError(f"power normalisation exponent must be > 0, got {power_norm}")
        x = np.sign(x) * np.abs(x) ** np.float32(power_norm)
    if l2:
        norms = np.linalg.norm(x, axis=-1, keepdims=True)
        x = x / np.maximum(norms, 1e-12)
    return x.astype(np.float32)


@dataclass
class UnitOutputs:
    """What a score is computed from, one entry per test image (or query): its confidence interval and
    the paired comparison of two results are drawn by resampling these units (workers.confidence).

    kind "predictions": values (n,) predicted class indices, labels (n,) the true ones (mean class
    accuracy); "scores": values (n, C) class scores, labels (n, C) of 1/-1/0 (VOC07 mAP); "draws":
    values (d, n) predictions of d seeded few-shot draws (their mean accuracy); "per_query": values (q,)
    each query's AP or N-S count, NaN for a query without positives (the mean of the others).
    """

    kind: str
    values: np.ndarray
    labels: np.ndarray | None = None
    ids: np.ndarray | None = None
    partition: np.ndarray | None = None   # per unit: its partition (SUN397's 10), scored apart then averaged


@dataclass
class ProtocolOutcome:
    score: float
    per_class: dict[str, float] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    # what the scoring saw, for the artifacts: predictions or rankings
    details: dict[str, Any] = field(default_factory=dict)
    units: UnitOutputs | None = None


TOO_FEW_FOR_CV = "too few training images per class for CV; C = 1"


class LinearSVMClassification:
    """Linear SVMs on off-the-shelf features, C by cross-validation on the training split.

    Parameters
    ----------
    svm_c : fixed C, or None to choose it from `c_grid` by `cv_folds`-fold stratified CV.
    multiclass : "ovr" (one-vs-rest) or "ovo" (one-vs-one with voting); single-label sets only.
    solver : "sklearn" (LinearSVC, the reference), "torch" (`workers.accelerated`: the same objective,
        every class, fold and C batched on `device`), or "auto" (torch on CUDA, else scikit-learn).
    """

    name = "svm"

    def __init__(self, svm_c: float | None = None, c_grid: Sequence[float] = DEFAULT_C_GRID,
                 cv_folds: int = 3, multiclass: str = "ovr", max_iter: int = 20000, random_state: int = 0,
                 solver: str = "auto", device: str = "cpu"):
        self.svm_c = svm_c
        self.c_grid = tuple(c_grid)
        self.cv_folds = cv_folds
        self.multiclass = multiclass
        self.max_iter = max_iter
        self.random_state = random_state
        self.device = device
        self.solver = resolve_solver(solver, device)

    def settings(self) -> dict[str, Any]:
        svm = TORCH_SVM if self.solver == "torch" else "sklearn.svm.LinearSVC"
        return {
            "protocol": self.name, "protocol_version": PROTOCOL_VERSION, "svm": svm, "solver": self.solver,
            "svm_c": self.svm_c, "c_grid": list(self.c_grid), "cv_folds": self.cv_folds,
            "multiclass": self.multiclass, "max_iter": self.max_iter,
        }

    def _svc(self, c: float):
        from sklearn.svm import LinearSVC

        return LinearSVC(C=c, dual="auto", max_iter=self.max_iter, random_state=self.random_state)

    def _estimator(self, c: float):
        if self.multiclass == "ovo":
            from sklearn.multiclass import OneVsOneClassifier

            return OneVsOneClassifier(self._svc(c))
        if self.multiclass == "ovr":
            return self._svc(c)
        raise EngineError(f"unknown multiclass strategy {self.multiclass!r}: use ovr or ovo")

    def _cv(self, y: np.ndarray, groups=None):
        """The reference's CV splitter on (y, groups), or None when a class has fewer than 2 images."""
        from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

        folds = min(self.cv_folds, int(np.bincount(np.unique(y, return_inverse=True)[1]).min()))
        if folds < 2:
            return None
        if groups is not None:
            return StratifiedGroupKFold(folds, shuffle=True, random_state=self.random_state)
        return StratifiedKFold(folds, shuffle=True, random_state=self.random_state)

    def _splits(self, y: np.ndarray, groups=None) -> list | None:
        """The reference's CV folds as (fit, held) index arrays, for the torch solver."""
        cv = self._cv(y, groups)
        return None if cv is None else list(cv.split(np.zeros((len(y), 1)), y, groups))

    def _choose_c(self, x: np.ndarray, y: np.ndarray, make, scoring: str, groups=None) -> tuple[float, dict]:
        """The grid's C with the best mean CV score (ties: the smaller C); fixed C when CV is impossible."""
        if self.svm_c is not None:
            return float(self.svm_c), {}
        from sklearn.model_selection import cross_val_score

        cv = self._cv(y, groups)
        if cv is None:
            return 1.0, {"note": TOO_FEW_FOR_CV}
        scores = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # ConvergenceWarning on the grid's extremes
            for c in self.c_grid:
                scores[c] = float(np.mean(cross_val_score(make(c), x, y, cv=cv, scoring=scoring, groups=groups)))
        best = max(self.c_grid, key=lambda c: (scores[c], -c))
        return float(best), {str(c): s for c, s in scores.items()}

    def run(self, train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
            classes: Sequence[str], *, multilabel: bool = False, train_groups: np.ndarray | None = None
            ) -> ProtocolOutcome:
        """Fit on (train_x (n, D), train_y) and score test_x (m, D) against test_y.

        train_y: (n,) class indices, or (n, C) of 1/-1/0 for multi-label sets. train_groups keeps
        jittered views of one image in the same CV fold.
        """
        if len(train_x) != len(train_y) or len(test_x) != len(test_y):
            raise EngineError("features and labels differ in length")
        if multilabel:
            return self._run_multilabel(train_x, train_y, test_x, test_y, classes, train_groups)
        from workers.metrics import mean_class_accuracy

        if self.solver == "torch":
            c, cv_scores, predictions = self._torch_single_label(train_x, train_y, test_x, train_groups)
        else:
            c, cv_scores = self._choose_c(train_x, train_y, self._estimator, "balanced_accuracy", train_groups)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                classifier = self._estimator(c).fit(train_x, train_y)
            predictions = classifier.predict(test_x)
        score = mean_class_accuracy(test_y, predictions)
        per_class = {str(classes[k]): float(np.mean(predictions[test_y == k] == k)) for k in np.unique(test_y)}
        settings = {**self.settings(), "chosen_c": c, "cv_scores": cv_scores, "metric": "mean_class_accuracy"}
        return ProtocolOutcome(score, per_class, settings, {"predictions": predictions, "svm_c": np.array([c])},
                               UnitOutputs("predictions", predictions, labels=np.asarray(test_y)))

    def _torch_single_label(self, train_x, train_y, test_x, train_groups):
        from workers.accelerated import SVMSolver

        if self.multiclass not in ("ovr", "ovo"):
            raise EngineError(f"unknown multiclass strategy {self.multiclass!r}: use ovr or ovo")
        y = np.asarray(train_y)
        splits = None if self.svm_c is not None else self._splits(y, train_groups)
        solver = SVMSolver(self.device)
        fit = solver.ovo if self.multiclass == "ovo" else solver.ovr
        c, cv_scores, predictions = fit(train_x, y, test_x, self.c_grid, splits, self.svm_c)
        if self.svm_c is None and splits is None:
            cv_scores = {"note": TOO_FEW_FOR_CV}
        return c, cv_scores, predictions

    def _torch_multilabel(self, train_x, train_y, test_x, classes, train_groups):
        """Every class's CV fits and refit as columns of one batched solve (`SVMSolver.multilabel`)."""
        from workers.accelerated import SVMSolver

        y = np.asarray(train_y)
        class_splits, notes = [], {}
        for k, name in enumerate(classes):
            keep = np.flatnonzero(y[:, k] != 0)
            target = (y[keep, k] == 1).astype(int)
            if len(np.unique(target)) < 2:
                raise EngineError(f"class {name}: the training split needs positives and negatives")
            if self.svm_c is not None:
                class_splits.append((None, float(self.svm_c)))
                continue
            groups = train_groups[keep] if train_groups is not None else None
            splits = self._splits(target, groups)
            if splits is None:
                notes[k] = {"note": TOO_FEW_FOR_CV}
                class_splits.append((None, 1.0))
            else:   # the class's folds, as rows of the whole training split
                class_splits.append(([(keep[fit], keep[held]) for fit, held in splits], None))
        chosen, cv_scores, scores = SVMSolver(self.device).multilabel(train_x, y, test_x, self.c_grid,
                                                                       class_splits, self.svm_c)
        return chosen, [notes.get(k, s) for k, s in enumerate(cv_scores)], scores

    def _run_multilabel(self, train_x, train_y, test_x, test_y, classes, train_groups) -> ProtocolOutcome:
        from workers.metrics import voc07_map

        scores = np.zeros((len(test_x), len(classes)), dtype=np.float64)
        chosen, cv_all = {}, {}
        if self.solver == "torch":
            chosen_list, cv_list, scores = self._torch_multilabel(train_x, train_y, test_x, classes, train_groups)
            chosen = {str(n): c for n, c in zip(classes, chosen_list)}
            cv_all = {str(n): s for n, s in zip(classes, cv_list)}
        for k, name in enumerate(classes if self.solver != "torch" else ()):
            keep = train_y[:, k] != 0
            x, y = train_x[keep], (train_y[keep, k] == 1).astype(int)
            if len(np.unique(y)) < 2:
                raise EngineError(f"class {name}: the training split needs positives and negatives")
            groups = train_groups[keep] if train_groups is not None else None
            c, cv_scores = self._choose_c(x, y, self._svc, "average_precision", groups)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scores[:, k] = self._svc(c).fit(x, y).decision_function(test_x)
            chosen[str(name)], cv_all[str(name)] = c, cv_scores
        mean_ap, per_class_ap = voc07_map(scores, test_y)
        settings = {**self.settings(), "multiclass": "binary per class", "chosen_c": chosen,
                    "cv_scores": cv_all, "metric": "voc07_map", "difficult": "left out of training"}
        per_class = {str(name): float(ap) for name, ap in zip(classes, per_class_ap)}
        return ProtocolOutcome(float(mean_ap), per_class, settings,
                               {"scores": scores, "svm_c": np.array([chosen[str(n)] for n in classes])},
                               UnitOutputs("scores", scores, labels=np.asarray(test_y)))


def _pca_whitening(features: np.ndarray, dim: int | None) -> tuple[np.ndarray, np.ndarray]:
    mean = features.mean(axis=0)
    centred = features - mean
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    keep = min(dim or len(singular), len(singular))
    scale = np.sqrt(len(features) - 1) / np.maximum(singular[:keep], 1e-8)
    return mean, (vt[:keep].T * scale).astype(np.float32)


class CosineRetrieval:
    """Rank the database by cosine similarity to each query; score with the official metric.

    Parameters
    ----------
    whitening : None, or "pca" (learned by `fit` on a set disjoint from the benchmark).
    whitening_dim : keep this many PCA components (None = all).
    """

    name = "ranking"

    def __init__(self, whitening: str | None = None, whitening_dim: int | None = None,
                 chunk: int = 1024):
        if whitening not in (None, "pca"):
            raise EngineError(f"unknown whitening {whitening!r}: use pca or none")
        self.whitening = whitening
        self.whitening_dim = whitening_dim
        self.chunk = chunk
        self._mean = self._projection = None
        self._fit_on: str | None = None

    def settings(self) -> dict[str, Any]:
        return {"protocol": self.name, "protocol_version": PROTOCOL_VERSION, "similarity": "cosine",
                "whitening": self.whitening, "whitening_dim": self.whitening_dim,
                "whitening_learned_on": self._fit_on}

    def fit(self, features: np.ndarray, *, source: str = "") -> CosineRetrieval:
        """Learn the PCA whitening on `features` (n, D), a set disjoint from the benchmark."""
        if self.whitening == "pca":
            self._mean, self._projection = _pca_whitening(postprocess(features), self.whitening_dim)
            self._fit_on = source or f"{len(features)} images"
        return self

    def project(self, features: np.ndarray) -> np.ndarray:
        """Post-processed features, whitened when fitted, before the final L2 normalisation.

        What a reproduction bundle stores: L2-normalising these gives exactly what is ranked.
        """
        x = postprocess(features)
        if self.whitening == "pca":
            if self._projection is None:
                raise EngineError("PCA whitening needs fit() on a disjoint set first")
            x = ((x - self._mean) @ self._projection).astype(np.float32)
        return x

    def embed(self, features: np.ndarray) -> np.ndarray:
        """The features as ranked: post-processed, then whitened and re-normalised when fitted."""
        x = self.project(features)
        return postprocess(x) if self.whitening == "pca" else x

    def rank(self, database: np.ndarray, queries: np.ndarray, top_k: int | None = None) -> np.ndarray:
        """(n_queries, n_database or top_k) database indices, most similar first (ties keep database order).

        `top_k` keeps only the head of each ranking (UKBench reads 4 of 10,200), so memory stays
        one chunk of similarities instead of a full n x n ranking.
        """
        db = self.embed(database)
        q = self.embed(queries)
        width = len(db) if top_k is None else min(top_k, len(db))
        order = np.empty((len(q), width), dtype=np.int32 if len(db) < 2**31 else np.int64)
        for start in range(0, len(q), self.chunk):
            similarity = q[start:start + self.chunk] @ db.T
            order[start:start + self.chunk] = np.argsort(-similarity, axis=1, kind="stable")[:, :width]
        return order

    def run(self, database: np.ndarray, database_ids: Sequence[str], queries: np.ndarray,
            query_ids: Sequence[str], ground_truth: Sequence[Any], metric: str) -> ProtocolOutcome:
        """ground_truth: the `RetrievalQuery`s, aligned with `queries`. The benchmark's official metric."""
        order = self.rank(database, queries, top_k=4 if metric == "ukbench_ns" else None)
        return self.score(order, database_ids, query_ids, ground_truth, metric)

    def score(self, order: np.ndarray, database_ids: Sequence[str], query_ids: Sequence[str],
              ground_truth: Sequence[Any], metric: str) -> ProtocolOutcome:
        """The official metric of a ranking `order` (n_queries, n_database or top_k), per query too."""
        from workers import metrics

        settings = {**self.settings(), "metric": metric}
        if metric in ("holidays_map", "oxford_map"):
            ids = np.asarray(list(database_ids))
            rankings = {qid: ids[row].tolist() for qid, row in zip(query_ids, order)}
        if metric == "holidays_map":
            score = metrics.holidays_map(rankings, database=database_ids)
            per_query = {q: metrics.holidays_map({q: r}, database=database_ids) for q, r in rankings.items()}
        elif metric == "oxford_map":
            keyed = {(gt.name or gt.id): gt for gt in ground_truth}
            named = {(gt.name or gt.id): rankings[qid] for gt, qid in zip(ground_truth, query_ids)}
            score, per_query = metrics.oxford_map(named, keyed)
        elif metric == "ukbench_ns":
            numbers = {qid: _image_number(qid) for qid in query_ids}
            db_numbers = np.asarray([_image_number(i) for i in database_ids])
            number_rankings = {numbers[qid]: db_numbers[row].tolist() for qid, row in zip(query_ids, order)}
            score = metrics.ukbench_ns(number_rankings)
            counts = metrics.ukbench_counts(number_rankings)
            per_query = {qid: float(counts[numbers[qid]]) for qid in query_ids}
        else:
            raise EngineError(f"unknown retrieval metric {metric!r}")
        names = [str(k) for k in per_query]
        units = UnitOutputs("per_query", np.asarray([per_query[k] for k in per_query], dtype=np.float64),
                            ids=np.asarray(names))
        shown = {} if metric == "ukbench_ns" else {str(k): float(v) for k, v in per_query.items()}
        return ProtocolOutcome(float(score), shown, settings, {"order": order}, units)

    def score_revisited(self, order: np.ndarray, gnd: Sequence[dict], query_names: Sequence[str],
                        protocol: str) -> ProtocolOutcome:
        """Revisited Oxford / Paris under `protocol` (easy | medium | hard): revisitop's mAP and mP@k."""
        from workers import metrics

        scores = metrics.revisited_map(order.T, gnd)[protocol]
        per_query = dict(zip(query_names, scores["aps"]))
        settings = {**self.settings(), "protocol": protocol, "metric": "revisited_map", "revisited_protocol": protocol,
                    **{key: value for key, value in scores.items() if key.startswith("mp@")},
                    "queries_without_positives": int(np.isnan(scores["aps"]).sum())}
        units = UnitOutputs("per_query", np.asarray(scores["aps"], dtype=np.float64), ids=np.asarray(query_names))
        return ProtocolOutcome(scores["map"], {k: v for k, v in per_query.items() if not np.isnan(v)}, settings,
                               {"order": order}, units)


def _image_number(image_id: str) -> int:
    match = re.search(r"(\d+)(?:\.jpg)?$", str(image_id))
    if not match:
        raise EngineError(f"UKBench image id without a number: {image_id!r}")
    return int(match.group(1))
