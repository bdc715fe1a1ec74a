"""A job's spec, the one translation of a job row into the engine's `EvaluationSpec`: the multi-class
SVM scheme per benchmark, the decode pipeline, the queue, and the DataLoader size of the process."""
import multiprocessing
import os
import re

import pytest

from leaderboard.engine import job_spec, loader_workers
from leaderboard.submissions.models import Submission
from leaderboard.submissions.services import SubmissionRequest, submission_create
from leaderboard.submissions.validation import SubmissionRefused


def _report(queue):
    queue.put(loader_workers())


def test_a_prefork_child_decodes_in_process():
    # Celery's prefork children are daemon processes, which may not start DataLoader workers.
    queue = multiprocessing.get_context("fork").Queue()
    child = multiprocessing.get_context("fork").Process(target=_report, args=(queue,), daemon=True)
    child.start()
    child.join(30)
    assert queue.get(timeout=5) == 0


def test_a_solo_or_threads_worker_decodes_in_parallel():
    assert loader_workers() == max(0, min(8, (os.cpu_count() or 1) - 1))


@pytest.fixture
def mit67(db, digits, settings, tmp_path):
    """An MIT67 board this installation can run (a data root is configured; the builtin model needs no file)."""
    from leaderboard.registry.models import Dataset

    settings.SHELFMARK_DATA_ROOTS = f"mit67={tmp_path / 'mit67'}"
    return Dataset.objects.create(slug="mit67", name="MIT Indoor 67", task_family=digits.task_family,
                                  metric=digits.metric, engine_benchmark="mit67")


def submit(owner, multiclass=None, benchmarks=("mit67", "digits")):
    extra = {"multiclass": multiclass} if multiclass else {}
    return submission_create(SubmissionRequest(owner=owner, model_name="Lite0", source=Submission.Source.BUILTIN,
                                               architecture="efficientnet_lite0", benchmarks=list(benchmarks),
                                               **extra))


def test_by_default_each_job_trains_the_svms_the_paper_used_on_its_benchmark(make_user, mit67):
    # was: Benchmark.paper_multiclass was never read, so MIT67 (one-vs-one in [1]) ran one-vs-rest
    submission = submit(make_user("ada"))
    schemes = {job.benchmark: (job.multiclass, job_spec(job).multiclass) for job in submission.jobs.all()}
    assert submission.multiclass == "paper"
    assert schemes == {"mit67": ("ovo", "ovo"), "digits": ("ovr", "ovr")}


def test_a_chosen_scheme_applies_to_every_benchmark(make_user, mit67):
    submission = submit(make_user("ada"), multiclass="ovr")
    assert {job.benchmark: job_spec(job).multiclass for job in submission.jobs.all()} == {"mit67": "ovr",
                                                                                        "digits": "ovr"}
    with pytest.raises(SubmissionRefused, match="Unknown multi-class scheme 'svm'"):
        submit(make_user("bob"), multiclass="svm")


def test_the_form_offers_both_schemes_with_the_papers_choice_preselected(client, make_user, mit67):
    client.force_login(make_user("ada"))
    page = client.get("/submissions/new/").content.decode()
    for value in ("paper", "ovr", "ovo"):
        assert f'name="multiclass" value="{value}"' in page
    assert re.findall(r'<input type="radio" name="multiclass" value="(\w+)"[^>]* checked>', page) == ["paper"]
    response = client.post("/submissions/new/", {"model_name": "Lite0", "source": "builtin",
                                                 "builtin_model": "efficientnet_lite0", "benchmarks": ["mit67"],
                                                 "kind": "off_the_shelf", "multiclass": "ovr"})
    assert response.status_code == 302
    assert Submission.objects.get().jobs.get().multiclass == "ovr"


def test_the_decode_setting_and_the_queue_reach_the_job(make_user, digits, settings):
    # was: the decode pipeline was no field of the spec; the queue came from one process's environment
    settings.SHELFMARK_DECODE = "gpu"
    settings.SHELFMARK_GPU_WORKER = True
    job = submit(make_user("ada"), benchmarks=["digits"]).jobs.get()
    assert (job.queue, job_spec(job).decode) == ("gpu", "gpu")
    settings.SHELFMARK_GPU_WORKER = False
    assert submit(make_user("bob"), benchmarks=["digits"]).jobs.get().queue == "cpu"


def test_the_status_page_says_which_svms_each_job_trains(client, make_user, mit67):
    owner = make_user("ada")
    submission = submit(owner)
    client.force_login(owner)
    jobs = client.get(f"/submissions/{submission.pk}/status.json").json()["jobs"]
    assert {job["benchmark"]: job["protocol"] for job in jobs} == {"mit67": "linear SVMs, one-vs-one",
                                                                  "digits": "linear SVMs, one-vs-rest"}
    assert "linear SVMs, one-vs-one" in client.get(submission.get_absolute_url()).content.decode()
