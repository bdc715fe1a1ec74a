"""The torch solvers (workers/accelerated.py) against the scikit-learn reference, on the CPU.

The accelerated path must give the reference's results: the same SVM objective (decision values of a
fixed-C fit), the same C from the same CV folds where the CV scores are not tied, and the same score
to within 0.5 points (what a reproduction bundle tolerates for a torch-solved result).
"""
from __future__ import annotations

import json
import subprocess
import sys
import warnings
import zipfile

import numpy as np
import pytest

from workers.contract import EvaluationSpec
from workers.protocols import LinearSVMClassification, postprocess, resolve_solver

POINTS = 0.005


@pytest.fixture(scope="module")
def digits():
    """scikit-learn's 8x8 digit images, pixels as features (post-processed), a seeded 2:1 split."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = postprocess(x)
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:1200], order[1200:]
    return x[train], y[train], x[test], y[test], [str(k) for k in range(10)]


@pytest.fixture(scope="module")
def multilabel():
    """Synthetic VOC-like data: 6 classes, images with 1-3 of them, ~10% of labels "difficult" (0)."""
    rng = np.random.default_rng(3)
    n, d, k = 900, 48, 6
    prototypes = rng.normal(size=(k, d))
    present = rng.random((n, k)) < 0.25
    present[np.arange(n), rng.integers(0, k, n)] = True
    x = present @ prototypes * 0.35 + rng.normal(size=(n, d))
    labels = np.where(present, 1, -1)
    labels[rng.random((n, k)) < 0.1] = 0
    x = postprocess(x)
    return x[:600], labels[:600], x[600:], labels[600:], [f"c{j}" for j in range(k)]


def _untied(cv_scores: dict) -> bool:
    """The best C of the grid is ahead of the runner-up by more than solver noise."""
    values = sorted((v for v in cv_scores.values() if isinstance(v, float)), reverse=True)
    return len(values) > 1 and values[0] - values[1] > 1e-3


def _svm_objective(x, y_pm, c, coef, intercept):
    z = x @ coef + intercept
    return 0.5 * (coef @ coef + intercept ** 2) + c * np.sum(np.maximum(0, 1 - y_pm * z) ** 2)


@pytest.mark.parametrize("c", [0.1, 1.0, 10.0])
def test_torch_svm_minimises_linearsvcs_objective(digits, c):
    from sklearn.svm import LinearSVC

    from workers.accelerated import SVMSolver

    train_x, train_y, test_x, _, _ = digits
    positive = (train_y == 3).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = LinearSVC(C=c, dual="auto", max_iter=100000, tol=1e-8).fit(train_x, positive)
    expected = reference.decision_function(test_x)
    got = SVMSolver("cpu").decision_function(train_x, positive, test_x, c)
    assert np.max(np.abs(got - expected)) <= 1e-3 * np.max(np.abs(expected))
    # the same optimum of the same objective (bias regularised, as liblinear's intercept_scaling=1)
    x64 = train_x.astype(np.float64)
    ours = SVMSolver("cpu")
    import torch

    from workers.accelerated import _augment

    w = ours._shared(_augment(x64, "cpu", torch.float64), torch.as_tensor(np.where(positive, 1, -1)[:, None]),
                     torch.ones((len(x64), 1), dtype=torch.bool), [c]).numpy()[:, 0]
    y_pm = np.where(positive, 1, -1)
    assert _svm_objective(x64, y_pm, c, w[:-1], w[-1]) == pytest.approx(
        _svm_objective(x64, y_pm, c, reference.coef_[0], reference.intercept_[0]), rel=1e-6)


@pytest.mark.parametrize("multiclass", ["ovr", "ovo"])
def test_torch_svm_agrees_with_linearsvc_on_digits(digits, multiclass):
    reference = LinearSVMClassification(multiclass=multiclass, solver="sklearn").run(*digits)
    accelerated = LinearSVMClassification(multiclass=multiclass, solver="torch", device="cpu").run(*digits)
    assert abs(accelerated.score - reference.score) <= POINTS
    assert accelerated.settings["solver"] == "torch" and reference.settings["solver"] == "sklearn"
    assert accelerated.settings["svm"] != reference.settings["svm"]
    assert set(accelerated.settings["cv_scores"]) == set(reference.settings["cv_scores"])
    for c, value in reference.settings["cv_scores"].items():
        assert abs(accelerated.settings["cv_scores"][c] - value) <= POINTS
    if _untied(reference.settings["cv_scores"]):
        assert accelerated.settings["chosen_c"] == reference.settings["chosen_c"]
    agreement = np.mean(accelerated.details["predictions"] == reference.details["predictions"])
    assert agreement >= 0.99


def test_torch_svm_agrees_on_multilabel_with_difficult_images(multilabel):
    reference = LinearSVMClassification(solver="sklearn").run(*multilabel, multilabel=True)
    accelerated = LinearSVMClassification(solver="torch", device="cpu").run(*multilabel, multilabel=True)
    assert reference.settings["metric"] == accelerated.settings["metric"] == "voc07_map"
    assert abs(accelerated.score - reference.score) <= POINTS
    compared = 0
    for name, cv_scores in reference.settings["cv_scores"].items():
        for c, value in cv_scores.items():
            assert abs(accelerated.settings["cv_scores"][name][c] - value) <= POINTS
        if _untied(cv_scores):
            compared += 1
            assert accelerated.settings["chosen_c"][name] == reference.settings["chosen_c"][name], name
    assert compared >= 3   # the data make most classes' choice clear
    correlation = np.corrcoef(accelerated.details["scores"].ravel(), reference.details["scores"].ravel())[0, 1]
    assert correlation > 0.999


def test_torch_svm_at_a_fixed_c_and_with_groups(digits):
    train_x, train_y, test_x, test_y, classes = digits
    fixed = [LinearSVMClassification(svm_c=0.5, solver=s).run(*digits) for s in ("sklearn", "torch")]
    assert fixed[1].settings["chosen_c"] == 0.5 and abs(fixed[0].score - fixed[1].score) <= POINTS
    groups = np.arange(len(train_y)) // 2     # pairs of rows kept in one fold (StratifiedGroupKFold)
    grouped = [LinearSVMClassification(solver=s).run(*digits, train_groups=groups) for s in ("sklearn", "torch")]
    assert abs(grouped[0].score - grouped[1].score) <= POINTS
    for c, value in grouped[0].settings["cv_scores"].items():
        assert abs(grouped[1].settings["cv_scores"][c] - value) <= POINTS


@pytest.mark.parametrize("multilabel_set", [False, True])
def test_torch_knn_agrees_with_numpy(digits, multilabel, multilabel_set):
    from workers.probes import KNNClassification

    data, kwargs = (multilabel, {"multilabel": True}) if multilabel_set else (digits, {})
    reference = KNNClassification(solver="sklearn").run(*data, **kwargs)
    accelerated = KNNClassification(solver="torch", device="cpu").run(*data, **kwargs)
    assert accelerated.settings["solver"] == "torch"
    assert abs(accelerated.score - reference.score) <= POINTS
    for k, value in reference.settings["k_scores"].items():
        assert abs(accelerated.settings["k_scores"][k] - value) <= POINTS


def test_torch_linear_probe_agrees_with_sklearn(digits):
    from workers.probes import LinearProbe

    grid = (0.1, 1.0, 10.0)     # the torch L-BFGS is slow on 2 CPU cores at C = 100
    reference = LinearProbe(solver="sklearn", c_grid=grid).run(*digits)
    accelerated = LinearProbe(solver="torch", device="cpu", c_grid=grid).run(*digits)
    assert abs(accelerated.score - reference.score) <= POINTS
    if _untied(reference.settings["validation_scores"]):
        assert accelerated.settings["chosen_c"] == reference.settings["chosen_c"]


def test_auto_is_torch_on_cuda_and_sklearn_on_the_cpu():
    from workers.probes import FewShot, KNNClassification

    assert resolve_solver("auto", "cpu") == "sklearn" and resolve_solver("auto", "cuda") == "torch"
    assert LinearSVMClassification().settings()["solver"] == "sklearn"
    assert LinearSVMClassification(device="cuda").settings()["svm"].startswith("torch")
    assert KNNClassification(device="cuda:0").settings()["solver"] == "torch"
    assert FewShot(solver="torch").settings()["solver"] == "torch"
    with pytest.raises(Exception, match="unknown solver"):
        LinearSVMClassification(solver="cuml")


def test_the_engine_solves_with_torch_and_its_bundles_reproduce(digits_features, tmp_path):
    from workers.bundle import TORCH_SOLVER_TOLERANCE, write_bundle
    from workers.evaluate import run_evaluation

    protocols = ["svm", "knn"]
    runs = {solver: run_evaluation(EvaluationSpec(benchmark="digits", features=digits_features, protocols=protocols,
                                                  solver=solver, output_dir=tmp_path / solver))
            for solver in ("sklearn", "torch")}
    for index, name in enumerate(protocols):
        reference, entry = runs["sklearn"].protocols[index], runs["torch"].protocols[index]
        assert entry["name"] == name and entry["settings"]["solver"] == "torch"
        assert abs(entry["score"] - reference["score"]) <= POINTS
        target = tmp_path / f"{name}.zip"
        write_bundle(target, features_npz=runs["torch"].artifacts["features.npz"], protocol=entry["settings"],
                     provenance=runs["torch"].provenance, score=entry["score"], metric=entry["metric"],
                     units_npz=entry["artifacts"]["units.npz"], confidence_interval=entry["confidence_interval"])
        with zipfile.ZipFile(target) as archive:
            archive.extractall(tmp_path / name)
            assert json.loads(archive.read("protocol.json"))["tolerance"] == TORCH_SOLVER_TOLERANCE
        run = subprocess.run([sys.executable, "reproduce.py"], cwd=tmp_path / name, capture_output=True, text=True,
                             timeout=300)
        assert run.returncode == 0, run.stdout + run.stderr
        report = json.loads(run.stdout.strip().splitlines()[-1])
        assert report["match"] and abs(report["score"] - entry["score"]) <= TORCH_SOLVER_TOLERANCE
