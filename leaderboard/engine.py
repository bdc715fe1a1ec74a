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
from workers import uploads
from workers.benchmarks import BENCHMARKS, PAPER, get_benchmark
from workers.contract import EVALUATE_JOB_TASK, EngineError, EvaluationSpec, UploadRefused, json_safe
from workers.datasets.base import DatasetError
from workers.provenance import file_sha256

__all__ = [
    "EVALUATE_JOB_TASK", "PAPER", "DatasetError", "EngineError", "UploadRefused", "architectures", "benchmark_kind",
    "builtin_models", "data_root", "data_roots", "file_sha256", "inspect_upload", "job_output_dir", "job_spec",
    "json_safe", "loader_workers", "paper_multiclass", "resolve_multiclass", "runnable_benchmarks",
    "write_result_bundle",
]

_UPLOAD_KINDS = {
    Submission.Source.WEIGHTS: uploads.WEIGHTS,
    Submission.Source.ONNX: uploads.ONNX,
    Submission.Source.FEATURES: uploads.FEATURES,
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
    from workers import models

    return [name for name in models.list_models() if models.ARCHITECTURES[name].builtin_weights is not None]


def architectures() -> list[str]:
    """Every architecture the engine can build (weights may be uploaded for any of them)."""
    from workers import models

    return models.list_models()


def benchmark_kind(benchmark: str) -> str:
    """"classification" (linear SVMs on the features), "retrieval" (ranking by cosine similarity), or
    "" for a name the engine does not know (a job row left from a benchmark since removed)."""
    known = BENCHMARKS.get(benchmark)
    return known.kind if known else ""


def paper_multiclass(benchmark: str) -> str:
    """The multi-class SVM scheme [1] used on `benchmark`: "ovo" (one-vs-one) or "ovr" (one-vs-rest)."""
    return get_benchmark(benchmark).paper_multiclass


def resolve_multiclass(benchmark: str, choice: str) -> str:
    """What a submitter's choice ("ovr", "ovo" or PAPER) means on `benchmark`."""
    return get_benchmark(benchmark).multiclass(choice)


# ---- uploads ------------------------------------------------------------------------------------

def inspect_upload(source: str, path: Path, *, architecture: str = "", benchmark: str = ""):
    """The engine's check of an uploaded file (`workers.uploads.inspect_upload`) for a submission of
    `source`; returns its `UploadInspection` (format, sha256, suffix) or raises an `EngineError`."""
    return uploads.inspect_upload(_UPLOAD_KINDS[source], path, architecture=architecture or None,
                                  benchmark=benchmark or None, data_root=data_root(benchmark) if benchmark else None)


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
        cache_dir=Path(settings.SHELFMARK_FEATURE_CACHE),
        output_dir=job_output_dir(job),
        num_workers=loader_workers(),
        multiclass=job.multiclass,
        decode=settings.SHELFMARK_DECODE,
    )
    if submission.source == Submission.Source.BUILTIN:
        spec.model, spec.random_init = submission.architecture, submission.random_init
    elif submission.source == Submission.Source.WEIGHTS:
        spec.model, spec.weights = submission.architecture, upload
    elif submission.source == Submission.Source.ONNX:
        spec.onnx = upload
    elif submission.source == Submission.Source.FEATURES:
        spec.features = upload
    return spec


# ---- results ------------------------------------------------------------------------------------

def write_result_bundle(target: Path, *, features_npz: Path, protocol: dict, provenance: dict, score: float,
                        metric: str) -> Path:
    """The reproduction zip of a result (workers/bundle.py), written atomically at `target`."""
    from workers.bundle import write_bundle

    return write_bundle(target, features_npz=features_npz, protocol=protocol, provenance=provenance, score=score,
                        metric=metric)
