"""Turns a job row into the engine's `EvaluationSpec` (the only bridge from the DB to the engine)."""
from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

from django.conf import settings

from workers.contract import EvaluationSpec

from . import engine
from .models import EvaluationJob, Submission


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
    submission = job.submission
    upload = Path(settings.MEDIA_ROOT) / submission.upload if submission.upload else None
    spec = EvaluationSpec(
        benchmark=job.benchmark,
        data_root=engine.data_root(job.benchmark),
        cache_dir=Path(settings.SHELFMARK_FEATURE_CACHE),
        output_dir=job_output_dir(job),
        num_workers=loader_workers(),
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
