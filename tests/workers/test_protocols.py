"""Protocols: feature normalisation, linear SVM classification (single/multi-label), cosine retrieval."""
from __future__ import annotations

import numpy as np
import pytest

from workers.contract import EngineError
from workers.datasets.base import ImageRecord, RetrievalQuery
from workers.protocols import PROTOCOL_VERSION, CosineRetrieval, LinearSVMClassification, postprocess


def test_signed_power_then_l2():
    x = np.array([[4.0, -9.0, 0.0]])
    out = postprocess(x, power_norm=0.5)
    np.testing.assert_allclose(out, [[2 / np.sqrt(13), -3 / np.sqrt(13), 0.0]], rtol=1e-6)
    np.testing.assert_allclose(postprocess(x, l2=False, power_norm=2.0), [[16.0, -81.0, 0.0]])
    assert np.linalg.norm(postprocess(np.ones((2, 5, 3))), axis=-1) == pytest.approx(np.ones((2, 5)))
    with pytest.raises(EngineError):
        postprocess(x, power_norm=0)


def _blobs(n_per_class=20, classes=3, dim=6, spread=0.3, seed=0):
    centres = np.random.default_rng(42).normal(size=(classes, dim)) * 3
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per_class)
    return centres[y] + rng.normal(scale=spread, size=(len(y), dim)), y


@pytest.mark.parametrize("multiclass", ["ovr", "ovo"])
def test_linear_svm_separates_blobs_and_records_its_choices(multiclass):
    x, y = _blobs()
    xt, yt = _blobs(seed=1)
    xt = xt[:50]   # classes of different test sizes: the mean class accuracy is per class
    yt = yt[:50]
    outcome = LinearSVMClassification(multiclass=multiclass).run(x, y, xt, yt, ["a", "b", "c"])
    assert outcome.score == pytest.approx(1.0)
    assert set(outcome.per_class) == {"a", "b", "c"}
    assert outcome.settings["chosen_c"] in (0.01, 0.1, 1.0, 10.0)
    assert set(outcome.settings["cv_scores"]) == {"0.01", "0.1", "1.0", "10.0"}
    assert outcome.settings["multiclass"] == multiclass
    assert outcome.settings["protocol_version"] == PROTOCOL_VERSION


def test_mean_class_accuracy_weighs_classes_equally():
    x = np.array([[1.0], [1.1], [1.2], [-1.0], [-1.1]])
    y = np.array([0, 0, 0, 1, 1])
    # test: 9 images of class 0 all right, 1 image of class 1 (placed on class 0's side) wrong
    xt = np.vstack([np.full((9, 1), 1.0), [[0.9]]])
    yt = np.array([0] * 9 + [1])
    outcome = LinearSVMClassification(svm_c=1.0).run(x, y, xt, yt, ["zero", "one"])
    assert outcome.score == pytest.approx(0.5)          # overall accuracy would be 0.9
    assert outcome.per_class == {"zero": 1.0, "one": 0.0}
    assert outcome.settings["chosen_c"] == 1.0 and outcome.settings["cv_scores"] == {}


def test_multilabel_svms_leave_difficult_images_out_of_training():
    rng = np.random.default_rng(0)
    pos = rng.normal(loc=[2, 0], scale=0.3, size=(20, 2))
    neg = rng.normal(loc=[-2, 0], scale=0.3, size=(20, 2))
    difficult = rng.normal(loc=[2, 0], scale=0.3, size=(60, 2))   # look like positives, labelled 0
    x = np.vstack([pos, neg, difficult])
    labels = np.concatenate([np.ones(20), -np.ones(20), np.zeros(60)]).astype(int)[:, None]
    xt = np.vstack([rng.normal(loc=[2, 0], scale=0.3, size=(10, 2)), rng.normal(loc=[-2, 0], scale=0.3, size=(10, 2))])
    yt = np.concatenate([np.ones(10), -np.ones(10)]).astype(int)[:, None]
    outcome = LinearSVMClassification(svm_c=1.0).run(x, labels, xt, yt, ["thing"], multilabel=True)
    assert outcome.score == pytest.approx(1.0)
    assert outcome.settings["metric"] == "voc07_map"
    assert (outcome.details["scores"][:10, 0] > 0).all()   # test positives are classified positive
    # had the difficult images been trained as negatives, the SVM would call the positives negative
    naive = labels.copy()
    naive[naive == 0] = -1
    worse = LinearSVMClassification(svm_c=1.0).run(x, naive, xt, yt, ["thing"], multilabel=True)
    assert (worse.details["scores"][:10, 0] < 0).mean() > 0.5


def _queries(ids_by_group):
    queries = []
    for group in ids_by_group:
        record = ImageRecord(group[0])
        queries.append(RetrievalQuery(id=group[0], image=record, good=list(group[1:])))
    return queries


def test_cosine_ranking_and_holidays_map():
    # two groups; query 100000 ranks its group's 100001 first, then the other group's images
    ids = ["100000", "100001", "100100", "100101"]
    db = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.6, 0.4]])
    retrieval = CosineRetrieval()
    order = retrieval.rank(db, db[[0, 2]])
    assert [ids[i] for i in order[0]] == ["100000", "100001", "100101", "100100"]
    outcome = retrieval.run(db, ids, db[[0, 2]], ["100000", "100100"],
                            _queries([["100000", "100001"], ["100100", "100101"]]), "holidays_map")
    # query 100100: ranking without itself is 100101 (rank 0) -> AP 1; query 100000: AP 1
    assert outcome.score == pytest.approx(1.0)
    db[3] = [1.0, 0.0]   # 100101 now looks like group 1000: query 100100 finds it at rank 2
    outcome = retrieval.run(db, ids, db[[0, 2]], ["100000", "100100"],
                            _queries([["100000", "100001"], ["100100", "100101"]]), "holidays_map")
    assert outcome.per_class["100100"] == pytest.approx((0 + 1 / 3) / 2)   # trapezoid: precision 0/2 before, 1/3 after
    assert outcome.per_class["100000"] == pytest.approx((0 + 1 / 2) / 2)   # 100101 now ranks first
    assert outcome.score == pytest.approx((1 / 4 + 1 / 6) / 2)


def test_ukbench_ns_uses_image_numbers():
    ids = [f"ukbench{i:05d}" for i in range(8)]
    features = np.repeat(np.eye(2), 4, axis=0) + np.linspace(0, 0.01, 8)[:, None]
    outcome = CosineRetrieval().run(features, ids, features, ids, [], "ukbench_ns")
    assert outcome.score == pytest.approx(4.0)


def test_oxford_map_with_junk_and_named_queries():
    ids = ["a", "b", "j", "x"]
    db = np.array([[1.0, 0.0], [0.7, 0.3], [0.95, 0.05], [0.0, 1.0]])
    query = RetrievalQuery(id="a", image=ImageRecord("a", box=(0, 0, 1, 1)), good=["a", "b"], junk=["j"],
                           name="landmark_1")
    outcome = CosineRetrieval().run(db, ids, db[[0]], ["a"], [query], "oxford_map")
    assert outcome.score == pytest.approx(1.0)   # the junk image in between is skipped
    assert list(outcome.per_class) == ["landmark_1"]


def test_pca_whitening_needs_a_disjoint_fit():
    rng = np.random.default_rng(0)
    retrieval = CosineRetrieval(whitening="pca", whitening_dim=3)
    with pytest.raises(EngineError, match="fit"):
        retrieval.rank(rng.normal(size=(5, 4)), rng.normal(size=(2, 4)))
    retrieval.fit(rng.normal(size=(50, 4)), source="held-out set")
    assert retrieval.rank(rng.normal(size=(5, 4)), rng.normal(size=(2, 4))).shape == (2, 5)
    assert retrieval.settings()["whitening_learned_on"] == "held-out set"


def test_top_k_ranking_is_the_head_of_the_full_ranking():
    rng = np.random.default_rng(3)
    db = rng.normal(size=(50, 6))
    db[7] = db[3]                      # an exact tie: database order decides
    retrieval = CosineRetrieval(chunk=8)   # several chunks
    full = retrieval.rank(db, db[:20])
    head = retrieval.rank(db, db[:20], top_k=4)
    assert head.shape == (20, 4)
    np.testing.assert_array_equal(head, full[:, :4])


def test_ukbench_score_from_the_top_4_matches_a_full_ranking_count():
    rng = np.random.default_rng(4)
    centres = rng.normal(size=(6, 16))
    features = np.repeat(centres, 4, axis=0) + 0.8 * rng.normal(size=(24, 16))
    ids = [f"ukbench{i:05d}" for i in range(24)]
    outcome = CosineRetrieval().run(features, ids, features, ids, [], "ukbench_ns")
    full = CosineRetrieval().rank(features, features)
    expected = np.mean([sum(1 for j in row[:4] if j // 4 == q // 4) for q, row in enumerate(full)])
    assert outcome.score == pytest.approx(expected)
    assert 0 < outcome.score < 4
