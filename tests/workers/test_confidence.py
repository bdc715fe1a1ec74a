"""Bootstrap intervals of measured scores and the paired comparison behind the boards' rank groups, on
simulated classifiers whose true accuracy is known; and bundles that recompute every protocol's score
and interval."""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from workers import confidence
from workers.bundle import write_bundle
from workers.contract import EvaluationSpec
from workers.evaluate import run_evaluation
from workers.protocols import UnitOutputs


def simulated(n: int, accuracy: float, seed: int, classes: int = 4) -> UnitOutputs:
    """Predictions of a classifier right with probability `accuracy` on balanced classes."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    wrong = (labels + rng.integers(1, classes, size=n)) % classes
    predictions = np.where(rng.random(n) < accuracy, labels, wrong)
    return UnitOutputs("predictions", predictions, labels=labels)


def test_the_interval_is_recorded_with_its_settings_and_holds_the_score():
    units = simulated(400, 0.8, seed=1)
    interval = confidence.bootstrap_interval(units)
    score = confidence._statistic(units, np.arange(400))
    assert interval["low"] < score < interval["high"]
    assert {k: interval[k] for k in ("level", "resamples", "seed", "unit", "units")} == {
        "level": 0.95, "resamples": 1000, "seed": 0, "unit": "test images", "units": 400}
    assert confidence.bootstrap_interval(units) == interval   # seeded


def test_intervals_shrink_as_the_test_set_grows():
    widths = [(lambda i: i["high"] - i["low"])(confidence.bootstrap_interval(simulated(n, 0.8, seed=2)))
              for n in (100, 400, 1600)]
    assert widths[0] > widths[1] > widths[2]
    assert widths[0] / widths[2] == pytest.approx(4, rel=0.35)   # ~ 1 / sqrt(n)


def test_intervals_cover_the_true_accuracy_about_95_percent_of_the_time():
    covered = 0
    trials = 120
    for seed in range(trials):
        interval = confidence.bootstrap_interval(simulated(300, 0.7, seed=100 + seed), resamples=400, seed=seed)
        covered += interval["low"] <= 0.7 <= interval["high"]
    assert 0.88 <= covered / trials <= 0.99


def test_the_paired_bootstrap_separates_real_differences_and_not_noise():
    base = simulated(1000, 0.75, seed=3)
    twin = UnitOutputs("predictions", base.values.copy(), labels=base.labels)
    twin.values[:3] = (twin.labels[:3] + 1) % 4          # 3 of 1,000 images differ
    better = UnitOutputs("predictions", np.where(np.arange(1000) < 150, base.labels, base.values), labels=base.labels)
    assert not confidence.separable(base, twin)
    assert confidence.separable(better, base)
    other_test_set = simulated(999, 0.75, seed=4)
    assert not confidence.comparable(base, other_test_set)


def test_per_query_intervals_leave_out_queries_without_positives():
    units = UnitOutputs("per_query", np.array([0.5, np.nan, 0.7, 0.9, 0.6]))
    interval = confidence.bootstrap_interval(units)
    assert interval["unit"] == "queries" and 0.5 <= interval["low"] <= interval["high"] <= 0.9


@pytest.mark.parametrize("protocol", ["svm", "knn", "linear_probe", "fewshot"])
def test_a_bundle_recomputes_each_protocols_score_and_interval(digits_features, tmp_path, protocol):
    result = run_evaluation(EvaluationSpec(benchmark="digits", features=digits_features, protocols=[protocol],
                                           output_dir=tmp_path / "out"))
    entry = result.protocols[0]
    assert entry["name"] == protocol and entry["confidence_interval"]["low"] < entry["score"]
    target = tmp_path / "bundle.zip"
    write_bundle(target, features_npz=result.artifacts["features.npz"], protocol=entry["settings"],
                 provenance=result.provenance, score=entry["score"], metric=entry["metric"],
                 units_npz=entry["artifacts"]["units.npz"], confidence_interval=entry["confidence_interval"])
    with zipfile.ZipFile(target) as archive:
        archive.extractall(tmp_path / "bundle")
    run = subprocess.run([sys.executable, "reproduce.py"], cwd=tmp_path / "bundle", capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["match"] and report["units_match"] and report["protocol"] == protocol
    assert report["confidence_interval"] == pytest.approx([entry["confidence_interval"]["low"],
                                                           entry["confidence_interval"]["high"]], abs=1e-12)
