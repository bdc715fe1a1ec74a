"""Turns a job row into the engine's `EvaluationSpec` (the only bridge from the DB to the engine)."""
from __future__ import annotations

from pathlib import Path

from django.conf import settings

from workers.contract import EvaluationSpec

from . import engine
from .models import EvaluationJob, Submission


def job_output_dir(job: EvaluationJob) -> Path:
    """Where the engine writes the job's features, labels and splits (read by the bundle writer)."""
    return Path(settings.MEDIA_ROOT) / "jobs" / str(job.pk)


def job_spec(job: EvaluationJob) -> EvaluationSpec:
    submission = job.submission
    upload = Path(settings.MEDIA_ROOT) / submission.upload if submission.upload else None
    spec = EvaluationSpec(
        benchmark=job.benchmark,
        data_root=engine.data_root(job.benchmark),
        cache_dir=Path(settings.SHELFMARK_FEATURE_CACHE),
        output_dir=job_output_dir(job),
        # A Celery prefork child is a daemon process and may not start DataLoader workers.
        num_workers=0,
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
