"""Extraction in shards (workers/shards.py): a benchmark's splits cut into fixed slices, each one feature-cache
entry that any worker can fill; the scoring run reads them back and extracts only what is missing."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.workers.test_models import _global_average_pool_onnx
from workers.contract import EngineError, EvaluationSpec
from workers.evaluate import extract_shard, run_evaluation
from workers.shards import Shard, plan, shard_ranges


def test_shard_ranges_cover_every_image_once_in_order():
    assert shard_ranges(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert shard_ranges(8, 4) == [(0, 4), (4, 8)]
    assert shard_ranges(3, 4) == [(0, 3)] == shard_ranges(3, 0)
    with pytest.raises(EngineError, match="shard size"):
        shard_ranges(3, -1)


@pytest.fixture
def sharded_spec(tmp_path):
    onnx = tmp_path / "gap.onnx"
    _global_average_pool_onnx(onnx)
    return EvaluationSpec(benchmark="digits", onnx=onnx, cache_dir=tmp_path / "cache", shard_size=300,
                          protocols=["knn"], num_workers=0, output_dir=tmp_path / "out")


def test_a_plan_lists_every_split_in_shards_and_precomputed_features_need_none(sharded_spec, tmp_path):
    shards = plan(sharded_spec)
    assert [(s.split, s.start, s.stop) for s in shards] == [
        ("train", 0, 300), ("train", 300, 600), ("train", 600, 898),
        ("test", 0, 300), ("test", 300, 600), ("test", 600, 899)]
    assert sum(s.images for s in shards) == 1797
    assert plan(dataclasses.replace(sharded_spec, jitter=True))[0].jitter == "keep"
    assert plan(dataclasses.replace(sharded_spec, onnx=None, features=tmp_path / "f.npz")) == []


def test_shards_extracted_apart_give_the_scoring_run_the_same_features_without_extracting(sharded_spec, tmp_path):
    outcomes = [extract_shard(sharded_spec, shard) for shard in plan(sharded_spec)]
    assert [o["images"] for o in outcomes] == [300, 300, 298, 300, 300, 299]
    assert not any(o["from_cache"] for o in outcomes)
    assert extract_shard(sharded_spec, Shard("train", 0, 300))["from_cache"]   # a second run of a shard: nothing

    scored = run_evaluation(sharded_spec)
    assert scored.throughput["images_extracted"] == 0   # every shard came from the cache
    whole = run_evaluation(dataclasses.replace(sharded_spec, cache_dir=None, shard_size=0,
                                               output_dir=tmp_path / "whole"))
    assert whole.throughput["images_extracted"] == 1797
    assert scored.score == whole.score
    with np.load(tmp_path / "out" / "features.npz") as a, np.load(tmp_path / "whole" / "features.npz") as b:
        assert np.array_equal(a["train_features"], b["train_features"])
        assert np.array_equal(a["test_features"], b["test_features"])


def test_the_scoring_run_extracts_only_the_shard_that_never_came_in(sharded_spec):
    for shard in plan(sharded_spec)[1:]:   # the first shard's worker died: its entry is missing
        extract_shard(sharded_spec, shard)
    assert run_evaluation(sharded_spec).throughput["images_extracted"] == 300


def test_a_shard_outside_the_benchmark_is_refused_with_a_reason(sharded_spec):
    with pytest.raises(EngineError, match="no images 900-1200 in split 'train'"):
        extract_shard(sharded_spec, Shard("train", 900, 1200))
    with pytest.raises(EngineError, match="feature cache"):
        extract_shard(dataclasses.replace(sharded_spec, cache_dir=None), Shard("train", 0, 300))
