"""The protocols of today's representation papers on frozen features: weighted k-NN, the linear probe
and few-shot probes. scikit-learn style: configure in `__init__`, then `run(...)`; every outcome
carries its settings and protocol version, and the per-image outputs the intervals are drawn from.

- `KNNClassification` (DINO / DINOv2 `eval/knn.py`): features L2-normalised, similarity = dot product,
  the k most similar training images vote for their class with weight exp(similarity / T); the class
  with the largest summed weight wins. k in {10, 20, 100, 200} are reported, k = 20 is the headline.
  Multi-label sets (VOC): a class's score is the summed weight of the neighbours labelled with it.
- `LinearProbe` (CLIP's protocol): multinomial logistic regression (L-BFGS) on the frozen features,
  its L2 strength (C) chosen on a validation split carved from the training split (the test split is
  scored once, at the end), then refitted on the whole training split. scikit-learn's
  `LogisticRegression` on the CPU (the reference); the same objective minimised with torch's L-BFGS
  on a GPU. Multi-label sets: one binary logistic regression per class, "difficult" images left out.
- `FewShot`: n in {1, 2, 5, 10} training images per class, drawn with seeds; a linear probe at fixed C
  on them; mean and standard deviation over the draws; n = 5 is the headline.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from workers.contract import EngineError
from workers.protocols import ProtocolOutcome, UnitOutputs, postprocess, resolve_solver

KNN_VERSION = "shelfmark-knn/1.0"
LINEAR_PROBE_VERSION = "shelfmark-linear-probe/1.0"
FEW_SHOT_VERSION = "shelfmark-few-shot/1.0"
DEFAULT_PROBE_C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)
# Below this many feature values, scikit-learn's L-BFGS runs single-threaded: on small problems BLAS
# threads cost more than they save (digits x 1280-d on 2 cores: 0.7 s instead of 3.7 s per fit). The
# bundles' reproduce.py applies the same rule, so both compute in the same order.
SINGLE_THREAD_BELOW = 2**24


def blas_threads(x: np.ndarray):
    """threadpoolctl's limit for a fit on `x`: one thread for small problems, the default otherwise."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1 if x.size < SINGLE_THREAD_BELOW else None)


def _check(train_x, train_y, test_x, test_y) -> None:
    if len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise EngineError("features and labels differ in length")
    if not len(train_x) or not len(test_x):
        raise EngineError("a protocol needs training and test images")


def _score(test_y: np.ndarray, predictions: np.ndarray, classes: Sequence[str]) -> tuple[float, dict[str, float]]:
    from workers.metrics import mean_class_accuracy

    per_class = {str(classes[k]): float(np.mean(predictions[test_y == k] == k)) for k in np.unique(test_y)}
    return mean_class_accuracy(test_y, predictions), per_class


def _multilabel_score(test_y: np.ndarray, scores: np.ndarray, classes: Sequence[str]):
    from workers.metrics import voc07_map

    mean_ap, per_class = voc07_map(scores, test_y)
    return float(mean_ap), {str(name): float(ap) for name, ap in zip(classes, per_class)}


# ---- weighted k-NN ------------------------------------------------------------------------------

class KNNClassification:
    """Weighted k-NN on L2-normalised features, as DINOv2's `eval/knn.py`.

    Parameters
    ----------
    k : the headline number of neighbours (20).
    temperature : T in exp(similarity / T) (0.07).
    ks : every k reported in the settings (10, 20, 100, 200; those above the training size are capped).
    solver : "sklearn" (numpy, the reference: stable sort), "torch" (GEMM + top-k on `device`,
        `workers.accelerated.knn_votes`; ties may order differently), or "auto" (torch on CUDA).
    """

    name = "knn"

    def __init__(self, k: int = 20, temperature: float = 0.07, ks: Sequence[int] = (10, 20, 100, 200),
                 chunk: int = 1024, solver: str = "auto", device: str = "cpu"):
        if k < 1 or temperature <= 0:
            raise EngineError("k-NN needs k >= 1 and a temperature > 0")
        self.k, self.temperature, self.ks, self.chunk = k, temperature, tuple(sorted(set(ks) | {k})), chunk
        self.device, self.solver = device, resolve_solver(solver, device)

    def settings(self) -> dict[str, Any]:
        return {"protocol": self.name, "protocol_version": KNN_VERSION, "k": self.k, "temperature": self.temperature,
                "ks": list(self.ks), "similarity": "cosine (L2-normalised dot product)",
                "vote": "exp(similarity / temperature), summed per class", "solver": self.solver,
                "search": "torch matmul + topk" if self.solver == "torch" else "numpy matmul + stable argsort"}

    def votes(self, train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, n_classes: int,
              multilabel: bool) -> dict[int, np.ndarray]:
        """{k: (m, C) summed vote weights} for every reported k, from one neighbour search.

        train_y: (n,) class indices, or (n, C) of 1/-1/0 (a neighbour votes for the classes it has)."""
        train = postprocess(train_x)
        test = postprocess(test_x)
        if self.solver == "torch":
            from workers.accelerated import knn_votes

            return knn_votes(train, train_y, test, n_classes, self.ks, self.temperature, multilabel, self.device)
        widest = min(max(self.ks), len(train))
        out = {k: np.zeros((len(test), n_classes), dtype=np.float64) for k in self.ks}
        for start in range(0, len(test), self.chunk):
            similarity = test[start:start + self.chunk] @ train.T
            # the widest k neighbours, most similar first; ties keep the training order (stable)
            order = np.argsort(-similarity, axis=1, kind="stable")[:, :widest]
            weights = np.exp(np.take_along_axis(similarity, order, axis=1).astype(np.float64) / self.temperature)
            rows = len(order)
            for k in self.ks:
                kk = min(k, widest)
                if multilabel:
                    has = (train_y[order[:, :kk]] == 1).astype(np.float64)        # (q, k, C)
                    out[k][start:start + rows] = np.einsum("qk,qkc->qc", weights[:, :kk], has)
                else:
                    flat = (np.arange(rows)[:, None] * n_classes + train_y[order[:, :kk]]).ravel()
                    out[k][start:start + rows] = np.bincount(flat, weights=weights[:, :kk].ravel(),
                                                             minlength=rows * n_classes).reshape(rows, n_classes)
        return out

    def run(self, train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
            classes: Sequence[str], *, multilabel: bool = False, **_ignored) -> ProtocolOutcome:
        """predictions (details["predictions"]) of test_x (m, D) from train_x (n, D); the benchmark's metric."""
        _check(train_x, train_y, test_x, test_y)
        votes = self.votes(train_x, np.asarray(train_y), test_x, len(classes), multilabel)
        settings = self.settings()
        if multilabel:
            k_scores = {str(k): _multilabel_score(test_y, votes[k], classes)[0] for k in self.ks}
            score, per_class = _multilabel_score(test_y, votes[self.k], classes)
            settings.update(metric="voc07_map", k_scores=k_scores)
            return ProtocolOutcome(score, per_class, settings, {"scores": votes[self.k]},
                                   UnitOutputs("scores", votes[self.k], labels=np.asarray(test_y)))
        predictions = {k: votes[k].argmax(axis=1) for k in self.ks}
        k_scores = {str(k): _score(test_y, predictions[k], classes)[0] for k in self.ks}
        score, per_class = _score(test_y, predictions[self.k], classes)
        settings.update(metric="mean_class_accuracy", k_scores=k_scores)
        return ProtocolOutcome(score, per_class, settings, {"predictions": predictions[self.k]},
                               UnitOutputs("predictions", predictions[self.k], labels=np.asarray(test_y)))


# ---- the linear probe ---------------------------------------------------------------------------

def _images(groups: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
    """With jittered views (rows sharing a group id are views of one image): each image's first row and
    every row's image. Splits and draws are made over images, and each image brings all its views, so
    no view of a validation image is fitted and an n-shot draw holds n images, not n views."""
    if groups is None:
        return None
    _, first, inverse = np.unique(np.asarray(groups), return_index=True, return_inverse=True)
    return first, inverse


def _rows_of(images: np.ndarray, inverse: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.isin(inverse, images))


def _validation_split(y: np.ndarray, fraction: float, seed: int,
                      groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices (fit, validation) of a stratified split of the training labels; classes with a single
    image stay in the fitting part. Multi-label y (n, C): a plain seeded split. `groups`: see `_images`."""
    if (images := _images(groups)) is not None:
        first, inverse = images
        fit, held = _validation_split(y[first], fraction, seed)
        return _rows_of(fit, inverse), _rows_of(held, inverse)
    rng = np.random.default_rng(seed)
    if y.ndim > 1:
        order = rng.permutation(len(y))
        cut = max(1, int(round(len(y) * fraction)))
        return np.sort(order[cut:]), np.sort(order[:cut])
    fit, validation = [], []
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        take = int(round(len(members) * fraction)) if len(members) > 1 else 0
        take = min(max(take, 1 if len(members) > 1 else 0), len(members) - 1)
        validation.extend(members[:take])
        fit.extend(members[take:])
    return np.sort(np.asarray(fit, dtype=np.int64)), np.sort(np.asarray(validation, dtype=np.int64))


class _TorchLogistic:
    """Multinomial logistic regression, C * sum(log-loss) + ||W||^2 / 2 (scikit-learn's objective,
    intercept unpenalised), minimised by torch's full-batch L-BFGS on `device`."""

    def __init__(self, c: float, max_iter: int, device: str):
        self.c, self.max_iter, self.device = c, max_iter, device

    def fit(self, x: np.ndarray, y: np.ndarray, n_classes: int, warm: tuple | None = None):
        import torch

        features = torch.as_tensor(x, dtype=torch.float64, device=self.device)
        labels = torch.as_tensor(y, dtype=torch.int64, device=self.device)
        d = features.shape[1]
        weight = torch.zeros((d, n_classes), dtype=torch.float64, device=self.device, requires_grad=True)
        bias = torch.zeros(n_classes, dtype=torch.float64, device=self.device, requires_grad=True)
        if warm is not None:
            with torch.no_grad():
                weight.copy_(torch.as_tensor(warm[0], device=self.device))
                bias.copy_(torch.as_tensor(warm[1], device=self.device))
        optimizer = torch.optim.LBFGS([weight, bias], lr=1, max_iter=self.max_iter, tolerance_grad=1e-7,
                                      tolerance_change=1e-10, history_size=20, line_search_fn="strong_wolfe")
        n = len(labels)

        def closure():
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(features @ weight + bias, labels, reduction="sum")
            objective = (self.c * loss + 0.5 * (weight * weight).sum()) / n
            objective.backward()
            return objective

        optimizer.step(closure)
        self.coef_, self.intercept_ = weight.detach().cpu().numpy(), bias.detach().cpu().numpy()
        return self

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64) @ self.coef_ + self.intercept_


class LinearProbe:
    """A linear classifier on frozen features, its L2 strength chosen on a validation split.

    Parameters
    ----------
    c_grid : the values of C (inverse L2 strength) tried on the validation split.
    svm_c : a fixed C (no validation split), as the few-shot probe uses.
    validation_fraction : the share of each class's training images held out to choose C.
    solver : "auto" (torch on a GPU, else scikit-learn), "sklearn" or "torch".
    """

    name = "linear_probe"

    def __init__(self, c_grid: Sequence[float] = DEFAULT_PROBE_C_GRID, c: float | None = None,
                 validation_fraction: float = 0.2, max_iter: int = 1000, solver: str = "auto", device: str = "cpu",
                 seed: int = 0):
        self.c_grid, self.c, self.validation_fraction = tuple(c_grid), c, validation_fraction
        self.max_iter, self.device, self.seed = max_iter, device, seed
        self.solver = resolve_solver(solver, device)

    def settings(self) -> dict[str, Any]:
        return {"protocol": self.name, "protocol_version": LINEAR_PROBE_VERSION,
                "classifier": "multinomial logistic regression (L-BFGS)", "solver": self.solver,
                "c_grid": list(self.c_grid), "fixed_c": self.c, "validation_fraction": self.validation_fraction,
                "validation": "stratified split of the training images, seeded", "seed": self.seed,
                "max_iter": self.max_iter, "features": "L2-normalised"}

    def _fit(self, x, y, c, n_classes, warm=None):
        if self.solver == "torch":
            return _TorchLogistic(c, self.max_iter, self.device).fit(x, y, n_classes, warm)
        from sklearn.linear_model import LogisticRegression

        with warnings.catch_warnings(), blas_threads(x):
            warnings.simplefilter("ignore")   # ConvergenceWarning at the grid's weak end
            return LogisticRegression(C=c, max_iter=self.max_iter).fit(x, y)

    def _predict(self, model, x, present):
        scores = model.decision_function(x)
        if scores.ndim == 1:   # scikit-learn with two classes: one column
            return present[(scores > 0).astype(int)]
        labels = getattr(model, "classes_", np.arange(scores.shape[1]))
        return np.asarray(labels)[scores.argmax(axis=1)]

    def run(self, train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
            classes: Sequence[str], *, multilabel: bool = False, train_groups: np.ndarray | None = None,
            **_ignored) -> ProtocolOutcome:
        _check(train_x, train_y, test_x, test_y)
        x, test = postprocess(train_x).astype(np.float64), postprocess(test_x).astype(np.float64)
        y = np.asarray(train_y)
        if multilabel:
            return self._run_multilabel(x, y, test, np.asarray(test_y), classes, train_groups)
        present = np.unique(y)
        chosen, validation_scores, warm = self.c, {}, {}
        if chosen is None:
            fit, held = _validation_split(y, self.validation_fraction, self.seed, groups=train_groups)
            if len(held) == 0 or len(np.unique(y[fit])) < 2:
                chosen = 1.0
            else:
                for c in self.c_grid:   # torch: each C warm-started from the previous C's optimum
                    model = self._fit(x[fit], y[fit], c, len(classes), warm.get("last"))
                    if self.solver == "torch":
                        warm[c] = warm["last"] = (model.coef_, model.intercept_)
                    validation_scores[str(c)] = _score(y[held], self._predict(model, x[held], present), classes)[0]
                chosen = max(self.c_grid, key=lambda c: (validation_scores[str(c)], -c))
        if len(present) < 2:
            raise EngineError("a linear probe needs training images of at least two classes")
        model = self._fit(x, y, chosen, len(classes), warm.get(chosen))
        predictions = self._predict(model, test, present)
        score, per_class = _score(np.asarray(test_y), predictions, classes)
        settings = {**self.settings(), "chosen_c": float(chosen), "validation_scores": validation_scores,
                    "metric": "mean_class_accuracy"}
        return ProtocolOutcome(score, per_class, settings, {"predictions": predictions},
                               UnitOutputs("predictions", predictions, labels=np.asarray(test_y)))

    def _binary_scores(self, x, y, test, c) -> np.ndarray:
        if self.solver == "torch":
            model = _TorchLogistic(c, self.max_iter, self.device).fit(x, y, 2)
            margin = model.decision_function(test)
            return margin[:, 1] - margin[:, 0]
        from sklearn.linear_model import LogisticRegression

        with warnings.catch_warnings(), blas_threads(x):
            warnings.simplefilter("ignore")
            return LogisticRegression(C=c, max_iter=self.max_iter).fit(x, y).decision_function(test)

    def _run_multilabel(self, x, y, test, test_y, classes, groups=None) -> ProtocolOutcome:
        from workers.metrics import voc07_ap

        scores = np.zeros((len(test), len(classes)))
        chosen_all, validation_all = {}, {}
        fit, held = _validation_split(y, self.validation_fraction, self.seed, groups=groups)
        for k, name in enumerate(classes):
            keep = y[:, k] != 0
            target = (y[:, k] == 1).astype(int)
            if len(np.unique(target[keep])) < 2:
                raise EngineError(f"class {name}: the training split needs positives and negatives")
            chosen, tried = self.c, {}
            fit_k, held_k = fit[keep[fit]], held[keep[held]]
            if chosen is None and len(np.unique(target[fit_k])) == 2 and len(np.unique(target[held_k])) == 2:
                for c in self.c_grid:
                    tried[str(c)] = voc07_ap(self._binary_scores(x[fit_k], target[fit_k], x[held_k], c),
                                             np.where(target[held_k] == 1, 1, -1))
                chosen = max(self.c_grid, key=lambda c: (tried[str(c)], -c))
            chosen = 1.0 if chosen is None else chosen
            scores[:, k] = self._binary_scores(x[keep], target[keep], test, chosen)
            chosen_all[str(name)], validation_all[str(name)] = float(chosen), tried
        score, per_class = _multilabel_score(test_y, scores, classes)
        settings = {**self.settings(), "classifier": "binary logistic regression per class (L-BFGS)",
                    "chosen_c": chosen_all, "validation_scores": validation_all, "metric": "voc07_map",
                    "difficult": "left out of training"}
        return ProtocolOutcome(score, per_class, settings, {"scores": scores}, UnitOutputs("scores", scores,
                                                                                           labels=test_y))


# ---- few-shot -----------------------------------------------------------------------------------

def few_shot_draw(y: np.ndarray, shots: int, seed: int, groups: np.ndarray | None = None) -> np.ndarray:
    """Indices of `shots` training images per class (all of a smaller class), drawn with `seed`;
    with `groups`, of all the views of those images (`_images`)."""
    if (images := _images(groups)) is not None:
        first, inverse = images
        return _rows_of(few_shot_draw(y[first], shots, seed), inverse)
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(y == label))[:shots] for label in np.unique(y)]
    return np.sort(np.concatenate(chosen))


class FewShot:
    """n-shot linear probes: `shots` images per class, `draws` seeded draws each, at a fixed C.

    The headline is the mean over draws at `headline` shots; the settings hold mean and standard
    deviation for every n. The intervals are drawn from the headline's predictions, pooled over draws.
    """

    name = "fewshot"

    def __init__(self, shots: Sequence[int] = (1, 2, 5, 10), draws: int = 5, headline: int = 5, c: float = 1.0,
                 seed: int = 0, solver: str = "auto", device: str = "cpu"):
        if headline not in shots:
            raise EngineError(f"the headline {headline}-shot must be one of the shots {list(shots)}")
        self.shots, self.draws, self.headline, self.c, self.seed = tuple(shots), draws, headline, c, seed
        self.probe = LinearProbe(c=c, solver=solver, device=device, seed=seed)

    def settings(self) -> dict[str, Any]:
        return {"protocol": self.name, "protocol_version": FEW_SHOT_VERSION, "shots": list(self.shots),
                "draws": self.draws, "headline_shots": self.headline, "seed": self.seed,
                "draw_seeds": "seed + 1000 * shots + draw", "classifier": "linear probe at fixed C",
                "c": self.c, "solver": self.probe.solver}

    def run(self, train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
            classes: Sequence[str], *, multilabel: bool = False, train_groups: np.ndarray | None = None,
            **_ignored) -> ProtocolOutcome:
        if multilabel:
            raise EngineError("few-shot probes are for single-label benchmarks")
        _check(train_x, train_y, test_x, test_y)
        y = np.asarray(train_y)
        groups = None if train_groups is None else np.asarray(train_groups)
        summary, headline_predictions, headline_scores = {}, [], []
        for shots in self.shots:
            scores = []
            for draw in range(self.draws):
                chosen = few_shot_draw(y, shots, self.seed + 1000 * shots + draw, groups=groups)
                outcome = self.probe.run(train_x[chosen], y[chosen], test_x, test_y, classes,
                                         train_groups=None if groups is None else groups[chosen])
                scores.append(outcome.score)
                if shots == self.headline:
                    headline_predictions.append(outcome.details["predictions"])
                    headline_scores.append(outcome.score)
            summary[str(shots)] = {"mean": float(np.mean(scores)), "std": float(np.std(scores)),
                                   "scores": [float(s) for s in scores]}
        settings = {**self.settings(), "metric": "mean_class_accuracy", "n_shot": summary}
        predictions = np.stack(headline_predictions)    # (draws, m)
        score = float(np.mean(headline_scores))
        _, per_class = _score(np.asarray(test_y), predictions[0], classes)
        return ProtocolOutcome(score, per_class, settings, {"predictions": predictions},
                               UnitOutputs("draws", predictions, labels=np.asarray(test_y)))
