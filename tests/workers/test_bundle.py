"""Reproduction bundles, without Django: the standalone reproduce.py re-scores what the engine scored.

reproduce.py carries copies of the official metrics (it must run with numpy and scikit-learn alone),
so these tests also hold the copies to the engine's own metrics on random data.
"""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from workers import metrics
from workers.bundle import REPRODUCE_PY, write_bundle
from workers.contract import EvaluationSpec
from workers.evaluate import run_evaluation


@pytest.fixture(scope="module")
def reproduce_module():
    namespace: dict = {"__name__": "reproduce", "__file__": "reproduce.py"}
    exec(compile(REPRODUCE_PY, "reproduce.py", "exec"), namespace)
    return namespace


def test_copied_metrics_agree_with_the_engine(reproduce_module):
    rng = np.random.default_rng(7)
    for _ in range(50):
        n = int(rng.integers(5, 60))
        scores = np.round(rng.normal(size=n), 1)            # ties
        labels = rng.choice([1, -1, 0], size=n, p=[0.3, 0.6, 0.1])
        labels[0] = 1
        assert reproduce_module["voc07_ap"](scores, labels) == pytest.approx(metrics.voc07_ap(scores, labels))
        y_true, y_pred = rng.integers(0, 4, size=n), rng.integers(0, 4, size=n)
        assert reproduce_module["mean_class_accuracy"](y_true, y_pred) == pytest.approx(
            metrics.mean_class_accuracy(y_true, y_pred))
        names = [f"x{i}" for i in range(n)]
        ranked = list(rng.permutation(names))
        good, ok, junk = names[:3], names[3:5], names[5:8]
        assert reproduce_module["oxford_ap"](ranked, good, ok, junk) == pytest.approx(
            metrics.oxford_ap(ranked, good, ok, junk))
    database = [f"{g:04d}{i:02d}" for g in range(6) for i in range(3)]
    rankings = {q: list(rng.permutation(database)) for q in database if q.endswith("00")}
    assert reproduce_module["holidays_map"](rankings, database) == pytest.approx(
        metrics.holidays_map(rankings, database=database))


def _unzipped_bundle(result, tmp_path):
    target = tmp_path / "bundle.zip"
    write_bundle(target, features_npz=result.artifacts["features.npz"], protocol=result.protocol,
                 provenance=result.provenance, score=result.score, metric=result.metric)
    folder = tmp_path / "unzipped"
    with zipfile.ZipFile(target) as archive:
        archive.extractall(folder)
    return folder


def _run_reproduce(folder) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "reproduce.py"], cwd=folder, capture_output=True, text=True,
                          timeout=300, check=False)


def _bundle_and_reproduce(result, tmp_path) -> dict:
    run = _run_reproduce(_unzipped_bundle(result, tmp_path))
    assert run.returncode == 0, run.stdout + run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_a_retrieval_bundle_reproduces_its_score(tmp_path):
    spec = EvaluationSpec(benchmark="skimage_holidays", model="efficientnet_lite0", random_init=True,
                          num_workers=0, output_dir=tmp_path / "out")
    result = run_evaluation(spec)
    reproduced = _bundle_and_reproduce(result, tmp_path)
    assert reproduced["match"] is True
    assert reproduced["score"] == pytest.approx(result.score, abs=1e-6)


def test_a_tampered_bundle_is_refused(tmp_path):
    spec = EvaluationSpec(benchmark="skimage_holidays", model="efficientnet_lite0", random_init=True,
                          num_workers=0, output_dir=tmp_path / "out")
    folder = _unzipped_bundle(run_evaluation(spec), tmp_path)
    protocol = json.loads((folder / "protocol.json").read_text())
    protocol["recorded_score"] = 0.123
    (folder / "protocol.json").write_text(json.dumps(protocol))
    run = _run_reproduce(folder)
    assert run.returncode != 0
    assert "checksum mismatch: protocol.json" in run.stderr


def test_pca_whitening_is_learned_on_another_benchmark_and_its_bundle_reproduces(tmp_path):
    from replicas import make_ukbench

    make_ukbench(tmp_path / "ukbench", groups=4)
    spec = EvaluationSpec(benchmark="skimage_holidays", model="efficientnet_lite0", random_init=True,
                          num_workers=0, output_dir=tmp_path / "out", whitening_benchmark="ukbench",
                          whitening_data=tmp_path / "ukbench", whitening_dim=8)
    result = run_evaluation(spec)
    assert result.protocol["whitening"] == "pca"
    assert result.protocol["whitening_learned_on"] == "ukbench (16 images)"
    with np.load(result.artifacts["features.npz"]) as stored:
        assert stored["database_features"].shape[1] == 8        # stored as ranked: whitened
    assert _bundle_and_reproduce(result, tmp_path)["match"] is True


def test_whitening_on_the_benchmark_itself_is_refused():
    from workers.contract import EngineError

    spec = EvaluationSpec(benchmark="skimage_holidays", model="efficientnet_lite0", random_init=True,
                          num_workers=0, whitening_benchmark="skimage_holidays")
    with pytest.raises(EngineError, match="disjoint"):
        run_evaluation(spec)
