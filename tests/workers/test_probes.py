"""Today's classification protocols on frozen features: weighted k-NN, the linear probe, few-shot;
hand-worked cases, agreement with scikit-learn, and the catalog that names them."""
from __future__ import annotations

import numpy as np
import pytest

from workers import protocol_catalog
from workers.contract import EngineError
from workers.probes import FewShot, KNNClassification, LinearProbe, few_shot_draw


def blobs(n_per_class=30, classes=3, dim=8, spread=0.6, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * 3
    x = np.concatenate([centres[c] + spread * rng.normal(size=(n_per_class, dim)) for c in range(classes)])
    y = np.repeat(np.arange(classes), n_per_class)
    return x.astype(np.float32), y


def test_knn_weights_votes_by_exp_similarity_over_temperature():
    # one training image identical to the test image (class 0), two at cosine 0.6 (class 1): the
    # plain majority of the 3 neighbours says 1, the exp(s / 0.07) weights say 0, a huge T says 1 again
    train = np.array([[1, 0], [0.6, 0.8], [0.6, -0.8]], dtype=np.float32)
    train_y = np.array([0, 1, 1])
    test = np.array([[1, 0]], dtype=np.float32)
    votes = KNNClassification(k=3, ks=(3,)).votes(train, train_y, test, 2, multilabel=False)[3]
    assert votes[0] == pytest.approx([np.exp(1 / 0.07), 2 * np.exp(0.6 / 0.07)])
    assert votes[0].argmax() == 0
    flat = KNNClassification(k=3, temperature=1e6, ks=(3,)).votes(train, train_y, test, 2, multilabel=False)[3]
    assert flat[0].argmax() == 1


def test_knn_reports_every_k_and_scores_the_headline():
    x, y = blobs()
    outcome = KNNClassification().run(x[::2], y[::2], x[1::2], y[1::2], ["a", "b", "c"])
    assert outcome.score == 1.0 and outcome.settings["k"] == 20 and outcome.settings["temperature"] == 0.07
    assert set(outcome.settings["k_scores"]) == {"10", "20", "100", "200"}   # capped at the 45 training images
    assert outcome.details["predictions"].tolist() == y[1::2].tolist()
    assert outcome.units.kind == "predictions"


def test_knn_on_multilabel_sets_scores_each_class_by_its_neighbours_weight():
    rng = np.random.default_rng(1)
    labels = rng.choice([1, -1], size=(120, 3))                         # which of 3 classes an image has
    x = (labels + 0.3 * rng.normal(size=(120, 3))).astype(np.float32)   # its features point that way
    outcome = KNNClassification(k=5, ks=(5,)).run(x[:90], labels[:90], x[90:], labels[90:], ["p", "q", "r"],
                                                  multilabel=True)
    assert outcome.settings["metric"] == "voc07_map" and outcome.units.kind == "scores"
    assert outcome.score > 0.9   # chance (scores unrelated to the labels) is about 0.5


def test_the_linear_probe_agrees_with_scikit_learn_and_torch_solves_the_same_objective():
    from sklearn.linear_model import LogisticRegression

    x, y = blobs(spread=1.5, seed=3)
    train, test = np.arange(0, 90, 2), np.arange(1, 90, 2)
    reference = LinearProbe(solver="sklearn").run(x[train], y[train], x[test], y[test], ["a", "b", "c"])
    torch_probe = LinearProbe(solver="torch", device="cpu").run(x[train], y[train], x[test], y[test], ["a", "b", "c"])
    assert abs(reference.score - torch_probe.score) <= 0.005
    assert reference.settings["chosen_c"] == torch_probe.settings["chosen_c"]
    # the reference is scikit-learn's LogisticRegression at the chosen C, on L2-normalised features
    normalised = x / np.linalg.norm(x, axis=1, keepdims=True)
    sklearn = LogisticRegression(C=reference.settings["chosen_c"], max_iter=1000).fit(normalised[train], y[train])
    assert reference.details["predictions"].tolist() == sklearn.predict(normalised[test]).tolist()


def test_the_probes_c_is_chosen_without_looking_at_the_test_split():
    x, y = blobs(spread=2.0, seed=5)
    train, test = np.arange(0, 90, 2), np.arange(1, 90, 2)
    honest = LinearProbe().run(x[train], y[train], x[test], y[test], ["a", "b", "c"])
    shuffled = LinearProbe().run(x[train], y[train], x[test], np.random.default_rng(0).permutation(y[test]),
                                 ["a", "b", "c"])
    assert honest.settings["chosen_c"] == shuffled.settings["chosen_c"]
    assert honest.settings["validation_scores"] == shuffled.settings["validation_scores"]
    assert honest.details["predictions"].tolist() == shuffled.details["predictions"].tolist()


def test_few_shot_draws_n_images_per_class_with_seeds_and_reports_mean_and_std():
    x, y = blobs(n_per_class=20, spread=1.0)
    draw = few_shot_draw(y, 2, seed=7)
    assert np.bincount(y[draw]).tolist() == [2, 2, 2] and draw.tolist() == few_shot_draw(y, 2, seed=7).tolist()
    assert draw.tolist() != few_shot_draw(y, 2, seed=8).tolist()
    outcome = FewShot(shots=(1, 5), draws=3, headline=5).run(x[::2], y[::2], x[1::2], y[1::2], ["a", "b", "c"])
    summary = outcome.settings["n_shot"]
    assert set(summary) == {"1", "5"} and len(summary["5"]["scores"]) == 3
    assert outcome.score == pytest.approx(summary["5"]["mean"])
    assert summary["5"]["std"] == pytest.approx(np.std(summary["5"]["scores"]))
    assert outcome.units.kind == "draws" and outcome.units.values.shape == (3, 30)
    with pytest.raises(EngineError, match="single-label"):
        FewShot().run(x, np.ones((60, 3)), x, np.ones((60, 3)), ["a", "b", "c"], multilabel=True)


def test_jittered_views_of_one_image_stay_together_in_validation_splits_and_few_shot_draws():
    from workers.probes import _validation_split

    y = np.repeat(np.arange(3), 10)            # 30 images, 3 classes
    views_y, groups = np.repeat(y, 2), np.repeat(np.arange(30), 2)   # 2 jittered views per image
    fit, held = _validation_split(views_y, 0.2, 0, groups=groups)
    assert not set(groups[fit]) & set(groups[held])          # no image on both sides of the split
    assert sorted(np.concatenate([fit, held]).tolist()) == list(range(60))
    assert np.bincount(views_y[held]).tolist() == [4, 4, 4]   # 2 images per class, each with both views
    draw = few_shot_draw(views_y, 2, seed=7, groups=groups)
    assert len(set(groups[draw])) == 6 and np.bincount(views_y[draw]).tolist() == [4, 4, 4]
    x, _ = blobs(n_per_class=20, spread=1.0)
    views_x = np.repeat(x, 2, axis=0) + 0.01 * np.random.default_rng(0).normal(size=(120, 8)).astype(np.float32)
    outcome = FewShot(shots=(1, 2), draws=2, headline=2).run(
        views_x, np.repeat(np.repeat(np.arange(3), 20), 2), x, np.repeat(np.arange(3), 20), ["a", "b", "c"],
        train_groups=np.repeat(np.arange(60), 2))
    assert outcome.settings["n_shot"]["2"]["mean"] > 0.5


def test_the_catalog_gives_each_benchmark_its_defaults_and_refuses_the_rest():
    assert protocol_catalog.resolve("classification", "mean_class_accuracy", None) == ["svm", "knn", "linear_probe"]
    assert protocol_catalog.resolve("retrieval", "holidays_map", None) == ["ranking"]
    assert protocol_catalog.resolve("retrieval", "revisited_map", None) == ["easy", "medium", "hard"]
    assert protocol_catalog.resolve("classification", "voc07_map", ["linear_probe", "knn", "knn"]) == [
        "knn", "linear_probe"]
    with pytest.raises(EngineError, match="digits cannot run protocol 'hard'; it offers svm, knn"):
        protocol_catalog.resolve("classification", "mean_class_accuracy", ["hard"], benchmark="digits")
    with pytest.raises(EngineError, match="unknown protocol 'svn'"):
        protocol_catalog.resolve("classification", "mean_class_accuracy", ["svn"])
