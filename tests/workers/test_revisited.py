"""Revisited Oxford and Paris: revisitop's metric worked by hand and against a literal copy of its code,
the ground-truth pickle read without running anything, and the benchmark end to end (+1M too)."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from tests.workers.replicas import make_revisited
from tests.workers.test_models import _global_average_pool_onnx
from workers import safeload
from workers.benchmarks import load_dataset
from workers.contract import EvaluationSpec, UnsafeUpload
from workers.datasets.base import DatasetError
from workers.evaluate import run_evaluation
from workers.metrics import revisited_map

# One query over a database of five, ranked 2, 0, 4, 1, 3; easy = {0}, hard = {4}, junk = {1}.
RANKS = np.array([[2], [0], [4], [1], [3]])
GND = [{"easy": [0], "hard": [4], "junk": [1]}]


def test_easy_medium_and_hard_worked_by_hand():
    scores = revisited_map(RANKS, GND)
    # Easy: positive 0 at position 1 (junk 1 and 4 after it): AP = (0/1 + 1/2) / 2
    assert scores["easy"]["map"] == pytest.approx(0.25)
    assert (scores["easy"]["mp@1"], scores["easy"]["mp@5"], scores["easy"]["mp@10"]) == (0.0, 0.5, 0.5)
    # Medium: positives 0 and 4 at positions 1 and 2: AP = [(0 + 1/2) + (1/2 + 2/3)] / 4
    assert scores["medium"]["map"] == pytest.approx((0.5 + 0.5 + 2 / 3) / 4)
    assert scores["medium"]["mp@5"] == pytest.approx(2 / 3)   # kq = min(3, 5): not k
    # Hard: positive 4 at position 2, junk 0 ranked before it moves it to 1: AP = (0 + 1/2) / 2
    assert scores["hard"]["map"] == pytest.approx(0.25)


def test_a_query_without_positives_is_left_out_of_the_mean():
    gnd = GND + [{"easy": [], "hard": [], "junk": [3]}]
    ranks = np.concatenate([RANKS, RANKS], axis=1)
    scores = revisited_map(ranks, gnd)
    assert scores["easy"]["map"] == pytest.approx(0.25)
    assert np.isnan(scores["easy"]["aps"][1])


def test_junk_ranked_first_is_skipped_and_a_perfect_ranking_scores_one():
    ranks = np.array([[3], [1], [0], [2]])
    gnd = [{"easy": [0, 2], "hard": [], "junk": [3, 1]}]
    assert revisited_map(ranks, gnd)["easy"]["map"] == pytest.approx(1.0)   # both junk first, then the two positives
    assert revisited_map(ranks, gnd)["easy"]["mp@1"] == pytest.approx(1.0)


# revisitop's python/evaluate.py, as published (compute_ap, compute_map) and example_evaluate.py's
# protocol sets: the engine's `revisited_map` must give the same numbers.
def _revisitop_compute_ap(ranks, nres):
    nimgranks = len(ranks)
    ap = 0
    recall_step = 1. / nres
    for j in np.arange(nimgranks):
        rank = ranks[j]
        if rank == 0:  # noqa: SIM108 - as published
            precision_0 = 1.
        else:
            precision_0 = float(j) / rank
        precision_1 = float(j + 1) / (rank + 1)
        ap += (precision_0 + precision_1) * recall_step / 2.
    return ap


def _revisitop_compute_map(ranks, gnd, kappas=()):
    map = 0.  # noqa: A001 - as published
    nq = len(gnd)
    aps = np.zeros(nq)
    pr = np.zeros(len(kappas))
    prs = np.zeros((nq, len(kappas)))
    nempty = 0
    for i in np.arange(nq):
        qgnd = np.array(gnd[i]['ok'])
        if qgnd.shape[0] == 0:
            aps[i] = float('nan')
            prs[i, :] = float('nan')
            nempty += 1
            continue
        qgndj = np.array(gnd[i]['junk'])
        pos = np.arange(ranks.shape[0])[np.isin(ranks[:, i], qgnd)]
        junk = np.arange(ranks.shape[0])[np.isin(ranks[:, i], qgndj)]
        k = 0
        ij = 0
        if len(junk):
            ip = 0
            while ip < len(pos):
                while ij < len(junk) and pos[ip] > junk[ij]:
                    k += 1
                    ij += 1
                pos[ip] = pos[ip] - k
                ip += 1
        ap = _revisitop_compute_ap(pos, len(qgnd))
        map = map + ap
        aps[i] = ap
        pos += 1
        for j in np.arange(len(kappas)):
            kq = min(max(pos), kappas[j])
            prs[i, j] = (pos <= kq).sum() / kq
        pr = pr + prs[i, :]
    map = map / (nq - nempty)
    pr = pr / (nq - nempty)
    return map, aps, pr, prs


def test_the_metric_is_revisitops_own_on_random_rankings():
    rng = np.random.default_rng(3)
    for _ in range(40):
        n, queries = int(rng.integers(8, 60)), int(rng.integers(1, 6))
        ranks = np.stack([rng.permutation(n) for _ in range(queries)], axis=1)
        gnd = []
        for _ in range(queries):
            chosen = rng.permutation(n)
            a, b, c = sorted(rng.integers(0, n // 3, size=3))
            gnd.append({"easy": chosen[:a], "hard": chosen[a:a + b], "junk": chosen[a + b:a + b + c]})
        if all(len(g["easy"]) == 0 for g in gnd) or all(len(g["hard"]) == 0 for g in gnd):
            continue
        ours = revisited_map(ranks, gnd)
        sets = {"easy": [{"ok": g["easy"], "junk": np.concatenate([g["junk"], g["hard"]])} for g in gnd],
                "medium": [{"ok": np.concatenate([g["easy"], g["hard"]]), "junk": g["junk"]} for g in gnd],
                "hard": [{"ok": g["hard"], "junk": np.concatenate([g["junk"], g["easy"]])} for g in gnd]}
        for protocol, truth in sets.items():
            official, _, mp, _ = _revisitop_compute_map(ranks.copy(), truth, [1, 5, 10])
            assert ours[protocol]["map"] == pytest.approx(official)
            assert [ours[protocol][f"mp@{k}"] for k in (1, 5, 10)] == pytest.approx(list(mp))


class _RunsCode:
    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_the_ground_truth_pickle_is_read_without_running_anything(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "gnd_roxford5k.pkl"
    evil.write_bytes(pickle.dumps({"imlist": ["a"], "qimlist": [], "gnd": [], "payload": _RunsCode(marker)}))
    with pytest.raises(UnsafeUpload, match="refers to io.open|refers to builtins.open"):
        safeload.load_ground_truth_pickle(evil)
    assert not marker.exists()
    objects = tmp_path / "objects.pkl"
    objects.write_bytes(pickle.dumps({"gnd": [np.array([{"x": 1}], dtype=object)]}))
    with pytest.raises(UnsafeUpload):
        safeload.load_ground_truth_pickle(objects)
    good = tmp_path / "good.pkl"
    good.write_bytes(pickle.dumps({"gnd": [{"easy": np.array([1, 2]), "bbx": [0.5, 1.0, 2.0, 3.0]}]}, protocol=2))
    assert safeload.load_ground_truth_pickle(good)["gnd"][0]["easy"].tolist() == [1, 2]


def test_the_revisited_reader_crops_queries_and_keeps_the_indices(tmp_path):
    replica = make_revisited(tmp_path / "rox", distractors=4)
    data = load_dataset("roxford5k", tmp_path / "rox")
    assert data.metric == "revisited_map" and len(data.queries) == 6 and len(data.database) == 18
    assert data.queries[0].image.box == (1.0, 1.0, 7.0, 7.0)
    assert data.info["revisited_gnd"][0]["easy"] == replica.extra["gnd"][0]["easy"].tolist()
    with_distractors = load_dataset("roxford5k", tmp_path / "rox", distractors=str(tmp_path / "rox" / "r1m"))
    assert len(with_distractors.database) == 22 and with_distractors.database[-1].id == "r1m/distractor_0000003"
    (tmp_path / "rox" / "jpg" / "all_souls_000002.jpg").unlink()
    with pytest.raises(DatasetError, match="all_souls_000002.jpg not found"):
        load_dataset("roxford5k", tmp_path / "rox")


def test_revisited_oxford_end_to_end_gives_easy_medium_and_hard(tmp_path):
    make_revisited(tmp_path / "rox", distractors=3, size=16)
    _global_average_pool_onnx(tmp_path / "gap.onnx")
    spec = {"benchmark": "roxford5k", "onnx": tmp_path / "gap.onnx", "data_root": tmp_path / "rox", "num_workers": 0}
    result = run_evaluation(EvaluationSpec(**spec))
    assert [p["name"] for p in result.protocols] == ["easy", "medium", "hard"]
    for entry in result.protocols:
        assert entry["metric"] == "revisited_map" and 0.9 < entry["score"] <= 1.0   # colours follow landmarks
        assert {"mp@1", "mp@5", "mp@10"} <= set(entry["settings"])
        assert entry["confidence_interval"]["unit"] == "queries"
    plus = run_evaluation(EvaluationSpec(**spec, data_options={"distractors": str(tmp_path / "rox" / "r1m")},
                                         protocols=["hard"]))
    assert [p["name"] for p in plus.protocols] == ["hard"] and plus.protocol["database_images"] == 21


def test_a_revisited_bundle_recomputes_the_score_and_interval(tmp_path):
    import json
    import subprocess
    import sys
    import zipfile

    from workers.bundle import write_bundle

    make_revisited(tmp_path / "rox", size=16)
    _global_average_pool_onnx(tmp_path / "gap.onnx")
    result = run_evaluation(EvaluationSpec(benchmark="roxford5k", onnx=tmp_path / "gap.onnx",
                                           data_root=tmp_path / "rox", num_workers=0, output_dir=tmp_path / "out",
                                           protocols=["medium"]))
    entry = result.protocols[0]
    write_bundle(tmp_path / "b.zip", features_npz=result.artifacts["features.npz"], protocol=entry["settings"],
                 provenance=result.provenance, score=entry["score"], metric=entry["metric"],
                 units_npz=entry["artifacts"]["units.npz"], confidence_interval=entry["confidence_interval"])
    with zipfile.ZipFile(tmp_path / "b.zip") as archive:
        archive.extractall(tmp_path / "b")
    run = subprocess.run([sys.executable, "reproduce.py"], cwd=tmp_path / "b", capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert json.loads(run.stdout)["score"] == pytest.approx(entry["score"])
