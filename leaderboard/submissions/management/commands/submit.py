"""Submit a model from the command line, through the same validation and queue as the form."""
import json
import sys
import time
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from leaderboard.submissions import services
from leaderboard.submissions.models import EvaluationJob, Submission
from leaderboard.submissions.validation import SubmissionRefused


class Command(BaseCommand):
    help = "Submit a model (built-in, or an architecture with --weights) on a benchmark; --wait for the score."

    def add_arguments(self, parser):
        parser.add_argument("--user", required=True, help="owner's username")
        parser.add_argument("--model", required=True, help="architecture or built-in model name")
        parser.add_argument("--name", help="name on the leaderboard (default: the model)")
        parser.add_argument("--weights", type=Path, help="safetensors or state_dict file for the architecture")
        parser.add_argument("--onnx", type=Path, help="an ONNX model instead of --model/--weights")
        parser.add_argument("--features", type=Path, help="precomputed features (.npz) for one benchmark")
        parser.add_argument("--random-init", action="store_true")
        parser.add_argument("--multiclass", default=Submission.Multiclass.PAPER, choices=Submission.Multiclass.values,
                            help="multi-class SVMs: as the paper [1] (default), one-vs-rest or one-vs-one")
        parser.add_argument("--benchmark", required=True, action="append", help="engine benchmark (repeatable)")
        parser.add_argument("--protocol", action="append", default=[], dest="protocols",
                            help="svm, knn, linear_probe, fewshot, ranking, easy, medium, hard (repeatable; "
                                 "default: each benchmark's)")
        parser.add_argument("--public", action="store_true", help="make the submission public at once")
        parser.add_argument("--wait", action="store_true", help="wait for the result and print it as one JSON line")
        parser.add_argument("--timeout", type=float, default=6 * 3600, help="seconds --wait waits at most")

    def handle(self, *args, **opts):
        try:
            owner = get_user_model().objects.get(username=opts["user"])
        except get_user_model().DoesNotExist:
            raise CommandError(f"no user named {opts['user']!r}") from None
        upload = opts["weights"] or opts["onnx"] or opts["features"]
        if opts["onnx"]:
            source = Submission.Source.ONNX
        elif opts["features"]:
            source = Submission.Source.FEATURES
        elif opts["weights"]:
            source = Submission.Source.WEIGHTS
        else:
            source = Submission.Source.BUILTIN
        if upload is not None and not upload.is_file():
            raise CommandError(f"file not found: {upload}")
        request = services.SubmissionRequest(
            owner=owner, model_name=opts["name"] or opts["model"], source=source, benchmarks=opts["benchmark"],
            architecture=opts["model"], random_init=opts["random_init"], upload=upload, keep_upload=True,
            multiclass=opts["multiclass"], protocols=opts["protocols"],
        )
        try:
            submission = services.submission_create(request)
        except SubmissionRefused as exc:
            raise CommandError(f"refused: {exc}") from None
        if opts["public"]:
            services.submission_make_public(submission)
        if not opts["wait"]:
            self.stdout.write(f"submission {submission.pk} queued: {submission.get_absolute_url()}")
            return
        self._wait(submission, opts["timeout"])

    def _wait(self, submission, timeout: float):
        deadline = time.monotonic() + timeout
        while True:
            jobs = list(submission.jobs.select_related("result", "dataset__metric"))
            if all(job.is_finished for job in jobs):
                break
            if time.monotonic() > deadline:
                raise CommandError(f"timed out after {timeout:.0f}s; submission {submission.pk} is still running")
            time.sleep(0.5)
        failed = [job for job in jobs if job.status != EvaluationJob.Status.DONE]
        for job in jobs:
            if job.status == EvaluationJob.Status.DONE:
                self.stdout.write(json.dumps({
                    "submission": submission.pk, "job": job.pk, "benchmark": job.benchmark,
                    "metric": job.evaluation.get("metric"), "score": job.evaluation.get("score"),
                    "confidence_interval": job.evaluation.get("confidence_interval"),
                    "board_score": job.result.score, "unit": job.dataset.metric.unit,
                    "protocols": {entry["name"]: {"score": entry["score"], "metric": entry["metric"],
                                                  "confidence_interval": entry["confidence_interval"]}
                                  for entry in job.evaluation.get("protocols", [])},
                    "provenance": job.result.provenance,
                }))
        if failed:
            for job in failed:
                sys.stderr.write(f"{job.benchmark}: {job.status}: {job.error or job.status}\n")
            raise CommandError(f"{len(failed)} job(s) did not finish", returncode=2)
