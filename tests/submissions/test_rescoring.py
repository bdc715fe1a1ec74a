"""Re-scoring a finished submission: protocols it lacks or ran at an older version are queued (from the
feature cache), and a newer result of a protocol takes its older one off the live board."""
import pytest
from django.core.management import call_command

from leaderboard.boards.selectors import board_rows
from leaderboard.submissions.models import EvaluationJob, Submission
from leaderboard.submissions.services import (
    SubmissionRequest,
    job_complete,
    submission_add_protocols,
    submission_create,
    submission_make_public,
)
from workers.contract import EvaluationResult
from workers.protocol_catalog import PROTOCOLS


def _evaluation(*protocols, score=0.9, version="shelfmark-knn/1.0"):
    """What the engine returns, for the protocols named; knn at `version`, the others at their current one."""
    entries = [{"name": name, "title": name, "version": version if name == "knn" else PROTOCOLS[name].version,
                "metric": "mean_class_accuracy", "score": score, "per_class": {},
                "confidence_interval": {"low": score - 0.01, "high": score + 0.01, "level": 0.95},
                "settings": {"protocol": name, "k": 20, "temperature": 0.07, "multiclass": "ovr"}, "artifacts": {}}
               for name in protocols]
    return EvaluationResult(benchmark="digits", metric="mean_class_accuracy", score=score, protocols=entries,
                            provenance={"git_commit": "abc", "model": {}})


@pytest.fixture
def finished(make_user, digits):
    submission = submission_create(SubmissionRequest(owner=make_user("ada"), model_name="Lite0",
                                                     source=Submission.Source.BUILTIN,
                                                     architecture="efficientnet_lite0", benchmarks=["digits"],
                                                     protocols=["svm", "knn"]))
    job = submission.jobs.get()
    EvaluationJob.objects.filter(pk=job.pk).update(status=EvaluationJob.Status.RUNNING)
    job_complete(job.pk, _evaluation("svm", "knn", version="shelfmark-knn/0.9"), duration_s=1.0)
    submission_make_public(submission)
    return submission


def test_a_protocol_run_at_an_older_version_is_queued_again_and_its_new_result_supersedes_the_old(finished,
                                                                                                   digits):
    queued = submission_add_protocols(finished, ["svm", "knn", "linear_probe"])
    assert [job.protocols for job in queued] == [["knn", "linear_probe"]]   # svm is current: not again
    assert submission_add_protocols(finished, ["knn"]) == []                 # queued already

    job = queued[0]
    EvaluationJob.objects.filter(pk=job.pk).update(status=EvaluationJob.Status.RUNNING)
    job_complete(job.pk, _evaluation("knn", "linear_probe", score=0.95), duration_s=1.0)
    knn_rows = [r for r in board_rows(digits) if r.protocol == "knn"]
    assert [(r.score, r.provenance["protocol_version"]) for r in knn_rows] == [(95.0, "shelfmark-knn/1.0")]
    assert submission_add_protocols(finished, ["svm", "knn", "linear_probe"]) == []

    submission_make_public(finished)   # publishing again (an admin's action) does not bring the old one back
    knn_rows = [r for r in board_rows(digits) if r.protocol == "knn"]
    assert [r.provenance["protocol_version"] for r in knn_rows] == ["shelfmark-knn/1.0"]


def test_the_rescore_command_queues_what_is_missing(finished, capsys):
    call_command("rescore", "--protocol", "fewshot")
    assert capsys.readouterr().out.strip() == "queued 1 job(s)"
    assert finished.jobs.filter(protocols=["fewshot"]).count() == 1


def test_the_page_offers_what_re_scoring_would_queue(finished):
    from leaderboard.submissions.selectors import protocols_to_add

    offered = [name for name, _ in protocols_to_add(finished)]
    assert "knn" in offered and "svm" not in offered   # knn ran at an older version: offered again
    queued = submission_add_protocols(finished, offered)
    assert sorted(queued[0].protocols) == sorted(offered) and protocols_to_add(finished) == []


def test_rescore_on_one_benchmark_leaves_the_others_and_unknown_benchmarks_are_skipped(finished, capsys):
    dataset = finished.jobs.get().dataset
    EvaluationJob.objects.create(submission=finished, benchmark="retired_benchmark", dataset=dataset,
                                 status=EvaluationJob.Status.DONE)
    assert submission_add_protocols(finished, ["fewshot"], benchmarks=["voc2007"]) == []
    call_command("rescore", "--protocol", "fewshot", "--benchmark", "digits")
    assert capsys.readouterr().out.strip() == "queued 1 job(s)"
    assert [job.benchmark for job in finished.jobs.filter(status=EvaluationJob.Status.QUEUED)] == ["digits"]
    with pytest.raises(Exception, match="unknown benchmark 'nope'"):
        call_command("rescore", "--benchmark", "nope")


def test_an_api_client_adds_protocols_and_gets_the_jobs_as_json(finished, client, make_user):
    url = f"/submissions/{finished.pk}/protocols/"
    client.force_login(make_user("eve"))
    assert client.post(url, {"protocol": ["fewshot"]}, HTTP_ACCEPT="application/json").status_code == 403
    client.force_login(finished.owner)
    refused = client.post(url, {"protocol": ["magic"]}, HTTP_ACCEPT="application/json")
    assert refused.status_code == 400 and refused.json() == {"error": "Unknown protocol 'magic'."}
    answer = client.post(url, {"protocol": ["fewshot"]}, HTTP_ACCEPT="application/json").json()
    job = finished.jobs.get(protocols=["fewshot"])
    assert answer == {"queued": [{"job": job.pk, "benchmark": "digits", "protocols": ["fewshot"],
                                  "status_url": f"/submissions/{finished.pk}/status.json"}]}
    assert client.post(url, {"protocol": ["fewshot"]}).status_code == 302   # a browser's form: the page
