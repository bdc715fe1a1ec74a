"""The reproduction bundle of a finished job: written once under MEDIA_ROOT/bundles, then reused."""
from pathlib import Path

from django.conf import settings
from django.http import Http404

from workers.bundle import write_bundle

from .models import EvaluationJob


def job_bundle(job: EvaluationJob) -> Path:
    """The zip for `job`'s result, writing it the first time it is asked for."""
    media = Path(settings.MEDIA_ROOT)
    if job.bundle and (media / job.bundle).is_file():
        return media / job.bundle
    features = job.evaluation.get("artifacts", {}).get("features.npz")
    if not features or not Path(features).is_file():
        raise Http404("The features of this result are no longer stored; no bundle can be made.")
    target = media / "bundles" / f"shelfmark-{job.benchmark}-result-{job.result_id}.zip"
    write_bundle(
        target, features_npz=Path(features), protocol=job.evaluation.get("protocol", {}),
        provenance=job.result.provenance, score=job.evaluation["score"], metric=job.evaluation["metric"],
    )
    EvaluationJob.objects.filter(pk=job.pk).update(bundle=str(target.relative_to(media)))
    return target
