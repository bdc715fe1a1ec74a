"""`run_evaluation(spec, progress)`: one model (or ONNX graph, or precomputed features) on one benchmark,
scored by every protocol the spec names (or the benchmark's defaults: workers/protocol_catalog.py).

Stages, reported through `Progress`: downloading (Hub models), loading_model, extracting, training,
scoring (the protocols' metrics and their bootstrap intervals), done. The features are extracted once;
each protocol gives one entry of `EvaluationResult.protocols`, the first is the headline.

Precomputed features (`spec.features`) are an .npz keyed by the benchmark's image ids: either one
array per image id (`np.savez(f, **{image_id: vector})`), or two arrays `ids` (n,) str and
`features` (n, D). A query cropped to a box (Oxford, Paris) is looked up as `query/<image id>`
first, then as its image id (uncropped; recorded as such).

Artifacts, written to `spec.output_dir` when set: `units_<protocol>.npz` per protocol (what its score
and interval are computed from: workers/confidence.py) and `features.npz` (load with allow_pickle=False):
everything a standalone numpy + scikit-learn `reproduce.py` needs. The features are the ones the
protocol saw, already post-processed (signed power, then L2 normalisation, as the settings say).
  common:          kind ("classification" | "retrieval"), benchmark, metric, score (the engine's),
                   settings (JSON string: the protocol's settings, incl. preprocessing)
  classification:  train_features (n, D) float32, train_labels (n,) int or (n, C) of 1/-1/0,
                   train_ids (n,) str (an id repeats once per view when jittered views are kept),
                   test_features (m, D), test_labels, test_ids, classes (C,) str,
                   multilabel (bool), svm_c (1,) or (C,) (the C used, per class when multi-label),
                   multiclass ("ovr" | "ovo" | "binary per class");
                   SUN397-style partitions: the first partition's arrays, `partition` = 1
  retrieval:       database_features (n, D), database_ids (n,) str, query_features (q, D),
                   query_ids (q,) str, query_names (q,) str (the protocol's query names),
                   ground_truth (JSON string: {query name: {good, ok, junk}})
"""
from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from workers import confidence, protocol_catalog, safeload
from workers.benchmarks import get_benchmark
from workers.contract import (
    EngineError,
    EvaluationResult,
    EvaluationSpec,
    FeaturesMismatch,
    Progress,
    ProgressCallback,
    json_safe,
)
from workers.datasets.base import ClassificationData, ImageRecord, RetrievalData
from workers.protocols import PROTOCOL_VERSION, CosineRetrieval, LinearSVMClassification, postprocess
from workers.shards import Shard, benchmark_data, by_shard, shard_records


class _ModelFeatures:
    """Features from a network (torch or ONNX), through the extractor and its cache."""

    def __init__(self, spec: EvaluationSpec, device: str, progress: ProgressCallback):
        from workers.extract import FeatureCache
        from workers.library_models import create_feature_model
        from workers.models import create_onnx_model
        from workers.prepared import PreparedStore

        def downloaded(done: int, total: int, what: str) -> None:
            progress(Progress("downloading", done, total, message=what))

        if spec.onnx is not None:
            if spec.model or spec.weights or spec.random_init or spec.model_dir:
                raise EngineError("give either an ONNX file or a model name, not both")
            self.model = create_onnx_model(spec.onnx, device=device, pooling=spec.pooling)
        elif spec.model or spec.model_dir:
            if spec.model and spec.model_dir:
                raise EngineError("give either a model name or a model folder, not both")
            self.model = create_feature_model(
                spec.model, folder=spec.model_dir, weights=spec.weights, random_init=spec.random_init,
                layer=spec.layer, pooling=spec.pooling, readout=spec.readout, hub_cache=spec.hub_cache,
                hub_token=spec.hub_token, report=downloaded)
        else:
            raise EngineError("nothing to evaluate: give a model name, an ONNX file or a features file")
        self.spec, self.device, self.progress = spec, device, progress
        self.cache = FeatureCache(spec.cache_dir) if spec.cache_dir else None
        # decoded, resized images shared by every model with the same resize (workers/prepared.py)
        self.prepared = PreparedStore(spec.prepared_dir) if spec.prepared_dir else None
        self.extract_seconds = 0.0
        self.images_extracted = 0
        self.extraction: dict = {}   # the extractor's pipeline settings (decode: pil | nvjpeg), for provenance

    def describe(self) -> dict:
        keys = ("extractor_version", "decode", "jpeg_decode", "jpeg_decoder", "precision", "memory_format",
                "gpu_micro_batch", "prepared_store")
        extraction = {k: self.extraction[k] for k in keys if k in self.extraction}
        return {**self.model.describe(), "source": "onnx" if self.spec.onnx else "model", "extraction": extraction}

    def features(self, records: Sequence[ImageRecord], *, dataset: str, split: str,
                 jitter: str | None) -> np.ndarray:
        """The records' features, shard by shard when `spec.shard_size` is set (each shard one cache entry,
        as the shards' tasks wrote them: workers/shards.py)."""
        return by_shard(lambda part: self._extract(part, dataset=dataset, split=split, jitter=jitter), records,
                        self.spec.shard_size)

    def _extract(self, records: Sequence[ImageRecord], *, dataset: str, split: str,
                 jitter: str | None) -> np.ndarray:
        from workers.extract import extract_features

        start = time.perf_counter()
        hits = self.cache.hits if self.cache else 0
        out = extract_features(
            self.model, records, device=self.device, batch_size=self.spec.batch_size,
            num_workers=self.spec.num_workers, jitter=jitter, cache=self.cache, dataset=dataset, split=split,
            progress=self.progress, decode=self.spec.decode, prepared=self.prepared, settings_out=self.extraction,
        )
        if not self.cache or self.cache.hits == hits:   # extracted now, not read from the cache
            self.extract_seconds += time.perf_counter() - start
            self.images_extracted += len(records)
        return out


class _PrecomputedFeatures:
    """Features read from an .npz keyed by image id (`workers.safeload`, as the upload check reads it)."""

    def __init__(self, path: Path, *, max_images: int):
        self.path = Path(path)
        self.table = safeload.read_features(self.path, max_images=max_images).vectors
        self.used: set[str] = set()
        self.cropped_queries_uncropped = 0
        self.extract_seconds = 0.0
        self.images_extracted = 0

    def describe(self) -> dict:
        from workers.provenance import file_sha256

        dim = len(next(iter(self.table.values())))
        digest = file_sha256(self.path)
        return {"name": f"features:{self.path.name}", "model_hash": digest, "weights_sha256": digest,
                "source": "features", "dim": dim, "layer": None, "pooling": None, "data_config": None}

    def features(self, records: Sequence[ImageRecord], *, dataset: str, split: str,
                 jitter: str | None) -> np.ndarray:
        keys = []
        for record in records:
            key = record.id
            if split == "queries" and record.box is not None:
                if f"query/{record.id}" in self.table:
                    key = f"query/{record.id}"
                else:
                    self.cropped_queries_uncropped += 1
            keys.append(key)
        missing = [k for k in keys if k not in self.table]
        if missing:
            raise FeaturesMismatch(
                f"{self.path.name}: no features for {len(missing)} of the {len(keys)} {split} images of {dataset}, "
                f"e.g. {missing[0]!r} (the file has {len(self.table)} entries)"
            )
        self.used.update(keys)
        return np.stack([self.table[k] for k in keys]).astype(np.float32)


def run_evaluation(spec: EvaluationSpec, progress: ProgressCallback | None = None) -> EvaluationResult:
    """Evaluate `spec` end to end; raises EngineError for anything a user can fix."""
    from workers import provenance
    from workers.extract import resolve_device

    report = progress or (lambda _p: None)
    timings: dict[str, float] = {}
    benchmark = get_benchmark(spec.benchmark)
    device = resolve_device(spec.device)
    multiclass = benchmark.multiclass(spec.multiclass)
    protocols = protocol_catalog.resolve(benchmark.kind, benchmark.metric, spec.protocols, benchmark=benchmark.name)
    if benchmark.needs_root and spec.data_root is None:
        benchmark.load(None)   # raises the "needs --data ROOT" error before any model is built
    if spec.features is not None and (spec.model or spec.onnx or spec.model_dir):
        raise EngineError("give either a features file or a model, not both")

    clock = time.perf_counter()
    source = None
    if spec.features is None:   # a model fails fast, before the benchmark is read
        report(Progress("loading_model", message=spec.model or str(spec.onnx or "model folder")))
        source = _ModelFeatures(spec, device, report)
    timings["loading_model"] = time.perf_counter() - clock

    clock = time.perf_counter()
    report(Progress("loading_model", message=f"reading {benchmark.name}"))
    data = benchmark.load(spec.data_root, **spec.data_options)
    timings["loading_data"] = time.perf_counter() - clock
    if source is None:
        clock = time.perf_counter()
        report(Progress("loading_model", message=str(spec.features)))
        source = _PrecomputedFeatures(spec.features, max_images=_feature_file_capacity(spec, data))
        timings["loading_model"] = time.perf_counter() - clock

    if isinstance(data, ClassificationData):
        outcomes, kind, arrays = _classification(spec, benchmark.name, data, source, report, timings, multiclass,
                                                 protocols, device)
    elif isinstance(data, RetrievalData):
        outcomes, kind, arrays = _retrieval(spec, benchmark.name, data, source, report, timings, protocols)
    else:
        raise EngineError(f"{benchmark.name}: the loader returned {type(data).__name__}")
    clock = time.perf_counter()
    report(Progress("scoring", 0, len(outcomes), message="confidence intervals (bootstrap)"))
    results = []
    for done, (name, outcome) in enumerate(outcomes.items()):
        interval = confidence.bootstrap_interval(outcome.units)
        results.append({"name": name, "title": protocol_catalog.PROTOCOLS[name].title,
                        "version": protocol_catalog.PROTOCOLS[name].version, "metric": outcome.settings["metric"],
                        "score": outcome.score, "confidence_interval": interval, "per_class": outcome.per_class,
                        "settings": outcome.settings, "units": outcome.units})
        report(Progress("scoring", done + 1, len(outcomes), message=f"{name}: {outcome.score:.4f}"))
    timings["confidence_intervals"] = time.perf_counter() - clock
    headline = results[0]
    result = EvaluationResult(benchmark=benchmark.name, metric=headline["metric"], score=headline["score"],
                              per_class=headline["per_class"], protocol=dict(headline["settings"]),
                              confidence_interval=headline["confidence_interval"])

    result.timings = {k: round(v, 4) for k, v in timings.items()}
    if source.images_extracted:
        result.throughput["extraction_images_per_second"] = round(source.images_extracted / source.extract_seconds, 2)
    result.throughput["images_extracted"] = float(source.images_extracted)
    described = source.describe()
    result.provenance = json_safe({
        **provenance.collect(device, described, PROTOCOL_VERSION),
        # not the ground truth nor ImageNet's 1,000 class descriptions: every result would carry them
        "benchmark_info": {key: value for key, value in data.info.items()
                           if key not in ("revisited_gnd", "class_words")},
    })
    if isinstance(source, _PrecomputedFeatures):
        result.provenance["features_file"] = {
            "entries": len(source.table), "used": len(source.used),
            "unused": len(source.table) - len(source.used),
            "box_queries_uncropped": source.cropped_queries_uncropped,
        }
    common = json_safe({
        "benchmark": benchmark.name,
        "preprocessing": described.get("data_config"),
        "layer": described.get("layer"),
        "pooling": described.get("pooling"),
        "readout": described.get("readout"),
        "jitter": spec.jitter,
        "power_norm": spec.power_norm,
        "l2_normalize": spec.l2_normalize,
        "normalisation_order": "signed power, then L2",
        "features_source": described["source"],
        **arrays.pop("_shared_settings", {}),
    })
    result.protocol.update(common)
    for entry in results:
        entry["settings"] = json_safe({**entry["settings"], **common})
    _write_artifacts(spec, result, kind, arrays, results)
    result.protocols = [{key: value for key, value in entry.items() if key != "units"} for entry in results]
    report(Progress("done", 1, 1, message=f"{result.metric} = {result.score:.4f}"))
    return result


def _image_count(data: ClassificationData | RetrievalData) -> int:
    if isinstance(data, ClassificationData):
        return len({record.id for records in data.splits.values() for record in records})
    return len(data.database) + len(data.queries)


def _feature_file_capacity(spec: EvaluationSpec, data) -> int:
    """How many images a features file for this evaluation may hold vectors for: the benchmark's,
    plus those of the benchmark PCA whitening is learned on (read from the same file)."""
    count = _image_count(data)
    if spec.whitening_benchmark:
        count += _image_count(get_benchmark(spec.whitening_benchmark).load(spec.whitening_data))
    return count


def _finish_features(spec: EvaluationSpec, features: np.ndarray) -> np.ndarray:
    return postprocess(features, power_norm=spec.power_norm, l2=spec.l2_normalize)


def _classification_protocol(name: str, spec: EvaluationSpec, multiclass: str, device: str):
    from workers.probes import FewShot, KNNClassification, LinearProbe

    solver = spec.solver   # auto: torch on CUDA, scikit-learn on CPU (each protocol resolves it)
    if name == "svm":
        return LinearSVMClassification(svm_c=spec.svm_c, multiclass=multiclass, solver=solver, device=device)
    if name == "knn":
        return KNNClassification(solver=solver, device=device)
    if name == "linear_probe":
        return LinearProbe(solver=solver, device=device)
    if name == "fewshot":
        return FewShot(solver=solver, device=device)
    raise EngineError(f"{name} is not a classification protocol")


def _classification(spec, name, data: ClassificationData, source, report, timings, multiclass: str,
                    protocols: list[str], device: str):
    """Features once per partition, then every protocol on them; outcomes merged over partitions."""
    instances = {p: _classification_protocol(p, spec, multiclass, device) for p in protocols}
    per_protocol: dict[str, list] = {p: [] for p in protocols}
    first_arrays = None
    timings.setdefault("extracting", 0.0)
    timings.setdefault("training", 0.0)
    partitions = data.partition_splits()
    for k, (train_split, test_split) in enumerate(partitions, start=1):
        clock = time.perf_counter()
        train_records, test_records = data.splits[train_split], data.splits[test_split]
        train_y, test_y = np.asarray(data.labels[train_split]), np.asarray(data.labels[test_split])
        train_x = source.features(train_records, dataset=name, split=train_split,
                                  jitter="keep" if spec.jitter else None)
        test_x = source.features(test_records, dataset=name, split=test_split,
                                 jitter="average" if spec.jitter else None)
        timings["extracting"] += time.perf_counter() - clock

        train_ids = np.asarray([r.id for r in train_records])
        test_ids = np.asarray([r.id for r in test_records])
        groups = None
        if train_x.ndim == 3:   # jittered training views augment the training data, as in [1]
            views = train_x.shape[1]
            train_x = train_x.reshape(-1, train_x.shape[-1])
            train_y = np.repeat(train_y, views, axis=0)
            train_ids = np.repeat(train_ids, views)
            groups = np.repeat(np.arange(len(train_records)), views)
        train_x, test_x = _finish_features(spec, train_x), _finish_features(spec, test_x)

        clock = time.perf_counter()
        for protocol_name, protocol in instances.items():
            report(Progress("training", k - 1, len(partitions), message=f"{protocol_name} on {train_split}"))
            outcome = protocol.run(train_x, train_y, test_x, test_y, data.classes, multilabel=data.multilabel,
                                   train_groups=groups)
            outcome.units.ids = test_ids
            if len(partitions) > 1:
                outcome.units.partition = np.full(len(test_ids), k)
            per_protocol[protocol_name].append(outcome)
        timings["training"] += time.perf_counter() - clock
        if first_arrays is None:
            first_arrays = {
                "train_features": train_x, "train_labels": train_y, "train_ids": train_ids,
                "test_features": test_x, "test_labels": test_y, "test_ids": test_ids,
                "classes": np.asarray(data.classes), "multilabel": np.asarray(data.multilabel),
                "partition": np.asarray(1),
            }
            if "svm" in per_protocol:
                svm = per_protocol["svm"][0]
                first_arrays["svm_c"] = svm.details["svm_c"]
                first_arrays["multiclass"] = np.asarray(svm.settings["multiclass"])
    merged = {p: _merge_partitions(outcomes) for p, outcomes in per_protocol.items()}
    first_arrays["_shared_settings"] = {
        "splits": {"train": data.train_split, "test": data.test_split,
                   "train_images": len(data.splits[data.train_split]),
                   "test_images": len(data.splits[data.test_split])}}
    return merged, "classification", first_arrays


def _merge_partitions(outcomes: list):
    """One outcome from a protocol's outcomes on each partition: scores averaged (SUN397's mean over
    its 10 partitions), units concatenated with their partition."""
    from workers.protocols import ProtocolOutcome, UnitOutputs

    if len(outcomes) == 1:
        return outcomes[0]
    settings = dict(outcomes[0].settings)
    settings["partitions"] = len(outcomes)
    settings["partition_scores"] = [o.score for o in outcomes]
    if "chosen_c" in settings:
        settings["chosen_c"] = [o.settings["chosen_c"] for o in outcomes]
    per_class = {c: float(np.mean([o.per_class.get(c, np.nan) for o in outcomes])) for c in outcomes[0].per_class}
    units = [o.units for o in outcomes]
    axis = 1 if units[0].kind == "draws" else 0
    merged_units = UnitOutputs(units[0].kind, np.concatenate([u.values for u in units], axis=axis),
                               labels=np.concatenate([u.labels for u in units]),
                               ids=np.concatenate([u.ids for u in units]),
                               partition=np.concatenate([u.partition for u in units]))
    return ProtocolOutcome(float(np.mean([o.score for o in outcomes])), per_class, settings, {}, merged_units)


def _retrieval(spec, name, data: RetrievalData, source, report, timings, protocols: list[str]):
    clock = time.perf_counter()
    jitter = "average" if spec.jitter else None
    database_x = source.features(data.database, dataset=name, split="database", jitter=jitter)
    position = {record.id: i for i, record in enumerate(data.database)}
    query_x = np.empty((len(data.queries), database_x.shape[1]), dtype=np.float32)
    to_extract = []
    for i, query in enumerate(data.queries):
        if query.image.box is None and query.image.id in position:
            query_x[i] = database_x[position[query.image.id]]   # the query is a database image
        else:
            to_extract.append(i)
    if to_extract:
        extracted = source.features([data.queries[i].image for i in to_extract], dataset=name,
                                    split="queries", jitter=jitter)
        query_x[to_extract] = extracted
    timings["extracting"] = time.perf_counter() - clock

    protocol = _retrieval_protocol(spec, name, source, timings)
    clock = time.perf_counter()
    report(Progress("scoring", 0, len(data.queries), message=data.metric))
    database_x, query_x = _finish_features(spec, database_x), _finish_features(spec, query_x)
    query_ids = [q.image.id for q in data.queries]
    query_names = [q.name or q.id for q in data.queries]
    order = protocol.rank(database_x, query_x, top_k=4 if data.metric == "ukbench_ns" else None)
    outcomes = {}
    for protocol_name in protocols:
        if protocol_name == "ranking":
            outcome = protocol.score(order, [r.id for r in data.database], query_ids, data.queries, data.metric)
        else:
            outcome = protocol.score_revisited(order, data.info["revisited_gnd"], query_names, protocol_name)
        outcome.settings.update({"queries": len(data.queries), "database_images": len(data.database),
                                 "query_crop": "box" if any(q.image.box for q in data.queries) else "none"})
        outcomes[protocol_name] = outcome
    if protocol.whitening:   # store the whitened features, so reproduce.py needs no PCA
        database_x, query_x = protocol.project(database_x), protocol.project(query_x)
    ground_truth = {(q.name or q.id): {"good": q.good, "ok": q.ok, "junk": q.junk} for q in data.queries}
    timings["scoring"] = time.perf_counter() - clock
    arrays = {
        "database_features": database_x, "database_ids": np.asarray([r.id for r in data.database]),
        "query_features": query_x, "query_ids": np.asarray(query_ids),
        "query_names": np.asarray(query_names),
        "ground_truth": np.asarray(json.dumps(ground_truth)),
    }
    if "revisited_gnd" in data.info:
        arrays["revisited_gnd"] = np.asarray(json.dumps(data.info["revisited_gnd"]))
    return outcomes, "retrieval", arrays


def _retrieval_protocol(spec, name: str, source, timings) -> CosineRetrieval:
    """Cosine ranking, with PCA whitening learned on another benchmark's database when asked."""
    if not spec.whitening_benchmark:
        return CosineRetrieval()
    if spec.whitening_benchmark == name:
        raise EngineError(f"whitening must be learned on a set disjoint from {name}: name another benchmark")
    clock = time.perf_counter()
    other = get_benchmark(spec.whitening_benchmark)
    data = other.load(spec.whitening_data)
    records = data.database if isinstance(data, RetrievalData) else data.splits[data.train_split]
    features = _finish_features(spec, source.features(records, dataset=other.name, split="whitening",
                                                      jitter="average" if spec.jitter else None))
    timings["whitening"] = time.perf_counter() - clock
    return CosineRetrieval(whitening="pca", whitening_dim=spec.whitening_dim).fit(
        features, source=f"{other.name} ({len(records)} images)")


def _write_artifacts(spec, result: EvaluationResult, kind: str, arrays: dict, results: list[dict]) -> None:
    """features.npz (what every protocol saw) and units_<protocol>.npz (what each one's score and
    interval are computed from) in spec.output_dir, for the bundles and the boards' rank groups."""
    if spec.output_dir is None:
        return
    out = Path(spec.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "features.npz"
    np.savez_compressed(
        path, kind=np.asarray(kind), benchmark=np.asarray(result.benchmark), metric=np.asarray(result.metric),
        score=np.asarray(result.score), settings=np.asarray(json.dumps(json_safe(result.protocol))), **arrays,
    )
    result.artifacts["features.npz"] = str(path)
    for entry in results:
        units_path = out / f"units_{entry['name']}.npz"
        confidence.save_units(units_path, entry["units"])
        entry["artifacts"] = {"units.npz": str(units_path)}
        result.artifacts[f"units_{entry['name']}.npz"] = str(units_path)


def extract_shard(spec: EvaluationSpec, shard: Shard, progress: ProgressCallback | None = None) -> dict:
    """Extract one shard of `spec`'s images into its feature cache, where `run_evaluation` (with the same
    `shard_size`) reads it back (workers/shards.py). Returns images, seconds, images/s, from_cache."""
    from workers.extract import resolve_device

    if spec.cache_dir is None:
        raise EngineError("a shard is extracted into the feature cache: the spec names none")
    report = progress or (lambda _p: None)
    benchmark = get_benchmark(spec.benchmark)
    records = shard_records(spec, benchmark_data(spec), shard)
    report(Progress("loading_model", message=spec.model or "model"))
    whole = dataclasses.replace(spec, shard_size=0)   # this shard is one cache entry
    source = _ModelFeatures(whole, resolve_device(spec.device), report)
    clock = time.perf_counter()
    source.features(records, dataset=benchmark.name, split=shard.split, jitter=shard.jitter)
    seconds = time.perf_counter() - clock
    cached = source.images_extracted == 0
    return {"images": len(records), "seconds": round(seconds, 3), "from_cache": cached,
            "images_per_second": round(len(records) / seconds, 2) if seconds > 0 and not cached else 0.0}
