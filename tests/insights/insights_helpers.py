"""Helpers of the insights tests: a measurement that lands through the worker's own service."""
from django.utils import timezone

from leaderboard.registry.models import Method, Result
from leaderboard.submissions.models import EvaluationJob, Submission
from leaderboard.submissions.services import job_complete
from workers.contract import EvaluationResult


def evaluation(score: float, low: float, high: float, *, benchmark: str = "digits",
               metric: str = "mean_class_accuracy") -> EvaluationResult:
    """What the engine returns for one svm protocol: a fraction in [0, 1] and its 95% interval, as fractions."""
    entry = {"name": "svm", "title": "svm", "version": "shelfmark-protocols/1.0", "metric": metric, "score": score,
             "per_class": {}, "confidence_interval": {"low": low, "high": high, "level": 0.95},
             "settings": {"protocol": "svm", "multiclass": "ovr"}, "artifacts": {}}
    return EvaluationResult(benchmark=benchmark, metric=metric, score=score, protocols=[entry],
                            provenance={"git_commit": "abc123", "model": {"family": "timm"}})


def running_job(owner, dataset, *, model_name="ResNet-50 (torchvision)", public=True) -> EvaluationJob:
    submission = Submission.objects.create(owner=owner, model_name=model_name, source="weights",
                                           architecture="resnet50", is_public=public)
    return EvaluationJob.objects.create(submission=submission, benchmark=dataset.engine_benchmark or dataset.slug,
                                        dataset=dataset, status="running", sent_at=timezone.now(), task_id="t-1")


def measure(owner, dataset, score, low, high, **job) -> Result:
    """A finished evaluation of `dataset` (engine fractions; the board stores them times engine_scale)."""
    finished = job_complete(running_job(owner, dataset, **job).pk,
                            evaluation(score, low, high, benchmark=dataset.engine_benchmark or dataset.slug),
                            duration_s=1.0)
    return finished.result


def reported(dataset, name, score, *, origin=Result.Origin.REPORTED, **fields) -> Result:
    return Result.objects.create(dataset=dataset, method=Method.objects.create(name=name), score=score,
                                 metric=dataset.metric, kind=Result.Kind.OFF_THE_SHELF, origin=origin, **fields)
