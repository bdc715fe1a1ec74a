"""run_evaluation end to end: demo benchmarks with EfficientNet-Lite0 vs random init, artifacts,
precomputed features, official replicas through an ONNX model, and the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.workers.replicas import make_mit67, make_oxford5k, make_sun397, make_ukbench, make_voc2007
from tests.workers.test_models import _global_average_pool_onnx
from workers.contract import EngineError, EvaluationSpec
from workers.evaluate import run_evaluation

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def feature_cache() -> Path:
    """A feature cache kept between runs (var/ is git-ignored; SHELFMARK_TEST_FEATURE_CACHE moves it).

    Entries are keyed by the weights' SHA-256, the pipeline settings, the extractor version and
    the image ids, so a hit is the features this code would extract: the slow Lite0 runs on the
    1,797 digits are paid once per machine (about 2.5 min on 2 idle cores), not on every run.
    Extraction itself is tested in test_extract.py and by the skimage_holidays runs.
    """
    import os

    return Path(os.environ.get("SHELFMARK_TEST_FEATURE_CACHE", REPO / "var" / "test-feature-cache"))


@pytest.fixture(scope="module")
def lite0_holidays(tmp_path_factory, feature_cache):
    out = tmp_path_factory.mktemp("lite0-holidays")
    reports = []
    result = run_evaluation(
        EvaluationSpec(benchmark="skimage_holidays", model="efficientnet_lite0", device="cpu",
                       cache_dir=feature_cache, output_dir=out),
        reports.append,
    )
    return result, reports


def test_lite0_beats_its_random_init_twin_on_skimage_holidays(lite0_holidays, feature_cache):
    pretrained, _ = lite0_holidays
    random = run_evaluation(EvaluationSpec(benchmark="skimage_holidays", model="efficientnet_lite0",
                                           random_init=True, device="cpu", cache_dir=feature_cache))
    assert pretrained.metric == random.metric == "holidays_map"
    assert pretrained.score > 0.9
    assert pretrained.score > random.score + 0.2
    assert random.provenance["model"]["model_hash"] == "random-init:0"


def test_result_records_provenance_protocol_timings_and_progress(lite0_holidays):
    result, reports = lite0_holidays
    stages = [p.stage for p in reports]
    assert stages[0] == "loading_model" and stages[-1] == "done" and "extracting" in stages
    assert stages.index("extracting") < stages.index("scoring")
    assert reports[-1].fraction == 1.0
    provenance = result.provenance
    assert provenance["packages"]["torch"] and provenance["packages"]["scikit-learn"]
    assert provenance["protocol_version"] == result.protocol["protocol_version"]
    assert len(provenance["model"]["model_hash"]) == 64
    assert provenance["hardware"]["device"] == "cpu" and provenance["hardware"]["cpu"]
    assert provenance["git_commit"] and provenance["date"]
    assert result.protocol["preprocessing"]["input_size"] == 224
    assert result.protocol["queries"] == 12 and result.protocol["database_images"] == 48
    assert {"loading_model", "extracting", "scoring"} <= set(result.timings)
    assert result.throughput["images_extracted"] in (0.0, 48.0)
    assert len(result.per_class) == 12
    json.dumps(result.to_dict())   # the CLI writes it as JSON


def test_retrieval_artifacts_reproduce_the_score_with_numpy_alone(lite0_holidays):
    from workers.metrics import holidays_map

    result, _ = lite0_holidays
    with np.load(result.artifacts["features.npz"], allow_pickle=False) as npz:
        assert str(npz["kind"]) == "retrieval"
        similarity = npz["query_features"] @ npz["database_features"].T
        ids = npz["database_ids"]
        rankings = {q: ids[np.argsort(-row, kind="stable")].tolist() for q, row in zip(npz["query_ids"], similarity)}
        assert holidays_map(rankings, database=ids.tolist()) == pytest.approx(float(npz["score"]))
        assert json.loads(str(npz["settings"]))["preprocessing"]["input_size"] == 224
        assert len(json.loads(str(npz["ground_truth"]))) == 12


@pytest.mark.slow
def test_lite0_beats_its_random_init_twin_on_digits(tmp_path, feature_cache):
    from sklearn.svm import LinearSVC

    from workers.metrics import mean_class_accuracy

    def evaluate(**options):
        return run_evaluation(EvaluationSpec(benchmark="digits", model="efficientnet_lite0", device="cpu",
                                             cache_dir=feature_cache, **options))

    pretrained = evaluate(output_dir=tmp_path)
    random = evaluate(random_init=True)
    assert pretrained.metric == "mean_class_accuracy"
    assert pretrained.score > 0.8
    assert pretrained.score > random.score + 0.05
    assert pretrained.protocol["splits"]["train_images"] == 898
    assert set(pretrained.per_class) == {str(d) for d in range(10)}

    # re-scoring with another normalisation reuses the cached features: no image is extracted
    rescored = evaluate(power_norm=0.5)
    assert rescored.throughput["images_extracted"] == 0
    assert rescored.protocol["power_norm"] == 0.5

    # the artifacts are enough to reproduce the score with scikit-learn alone
    with np.load(pretrained.artifacts["features.npz"], allow_pickle=False) as npz:
        assert npz["train_features"].shape == (898, 1280) and npz["test_features"].shape == (899, 1280)
        svm = LinearSVC(C=float(npz["svm_c"][0]), dual="auto", max_iter=20000, random_state=0)
        predictions = svm.fit(npz["train_features"], npz["train_labels"]).predict(npz["test_features"])
        assert mean_class_accuracy(npz["test_labels"], predictions) == pytest.approx(pretrained.score)


def _features_file(path: Path, table: dict) -> Path:
    np.savez(path, **table)
    return path


def test_precomputed_features_give_the_same_score(lite0_holidays, tmp_path):
    result, _ = lite0_holidays
    with np.load(result.artifacts["features.npz"], allow_pickle=False) as npz:
        table = dict(zip(npz["database_ids"].tolist(), npz["database_features"]))
    spec = EvaluationSpec(benchmark="skimage_holidays", features=_features_file(tmp_path / "f.npz", table))
    again = run_evaluation(spec)
    assert again.score == pytest.approx(result.score)
    assert again.provenance["model"]["source"] == "features"
    assert again.provenance["features_file"]["unused"] == 0


def test_precomputed_features_are_checked(lite0_holidays, tmp_path):
    result, _ = lite0_holidays
    with np.load(result.artifacts["features.npz"], allow_pickle=False) as npz:
        table = dict(zip(npz["database_ids"].tolist(), npz["database_features"]))
    first = next(iter(table))

    def evaluate(bad: dict):
        spec = EvaluationSpec(benchmark="skimage_holidays", features=_features_file(tmp_path / "bad.npz", bad))
        return run_evaluation(spec)

    with pytest.raises(EngineError, match=f"no features for 1 of the 48 database images.*{first}"):
        evaluate({k: v for k, v in table.items() if k != first})
    with pytest.raises(EngineError, match="not finite"):
        evaluate({**table, first: np.full_like(table[first], np.nan)})
    with pytest.raises(EngineError, match="same length"):
        evaluate({**table, first: table[first][:10]})
    with pytest.raises(EngineError, match="not found"):
        run_evaluation(EvaluationSpec(benchmark="skimage_holidays", features=tmp_path / "absent.npz"))


@pytest.fixture
def colour_onnx(tmp_path) -> Path:
    """Per-channel mean colour as the feature: the replicas' colours follow their classes."""
    _global_average_pool_onnx(tmp_path / "gap.onnx")
    return tmp_path / "gap.onnx"


def test_official_retrieval_replicas_through_an_onnx_model(tmp_path, colour_onnx):
    make_ukbench(tmp_path / "ukbench", groups=3)
    ukbench = run_evaluation(EvaluationSpec(benchmark="ukbench", onnx=colour_onnx, data_root=tmp_path / "ukbench",
                                            num_workers=0))
    assert ukbench.metric == "ukbench_ns" and ukbench.score == pytest.approx(4.0)

    replica = make_oxford5k(tmp_path / "oxford", size=16)
    oxford = run_evaluation(EvaluationSpec(benchmark="oxford5k", onnx=colour_onnx, data_root=tmp_path / "oxford",
                                           num_workers=0))
    assert oxford.metric == "oxford_map" and oxford.protocol["query_crop"] == "box"
    assert set(oxford.per_class) == set(replica.queries)
    assert oxford.score > 0.9


def test_official_classification_replicas_through_an_onnx_model(tmp_path, colour_onnx):
    make_sun397(tmp_path / "sun")
    sun = run_evaluation(EvaluationSpec(benchmark="sun397", onnx=colour_onnx, data_root=tmp_path / "sun",
                                        num_workers=0, svm_c=1.0, l2_normalize=False))
    assert sun.metric == "mean_class_accuracy"
    assert sun.protocol["partitions"] == len(sun.protocol["partition_scores"]) > 1
    assert sun.score == pytest.approx(np.mean(sun.protocol["partition_scores"]))

    make_voc2007(tmp_path / "voc")
    voc = run_evaluation(EvaluationSpec(benchmark="voc2007", onnx=colour_onnx, data_root=tmp_path / "voc",
                                        num_workers=0, svm_c=1.0, output_dir=tmp_path / "out"))
    assert voc.metric == "voc07_map" and len(voc.per_class) == 20 and 0 <= voc.score <= 1
    with np.load(voc.artifacts["features.npz"], allow_pickle=False) as npz:
        assert bool(npz["multilabel"]) and npz["train_labels"].shape[1] == 20 and npz["svm_c"].shape == (20,)


def test_the_paper_choice_trains_one_vs_one_svms_where_the_paper_did(tmp_path, colour_onnx):
    # was: Benchmark.paper_multiclass was never read; MIT67, CUB and Flowers were scored one-vs-rest
    make_mit67(tmp_path / "mit67")
    spec = {"benchmark": "mit67", "onnx": colour_onnx, "data_root": tmp_path / "mit67", "num_workers": 0,
            "svm_c": 1.0}
    assert run_evaluation(EvaluationSpec(**spec, multiclass="paper")).protocol["multiclass"] == "ovo"
    assert run_evaluation(EvaluationSpec(**spec, multiclass="ovr")).protocol["multiclass"] == "ovr"
    with pytest.raises(EngineError, match="unknown multiclass scheme 'svm'"):
        run_evaluation(EvaluationSpec(**spec, multiclass="svm"))


def test_the_spec_chooses_the_decode_pipeline(tmp_path, colour_onnx):
    # was: the device (nvjpeg) decode path was reachable only from bench/ and the tests
    make_mit67(tmp_path / "mit67")
    spec = {"benchmark": "mit67", "onnx": colour_onnx, "data_root": tmp_path / "mit67", "num_workers": 0,
            "svm_c": 1.0, "device": "cpu"}
    on_device = run_evaluation(EvaluationSpec(**spec, decode="gpu"))   # libjpeg-turbo on CPU, nvjpeg on CUDA
    with_pil = run_evaluation(EvaluationSpec(**spec, decode="pil"))
    assert on_device.provenance["model"]["extraction"]["decode"] == "torchvision-cpu"
    assert with_pil.provenance["model"]["extraction"]["decode"] == "pil"
    assert on_device.score == with_pil.score == 1.0   # the replica's colours separate its classes either way


def test_official_benchmark_without_data_is_a_clear_error():
    with pytest.raises(EngineError, match="needs --data ROOT"):
        run_evaluation(EvaluationSpec(benchmark="mit67", model="efficientnet_lite0"))
    with pytest.raises(EngineError, match="unknown benchmark"):
        run_evaluation(EvaluationSpec(benchmark="imagenet", model="efficientnet_lite0"))


def test_cli_writes_the_result_json(run_cli, lite0_holidays, tmp_path):
    result, _ = lite0_holidays
    with np.load(result.artifacts["features.npz"], allow_pickle=False) as npz:
        table = dict(zip(npz["database_ids"].tolist(), npz["database_features"]))
    features = _features_file(tmp_path / "f.npz", table)
    done = run_cli("evaluate", "--features", features, "--benchmark", "skimage_holidays", "--out", tmp_path / "r.json")
    assert done.returncode == 0, done.stderr
    written = json.loads((tmp_path / "r.json").read_text())
    assert written["score"] == pytest.approx(result.score) and written["metric"] == "holidays_map"


def test_cli_engine_error_is_one_line_without_traceback(run_cli, tmp_path):
    done = run_cli("evaluate", "--model", "resnet50", "--benchmark", "digits", "--out", tmp_path / "r.json")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("error: resnet50: no built-in weights")
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "r.json").exists()


def test_cli_lists_benchmarks(run_cli):
    done = run_cli("benchmarks")
    assert done.returncode == 0
    lines = {line.split("\t")[0]: line for line in done.stdout.splitlines()}
    assert "available" in lines["digits"].split("\t") and "unavailable" in lines["voc2007"].split("\t")
    assert set(lines) >= {"digits", "skimage_holidays", "voc2007", "oxford5k", "ukbench", "sun397"}
