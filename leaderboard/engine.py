"""The one door between the site and the evaluation engine (workers/).

No other module of leaderboard/ imports `workers` (tests/test_module_boundaries.py holds that), so the
site's view of the engine is what this module says: the registry's lists (built-in models,
architectures, runnable benchmarks and the paper's multi-class choice), the inspection of an upload,
the spec a worker runs for a job, the reproduction bundle of a result, and the engine's one
implementation of the rules both sides need (file hashing, JSON cleaning, the tasks' names).
Engine errors come through as the engine's own typed classes, re-exported here.
Modules that import torch are imported inside the functions that need them, so the web process
starts without it.
"""
from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

from django.conf import settings

from leaderboard.submissions.models import EvaluationJob, Submission
from workers import families, hub, protocol_catalog, uploads
from workers.benchmarks import BENCHMARKS, PAPER, get_benchmark
from workers.contract import (
    EVALUATE_JOB_TASK,
    EXTRACT_SHARD_TASK,
    EngineError,
    EvaluationSpec,
    UploadRefused,
    json_safe,
)
from workers.datasets.base import DatasetError
from workers.provenance import file_sha256

__all__ = [
    "EVALUATE_JOB_TASK", "EXTRACT_SHARD_TASK", "PAPER", "DatasetError", "EngineError", "UploadRefused",
    "architectures", "benchmark_kind", "builtin_models", "check_model_options", "data_root", "data_roots",
    "engine_architectures", "file_sha256", "inspect_upload", "readout_help", "job_output_dir", "job_shard_plan",
    "job_spec", "json_safe", "library_architectures", "loader_workers", "model_folder", "model_preview",
    "offered_protocols", "paper_multiclass", "protocol_choices", "protocol_detail", "protocol_title",
    "protocol_version", "readouts", "resolve_multiclass", "resolve_protocols", "runnable_benchmarks",
    "shard_extract", "units_separable", "write_result_bundle",
]

_UPLOAD_KINDS = {
    Submission.Source.WEIGHTS: uploads.WEIGHTS,
    Submission.Source.ONNX: uploads.ONNX,
    Submission.Source.FEATURES: uploads.FEATURES,
    Submission.Source.MODEL_FOLDER: uploads.MODEL_FOLDER,
}


# ---- the registry's lists -----------------------------------------------------------------------

def data_roots() -> dict[str, Path]:
    """settings.SHELFMARK_DATA_ROOTS ("name=ROOT,name=ROOT") as a mapping."""
    roots = {}
    for item in settings.SHELFMARK_DATA_ROOTS.split(","):
        name, sep, root = item.partition("=")
        if sep and name.strip() and root.strip():
            roots[name.strip()] = Path(root.strip())
    return roots


def data_root(benchmark: str) -> Path | None:
    return data_roots().get(benchmark)


def runnable_benchmarks() -> list[str]:
    """Engine benchmarks this installation can run: the demos and those with a data root."""
    roots = data_roots()
    return [name for name, benchmark in BENCHMARKS.items() if not benchmark.needs_root or name in roots]


def builtin_models() -> list[str]:
    """Models whose (pretrained) weights ship with the engine."""
    return families.builtin_models()


def architectures() -> list[str]:
    """Every architecture a weights file may be uploaded for: the engine's, timm:ARCH and open_clip:ARCH."""
    return families.engine_architectures() + library_architectures()


def library_architectures() -> list[str]:
    """timm:ARCH and open_clip:ARCH names of the installed libraries (from the index: no torch)."""
    return families.library_architectures(families.TIMM) + families.library_architectures(families.OPEN_CLIP)


def readouts() -> dict[str, list[str]]:
    """The readouts each family offers."""
    return {family: list(options) for family, options in families.READOUTS.items()}


def readout_help() -> dict[str, str]:
    """What each readout reads the features from, in a few words."""
    return dict(families.READOUT_HELP)


def engine_architectures() -> list[str]:
    """The engine's own architectures (torchvision and EfficientNet-Lite)."""
    return families.engine_architectures()


def model_preview(name: str) -> dict:
    """What a model name or Hub id resolves to (family, preprocessing, readouts, commit), without torch:
    a Hub repo's configuration files are fetched into the shared cache, never its weights."""
    return families.preview(name, cache_dir=settings.SHELFMARK_HF_CACHE, token=settings.SHELFMARK_HF_TOKEN)


def check_model_options(family: str, readout: str, layer: str) -> None:
    """Refuse a readout or a layer the model's family does not offer (EngineError)."""
    families.check_readout(family, readout or None, layer or None)


def benchmark_kind(benchmark: str) -> str:
    """"classification" (linear SVMs on the features), "retrieval" (ranking by cosine similarity), or
    "" for a name the engine does not know (a job row left from a benchmark since removed)."""
    known = BENCHMARKS.get(benchmark)
    return known.kind if known else ""


def protocol_choices() -> list[tuple[str, str, str]]:
    """(name, title, benchmark kind) of every protocol a job can ask for."""
    return [(info.name, info.title, info.kind) for info in protocol_catalog.PROTOCOLS.values()]


def protocol_version(name: str) -> str:
    """The protocol's current version: a result made at another one is re-run by `rescore`."""
    info = protocol_catalog.PROTOCOLS.get(name)
    return info.version if info else ""


def protocol_title(name: str) -> str:
    info = protocol_catalog.PROTOCOLS.get(name)
    return info.title if info else name


def resolve_protocols(benchmark: str, requested: list[str]) -> list[str]:
    """The protocols a job on `benchmark` runs: those of `requested` it can run, else its defaults."""
    known = get_benchmark(benchmark)
    offered = protocol_catalog.applicable(known.kind, known.metric)
    chosen = [name for name in requested if name in offered]
    return protocol_catalog.resolve(known.kind, known.metric, chosen, benchmark=benchmark)


def offered_protocols(benchmark: str) -> list[str]:
    known = get_benchmark(benchmark)
    return protocol_catalog.applicable(known.kind, known.metric)


def protocol_detail(entry: dict) -> str:
    """A protocol's settings in a few words, for a board's protocol column ("one-vs-one", "k = 20")."""
    settings = entry.get("settings", {})
    name = entry.get("name")
    if name == "svm":
        scheme = settings.get("multiclass", "")
        return {"ovo": "one-vs-one", "ovr": "one-vs-rest"}.get(scheme, scheme)
    if name == "knn":
        return f"k = {settings.get('k')}, T = {settings.get('temperature')}"
    if name == "linear_probe":
        chosen = settings.get("chosen_c")
        return f"C = {chosen:g}" if isinstance(chosen, (int, float)) else "C per class"
    if name == "fewshot":
        return f"{settings.get('headline_shots')}-shot, {settings.get('draws')} draws"
    return ""


def units_separable(path_a: Path, path_b: Path) -> bool | None:
    """Whether two results' scores can be told apart by a paired bootstrap over their test units;
    None when they were not scored on the same units (or the outputs are gone)."""
    from workers import confidence

    try:
        a, b = confidence.load_units(path_a), confidence.load_units(path_b)
    except (OSError, ValueError, KeyError):
        return None
    if not confidence.comparable(a, b):
        return None
    return confidence.separable(a, b)


def paper_multiclass(benchmark: str) -> str:
    """The multi-class SVM scheme [1] used on `benchmark`: "ovo" (one-vs-one) or "ovr" (one-vs-rest)."""
    return get_benchmark(benchmark).paper_multiclass


def resolve_multiclass(benchmark: str, choice: str) -> str:
    """What a submitter's choice ("ovr", "ovo" or PAPER) means on `benchmark`."""
    return get_benchmark(benchmark).multiclass(choice)


# ---- uploads ------------------------------------------------------------------------------------

def inspect_upload(source: str, path: Path, *, architecture: str = "", benchmark: str = "",
                   folder_into: Path | None = None):
    """The engine's check of an uploaded file (`workers.uploads.inspect_upload`) for a submission of
    `source`; returns its `UploadInspection` (format, sha256, suffix) or raises an `EngineError`.
    A model folder (zip) is extracted into `folder_into` as it is checked."""
    return uploads.inspect_upload(_UPLOAD_KINDS[source], path, architecture=architecture or None,
                                  benchmark=benchmark or None, data_root=data_root(benchmark) if benchmark else None,
                                  folder_into=folder_into, max_folder_bytes=2 * settings.SHELFMARK_MAX_UPLOAD_BYTES)


def model_folder(submission: Submission) -> Path:
    """Where a submitted model folder is kept, extracted (web and workers share MEDIA_ROOT)."""
    return Path(settings.MEDIA_ROOT) / "submissions" / str(submission.pk) / "model"


# ---- jobs ---------------------------------------------------------------------------------------

def job_output_dir(job: EvaluationJob) -> Path:
    """Where the engine writes the job's features, labels and splits (read by the bundle writer)."""
    return Path(settings.MEDIA_ROOT) / "jobs" / str(job.pk)


def loader_workers() -> int:
    """DataLoader worker processes for this process: none in a Celery prefork child (a daemon
    process may not start children), else up to 8 (a `--pool solo` or `threads` GPU worker,
    where decoding in parallel is what keeps the GPU fed)."""
    if multiprocessing.current_process().daemon:
        return 0
    return max(0, min(8, (os.cpu_count() or 1) - 1))


def job_spec(job: EvaluationJob) -> EvaluationSpec:
    """The engine's `EvaluationSpec` for a job row: the only translation from the database to the engine."""
    submission = job.submission
    upload = Path(settings.MEDIA_ROOT) / submission.upload if submission.upload else None
    spec = EvaluationSpec(
        benchmark=job.benchmark,
        data_root=data_root(job.benchmark),
        cache_dir=Path(settings.SHELFMARK_FEATURE_CACHE) if job.use_feature_cache else None,
        prepared_dir=Path(settings.SHELFMARK_PREPARED_DIR) if settings.SHELFMARK_PREPARED_DIR else None,
        output_dir=job_output_dir(job),
        num_workers=loader_workers(),
        multiclass=job.multiclass,
        decode=settings.SHELFMARK_DECODE,
        solver=settings.SHELFMARK_SOLVER,
        layer=submission.layer or None,
        pooling=submission.pooling or "avg",
        readout=submission.readout or None,
        hub_cache=Path(settings.SHELFMARK_HF_CACHE),
        hub_token=settings.SHELFMARK_HF_TOKEN,
        protocols=list(job.protocols) or None,
        # read (and written) shard by shard: the shards' tasks fill the same cache entries (workers/shards.py)
        shard_size=job_shard_size(job),
    )
    if submission.source == Submission.Source.BUILTIN:
        spec.model, spec.random_init = pinned_model(submission), submission.random_init
    elif submission.source == Submission.Source.WEIGHTS:
        spec.model, spec.weights = submission.architecture, upload
    elif submission.source == Submission.Source.MODEL_FOLDER:
        spec.model_dir = model_folder(submission)
    elif submission.source == Submission.Source.ONNX:
        spec.onnx = upload
    elif submission.source == Submission.Source.FEATURES:
        spec.features = upload
    return spec


def job_shard_size(job: EvaluationJob) -> int:
    """The shard size a job's features are read and written in: its plan's, once planned (a worker with
    another SHELFMARK_SHARD_SIZE still reads the shards the others wrote), else this installation's."""
    if not job.use_feature_cache:
        return 0
    planned = job.shards.order_by("index").values_list("start", "stop").first() if job.pk else None
    return planned[1] - planned[0] if planned else settings.SHELFMARK_SHARD_SIZE


def job_shard_plan(job: EvaluationJob) -> list[dict]:
    """The extraction shards of a job (workers/shards.py) as plain dicts; []: not worth splitting (a small
    benchmark, precomputed features, or a fresh re-run that bypasses the cache)."""
    from workers.shards import plan

    spec = job_spec(job)
    if not spec.shard_size or spec.cache_dir is None:
        return []
    return [shard.to_dict() for shard in plan(spec)]


def shard_extract(job: EvaluationJob, shard: dict, progress) -> dict:
    """Extract one shard of a job into the shared feature cache; what it did (images, seconds, ...)."""
    from workers.evaluate import extract_shard
    from workers.shards import Shard

    return extract_shard(job_spec(job), Shard(**shard), progress)


def pinned_model(submission: Submission) -> str:
    """The model a job loads: a Hub id at the commit it resolved to when submitted, so that a later push
    to the repository (or a moved tag) never changes what an accepted submission measures."""
    info = submission.model_info or {}
    if info.get("commit") and info.get("repo") and hub.parse_hub_id(submission.architecture):
        return f"{hub.PREFIX}{info['repo']}@{info['commit']}"
    return submission.architecture


# ---- results ------------------------------------------------------------------------------------

def write_result_bundle(target: Path, *, features_npz: Path, protocol: dict, provenance: dict, score: float,
                        metric: str, units_npz: Path | None = None, confidence_interval: dict | None = None) -> Path:
    """The reproduction zip of a result (workers/bundle.py), written atomically at `target`."""
    from workers.bundle import write_bundle

    return write_bundle(target, features_npz=features_npz, protocol=protocol, provenance=provenance, score=score,
                        metric=metric, units_npz=units_npz, confidence_interval=confidence_interval)


# ---- this installation's datasets (the installation page) ---------------------------------------

def installation_benchmarks(*, show_paths: bool) -> list[dict]:
    """Every benchmark: whether this installation runs it, the image counts its last fetch or check
    verified (each ROOT's record, workers/datasets/installed.py: never recounted while a page is
    served), and the commands that add it. Without `show_paths` the server's folders are left out and
    the commands use /data/NAME."""
    from workers.datasets.installed import benchmark_status, roots_line, suggested_root

    roots = data_roots()
    rows = [row.to_dict() for row in benchmark_status(roots, instruction_roots=None if show_paths else {})]
    if not show_paths:
        hidden = dict.fromkeys(roots, "…")
        for row in rows:
            row["root"] = None
            row["detail"] = "" if row["state"] in ("unchecked", "broken", "missing") else row["detail"]
            if row["roots_line"]:
                row["roots_line"] = roots_line(row["name"], suggested_root(row["name"], {}), hidden)
    return rows
