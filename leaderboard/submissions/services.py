"""Writes of the submission flow: create (validate, store, queue), send, progress, finish, cancel.

The form, the `submit` command, the admin and the Celery task all call these functions, so each
rule lives once: nothing is stored before validation passed, a job row exists before its message is
sent, and a job produces at most one registry Result however often its task runs. The engine is
reached through leaderboard/engine.py only; jobs are sent by task name through the Celery app.
"""
from __future__ import annotations

import logging
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError

from leaderboard import engine
from leaderboard.celery import app as celery_app
from leaderboard.insights.notifications import job_finished
from leaderboard.registry.models import Dataset, Method, Result

from . import queue_selectors
from .joblog import append as _append
from .joblog import stamped as _log_line
from .models import EvaluationJob, ExtractionShard, JobResult, Submission
from .queue import attempt_gone, job_send
from .selectors import current_protocols
from .validation import DuplicateSubmission, OverAllowance, SubmissionRefused, check_upload

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.5  # at most ~2 progress writes per second per job


@dataclass
class SubmissionRequest:
    """What a submitter asks for, from the form or the command line."""

    owner: object
    model_name: str
    source: str
    benchmarks: list[str]
    architecture: str = ""
    random_init: bool = False
    upload: Path | None = None          # a file on disk (the upload's temporary file, or a CLI path)
    upload_name: str = ""
    keep_upload: bool = False              # True: copy the file (a CLI path), False: move it (a temp upload)
    multiclass: str = Submission.Multiclass.PAPER   # the SVM scheme of multi-class benchmarks
    protocols: list[str] = field(default_factory=list)   # "" = each benchmark's defaults (workers/protocol_catalog)
    readout: str = ""                      # library models: what the features are read from ("" = default)
    layer: str = ""                        # engine and timm models: a layer ("" = the penultimate features)
    pooling: str = "avg"
    description: str = ""
    paper_url: str = ""
    bibtex: str = ""
    kind: str = Result.Kind.OFF_THE_SHELF
    dedupe: bool = False                   # the form: the same request sent again within minutes is not new


def benchmark_datasets(benchmarks: list[str]) -> dict[str, Dataset]:
    """The registry dataset of each requested benchmark; refuses those this installation can't run."""
    if not benchmarks:
        raise SubmissionRefused("Choose at least one benchmark.")
    runnable = set(engine.runnable_benchmarks())
    datasets = {d.engine_benchmark: d for d in Dataset.objects.filter(engine_benchmark__in=benchmarks)}
    for name in benchmarks:
        if name not in runnable:
            raise SubmissionRefused(f"Benchmark '{name}' is not available on this installation (no data for it).")
        if name not in datasets:
            raise SubmissionRefused(f"Benchmark '{name}' has no leaderboard in the registry.")
    return {name: datasets[name] for name in benchmarks}


@dataclass
class ValidatedRequest:
    """What the checks found: the boards, the engine's inspection of the upload, what the model resolved to."""

    datasets: dict[str, Dataset]
    inspection: object | None = None     # workers.uploads.UploadInspection; None without an upload
    model_info: dict = field(default_factory=dict)
    staging: Path | None = None          # a model folder, extracted while it was checked


def validate_request(req: SubmissionRequest) -> ValidatedRequest:
    """Every check that can refuse a submission, before anything is stored (a model folder is
    extracted to a staging folder as it is checked, and removed if anything refuses it)."""
    if not req.model_name.strip():
        raise SubmissionRefused("Give the model a name.")
    refusal = queue_selectors.allowance(req.owner).refusal(new_jobs=max(len(req.benchmarks), 1))
    if refusal:
        raise OverAllowance(refusal)
    if req.multiclass not in Submission.Multiclass.values:
        raise SubmissionRefused(f"Unknown multi-class scheme '{req.multiclass}'.")
    if req.pooling not in ("avg", "max"):
        raise SubmissionRefused(f"Unknown pooling '{req.pooling}': use avg or max.")
    known_protocols = {name for name, _, _ in engine.protocol_choices()}
    unknown = [name for name in req.protocols if name not in known_protocols]
    if unknown:
        raise SubmissionRefused(f"Unknown protocol '{unknown[0]}'.")
    datasets = benchmark_datasets(req.benchmarks)
    source = req.source
    Source = Submission.Source
    if source == Source.BUILTIN:
        model_info = _named_model(req)
        hub_model = "commit" in model_info
        if not (hub_model or req.random_init or req.architecture in engine.builtin_models()):
            raise SubmissionRefused(f"'{req.architecture}' is not a built-in model of the engine: give a Hub id "
                                    "(hf-hub:ORG/NAME), upload weights for it, or choose random initialisation.")
        return ValidatedRequest(datasets, model_info=model_info)
    if source == Source.WEIGHTS:
        if req.architecture not in engine.architectures():
            raise SubmissionRefused(f"'{req.architecture}' is not an architecture the engine knows.")
        model_info = _named_model(req)
        _require_upload(req, "a weights file")
        return ValidatedRequest(datasets, check_upload(source, req.upload, architecture=req.architecture), model_info)
    if source == Source.MODEL_FOLDER:
        _require_upload(req, "a model folder (.zip)")
        staging = Path(settings.MEDIA_ROOT) / "staging" / uuid.uuid4().hex
        try:
            inspection = check_upload(source, req.upload, folder_into=staging)
            about = inspection.about
            _check_options(about["family"], req)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        model_info = {"family": about["family"], "preprocessing": about["data_config"],
                      "default_readout": about["readout"], "architecture": about["architecture"]}
        return ValidatedRequest(datasets, inspection, model_info, staging)
    if source == Source.ONNX:
        _require_upload(req, "an ONNX file")
        return ValidatedRequest(datasets, check_upload(source, req.upload))
    if source == Source.FEATURES:
        if len(req.benchmarks) != 1:
            raise SubmissionRefused("Precomputed features are for exactly one benchmark: choose one.")
        _require_upload(req, "a features file (.npz)")
        return ValidatedRequest(datasets, check_upload(source, req.upload, benchmark=req.benchmarks[0]))
    raise SubmissionRefused(f"Unknown kind of submission '{source}'.")


def _named_model(req: SubmissionRequest) -> dict:
    """What a model name or Hub id resolves to (the engine's preview: no torch, no weights), with the
    readout and layer asked for checked against its family."""
    try:
        info = engine.model_preview(req.architecture)
    except engine.EngineError as exc:
        raise SubmissionRefused(str(exc)) from None
    _check_options(info["family"], req)
    return info


def _check_options(family: str, req: SubmissionRequest) -> None:
    try:
        engine.check_model_options(family, req.readout, req.layer)
    except engine.EngineError as exc:
        raise SubmissionRefused(str(exc)) from None


def job_queue() -> str:
    """The queue new jobs go to: the GPU workers' when settings say one consumes it, else the CPU workers'."""
    return settings.SHELFMARK_GPU_QUEUE if settings.SHELFMARK_GPU_WORKER else settings.SHELFMARK_CPU_QUEUE


def _require_upload(req: SubmissionRequest, what: str) -> None:
    if req.upload is None or not Path(req.upload).is_file():
        raise SubmissionRefused(f"This kind of submission needs {what}.")


def submission_create(req: SubmissionRequest) -> Submission:
    """Validate, store the file under MEDIA_ROOT, create the submission and one queued job per benchmark.

    Jobs are sent to the broker when the transaction commits; if the broker is down they stay queued
    with `sent_at` empty and `requeue_pending` sends them later. Raises `SubmissionRefused`.
    """
    req.upload = Path(req.upload) if req.upload is not None else None
    checked = validate_request(req)
    datasets, inspection = checked.datasets, checked.inspection
    Source = Submission.Source
    kind = req.kind if req.source in (Source.FEATURES, Source.ONNX) else Result.Kind.OFF_THE_SHELF
    protocols = {name: engine.resolve_protocols(name, req.protocols) for name in datasets}
    stored: Path | None = None
    try:
        with transaction.atomic():
            # The owner's row is the lock: two copies of a form sent at once (a double click) are checked
            # one after the other, against the allowance and for a duplicate, where the first is visible.
            get_user_model().objects.select_for_update().filter(pk=req.owner.pk).first()
            refusal = queue_selectors.allowance(req.owner).refusal(new_jobs=max(len(req.benchmarks), 1))
            if refusal:
                raise OverAllowance(refusal)
            if req.dedupe:
                fingerprint = {
                    "source": req.source, "model_name": req.model_name.strip(), "kind": kind,
                    "architecture": req.architecture if req.source in (Source.BUILTIN, Source.WEIGHTS) else "",
                    "random_init": req.random_init and req.source == Source.BUILTIN, "multiclass": req.multiclass,
                    "readout": req.readout, "layer": req.layer, "pooling": req.pooling,
                    "upload_sha256": inspection.sha256 if inspection is not None else ""}
                earlier = queue_selectors.recent_duplicate(req.owner, fingerprint, protocols)
                if earlier is not None:
                    raise DuplicateSubmission(earlier)
            submission = Submission.objects.create(
                owner=req.owner, model_name=req.model_name.strip(), description=req.description,
                paper_url=req.paper_url, bibtex=req.bibtex, source=req.source,
                architecture=req.architecture if req.source in (Source.BUILTIN, Source.WEIGHTS) else "",
                random_init=req.random_init and req.source == Source.BUILTIN, kind=kind, multiclass=req.multiclass,
                readout=req.readout, layer=req.layer, pooling=req.pooling,
                model_info={**checked.model_info, "readout": req.readout or checked.model_info.get("default_readout")},
            )
            if inspection is not None:
                stored = _store_upload(submission, req, inspection.suffix)
                submission.upload = str(stored.relative_to(settings.MEDIA_ROOT))
                submission.upload_format = inspection.format
                submission.upload_sha256 = inspection.sha256
                submission.save(update_fields=["upload", "upload_format", "upload_sha256"])
            if checked.staging is not None:
                checked.staging.rename(engine.model_folder(submission))
            for name, dataset in datasets.items():
                _job_create(submission, name, dataset, engine.resolve_multiclass(name, req.multiclass),
                            protocols[name])
    except BaseException:
        if stored is not None:
            shutil.rmtree(stored.parent, ignore_errors=True)
        if checked.staging is not None:
            shutil.rmtree(checked.staging, ignore_errors=True)
        raise
    return submission


def _job_create(submission: Submission, benchmark: str, dataset: Dataset, multiclass: str,
                protocols: list[str]) -> EvaluationJob:
    """A queued job, sent to the broker when the transaction commits."""
    queue = job_queue()
    job = EvaluationJob.objects.create(
        submission=submission, benchmark=benchmark, dataset=dataset, queue=queue, task_id=str(uuid.uuid4()),
        multiclass=multiclass, protocols=protocols,
        log=_log_line(f"queued on '{queue}': {', '.join(protocols)}"),
    )
    transaction.on_commit(lambda job_id=job.pk: job_send(job_id))
    return job


def submission_add_protocols(submission: Submission, protocols: list[str], *,
                             benchmarks: list[str] | None = None) -> list[EvaluationJob]:
    """Score a submission's features with protocols it has not run yet, or whose version changed since:
    one new job per benchmark (of `benchmarks`, default all the submission's that the engine knows).

    The features come from the engine's feature cache (the model is not run again where they are
    there), so adding a protocol costs the protocol alone. Returns the jobs queued (none when every
    asked protocol ran at its current version or is running: `selectors.current_protocols`).
    """
    known = {name for name, _, _ in engine.protocol_choices()}
    unknown = [name for name in protocols if name not in known]
    if unknown:
        raise SubmissionRefused(f"Unknown protocol '{unknown[0]}'.")
    queued = []
    with transaction.atomic():
        # the submission's row is the lock: two requests adding protocols at once queue them once
        Submission.objects.select_for_update().filter(pk=submission.pk).first()
        jobs = list(submission.jobs.select_related("dataset").prefetch_related("job_results__result"))
        covered = current_protocols(jobs)
        refusal = queue_selectors.allowance(submission.owner).refusal(new_jobs=1, new_submission=False)
        if refusal:
            raise OverAllowance(refusal)
        for benchmark in dict.fromkeys(job.benchmark for job in jobs):
            if not engine.benchmark_kind(benchmark) or benchmarks is not None and benchmark not in benchmarks:
                continue
            mine = [job for job in jobs if job.benchmark == benchmark]
            wanted = [name for name in engine.offered_protocols(benchmark)
                      if name in protocols and (benchmark, name) not in covered]
            if wanted:
                queued.append(_job_create(submission, benchmark, mine[0].dataset, mine[0].multiclass, wanted))
    return queued


def _store_upload(submission: Submission, req: SubmissionRequest, suffix: str) -> Path:
    folder = Path(settings.MEDIA_ROOT) / "submissions" / str(submission.pk)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"upload{suffix}"
    if req.keep_upload:
        shutil.copyfile(req.upload, target)
    else:
        shutil.move(str(req.upload), target)
    return target


# -- the worker's side ----------------------------------------------------------------------------

def job_begin(job_id: int, *, hardware: str = "", task_id: str = "", worker: str = "",
              pid: int | None = None) -> EvaluationJob | None:
    """Mark a job running for this attempt. None when the message must be dropped: the job finished
    (a redelivered message), it was queued again under another task id (a message of a lost attempt,
    queue.py), or another process runs it now (a second copy of its message). A message of a running
    job is taken only when the process that ran it is gone: redelivered after its pool process died.
    The attempt past SHELFMARK_JOB_MAX_ATTEMPTS fails the job instead: a job whose process is killed
    every time (out of memory, say) must not loop for ever."""
    with transaction.atomic():
        job = EvaluationJob.objects.select_for_update().select_related("submission").get(pk=job_id)
        if job.is_finished or (task_id and job.task_id and task_id != job.task_id):
            return None
        if job.status == EvaluationJob.Status.RUNNING and not attempt_gone(job, worker, pid):
            return None
        if job.status == EvaluationJob.Status.RUNNING and job.shards.pending().exists():
            return None   # a late copy of the planning message: the job waits for its shards, no process runs it
        if job.attempts >= settings.SHELFMARK_JOB_MAX_ATTEMPTS:
            job.status, job.finished_at = EvaluationJob.Status.FAILED, timezone.now()
            job.error = (f"The evaluation stopped {job.attempts} times without finishing (its worker process "
                         "was killed, e.g. out of memory), so it was not tried again; staff can re-run it.")
            job.log = _append(job.log, f"failed: attempt {job.attempts + 1} refused")
            job.save()
            return None
        job.attempts += 1
        again = f" (attempt {job.attempts} of {settings.SHELFMARK_JOB_MAX_ATTEMPTS})" if job.attempts > 1 else ""
        job.status = EvaluationJob.Status.RUNNING
        job.started_at = job.started_at or timezone.now()
        job.sent_at = job.sent_at or timezone.now()
        job.heartbeat_at = timezone.now()
        job.worker = worker or job.worker
        job.worker_pid = pid
        job.stage, job.done, job.total, job.images_per_second, job.message = "loading_model", 0, 0, 0.0, ""
        job.hardware = hardware or job.hardware
        job.log = _append(job.log, f"started on {worker or 'a worker'} ({hardware or 'unknown hardware'}){again}")
        job.save()
    return job


class JobCancelled(Exception):
    """Raised from the progress callback when the job was cancelled while it ran."""


class ProgressWriter:
    """The engine's progress callback: writes the stage and counts to the job row, ~2 writes/s at most."""

    def __init__(self, job_id: int, interval: float = PROGRESS_INTERVAL_S, task_id: str = ""):
        self.job_id = job_id
        self.interval = interval
        self.task_id = task_id
        self._last_write = 0.0
        self._last_stage = None

    def __call__(self, progress) -> None:
        now = time.monotonic()
        stage_changed = progress.stage != self._last_stage
        if not stage_changed and now - self._last_write < self.interval:
            return
        fields = {
            "stage": progress.stage, "done": progress.done, "total": progress.total,
            "images_per_second": progress.images_per_second, "message": progress.message[:300],
            "updated_at": timezone.now(),
        }
        with transaction.atomic():
            job = EvaluationJob.objects.select_for_update().filter(pk=self.job_id).only(
                "status", "log", "task_id").first()
            if job is None or job.status != EvaluationJob.Status.RUNNING:
                raise JobCancelled(f"job {self.job_id} is no longer running")
            if self.task_id and job.task_id != self.task_id:
                raise JobCancelled(f"job {self.job_id} was queued again: this attempt stops")
            if stage_changed:
                fields["log"] = _append(job.log, _stage_line(progress))
            EvaluationJob.objects.filter(pk=self.job_id).update(**fields)
        self._last_write, self._last_stage = now, progress.stage


def _stage_line(progress) -> str:
    line = progress.stage.replace("_", " ")
    if progress.total:
        line += f" ({progress.total} items)"
    if progress.message:
        line += f": {progress.message}"
    return line


def job_complete(job_id: int, evaluation, *, duration_s: float, task_id: str = "") -> EvaluationJob:
    """Record a finished evaluation: one registry Result per protocol it ran (the first is the job's
    headline `result`), each with its interval in the metric's unit. A second call changes nothing, nor
    does an attempt that no longer owns the job (`task_id`: it was queued again, or failed, meanwhile)."""
    with transaction.atomic():
        job = EvaluationJob.objects.select_for_update().select_related(
            "submission", "dataset__metric").get(pk=job_id)
        if job.result_id is not None or job.status in (EvaluationJob.Status.DONE, EvaluationJob.Status.CANCELLED):
            return job
        if task_id and (job.task_id != task_id or job.status != EvaluationJob.Status.RUNNING):
            log.info("job %s: a stale attempt (task %s) finished; its result is dropped", job_id, task_id)
            return job
        submission = job.submission
        method = _submission_method(submission)
        scale = job.dataset.metric.engine_scale
        lines = []
        for entry in evaluation.protocols:
            interval = entry.get("confidence_interval") or {}
            result = Result.objects.create(
                dataset=job.dataset, method=method, metric=job.dataset.metric, score=entry["score"] * scale,
                kind=submission.kind, origin=Result.Origin.EVALUATED, is_public=submission.is_public,
                owner=submission.owner, confidence=Result.Confidence.HIGH,
                provenance=result_provenance(job, evaluation, entry, duration_s=duration_s),
                source=f"Shelfmark evaluation, submission #{submission.pk}",
                protocol=entry["name"], protocol_detail=engine.protocol_detail(entry),
                ci_low=interval["low"] * scale if "low" in interval else None,
                ci_high=interval["high"] * scale if "high" in interval else None,
                units=_media_relative(entry.get("artifacts", {}).get("units.npz", "")),
            )
            JobResult.objects.create(job=job, result=result, protocol=entry["name"])
            # an earlier result of this submission's protocol on this board (an older protocol version) is
            # superseded: off the live board (published versions keep their frozen copy)
            earlier = JobResult.objects.filter(job__submission=submission, job__benchmark=job.benchmark,
                                               protocol=entry["name"]).exclude(result=result)
            Result.objects.filter(job_result__in=earlier).update(is_public=False)
            earlier.update(superseded=True)
            job.result = job.result or result
            lines.append(f"{entry['name']}: {entry['metric']} = {entry['score']:.6f}")
        job.status = EvaluationJob.Status.DONE
        job.finished_at = timezone.now()
        job.stage, job.message = "done", ""
        job.done = job.total = max(job.total, 1)
        job.evaluation = engine.json_safe(evaluation.to_dict())
        job.log = _append(job.log, f"done in {duration_s:.1f}s: " + "; ".join(lines))
        job.save()
        # the submitter's email, once the result is stored for good (a mail server down never fails the job)
        transaction.on_commit(lambda job_id=job.pk: job_finished(job_id), robust=True)
    return job


def board_warm(job_id: int) -> None:
    """Compute (and keep) the paired comparisons the board of a finished job's benchmark shows as rank
    groups, so the page need not; a failure here never fails the job."""
    from leaderboard.boards.services import warm_rank_groups

    try:
        job = EvaluationJob.objects.select_related("dataset__metric").get(pk=job_id)
        warm_rank_groups(job.dataset)
    except Exception:   # the board shows the pairs apart until the next job or publication compares them
        log.exception("warming the board of job %s failed", job_id)


def _media_relative(path: str) -> str:
    """A path under MEDIA_ROOT as stored in the database (relative), else as it is."""
    if not path:
        return ""
    try:
        return str(Path(path).relative_to(settings.MEDIA_ROOT))
    except ValueError:
        return str(path)


def _submission_method(submission: Submission) -> Method:
    if submission.method_id is None:
        submission.method = Method.objects.create(
            name=submission.model_name, description=submission.description,
            paper_url=submission.paper_url, bibtex=submission.bibtex,
        )
        submission.save(update_fields=["method"])
    return submission.method


def result_provenance(job: EvaluationJob, evaluation, entry: dict, *, duration_s: float) -> dict:
    """How one protocol's number was produced: model and weights, code and protocol versions, the
    interval, hardware, time.

    The weights hash and code version are the engine's (`EvaluationResult.weights_sha256`, its
    provenance's `git_commit`): the hash of the very file the worker loaded, built-in ones included.
    """
    submission = job.submission
    engine_provenance = engine.json_safe(evaluation.provenance or {})
    model = engine_provenance.get("model", {})
    hub = model.get("hub") or {}
    return {
        "submission": submission.pk,
        "job": job.pk,
        "source": submission.source,
        "model": submission.architecture or submission.model_name,
        "family": model.get("family", ""),
        "hub": f"{hub['repo']}@{hub['commit']}" if hub else "",
        "preprocessing": model.get("data_config") or {},
        "readout": model.get("readout") or "",
        "random_init": submission.random_init,
        "weights_sha256": evaluation.weights_sha256,
        "code_version": engine_provenance.get("git_commit", ""),
        "protocol_name": entry["name"],
        "multiclass": str(entry["settings"].get("multiclass", "")) if entry["name"] == "svm" else "",
        "protocol_version": entry.get("version") or job.dataset.protocol_version,
        "protocol": engine.json_safe(entry["settings"]),
        "metric": entry["metric"],
        "engine_score": entry["score"],
        "confidence_interval": engine.json_safe(entry.get("confidence_interval") or {}),
        "hardware": job.hardware,
        "duration_s": round(duration_s, 3),
        "date": timezone.now().isoformat(timespec="seconds"),
        "engine": engine_provenance,
    }


def job_fail(job_id: int, message: str, details: str = "") -> None:
    """Record a failure: `message` for the submitter, `details` (a traceback) for owner and staff."""
    with transaction.atomic():
        job = EvaluationJob.objects.select_for_update().get(pk=job_id)
        if job.is_finished:
            return
        job.status = EvaluationJob.Status.FAILED
        job.finished_at = timezone.now()
        job.error, job.error_details = message[:2000], details
        _shards_stop(job)
        job.log = _append(job.log, f"failed: {message}")
        job.save()
        transaction.on_commit(lambda job_id=job.pk: job_finished(job_id), robust=True)


def _shards_stop(job: EvaluationJob) -> list[str]:
    """A job that stopped (failed, cancelled): its unfinished extraction shards stop with it (their tasks see
    it at their next report); the task ids, to revoke."""
    pending = job.shards.pending()
    tasks = list(pending.values_list("task_id", flat=True))
    pending.update(status=ExtractionShard.Status.FAILED, finished_at=timezone.now())
    return tasks


def job_note(job_id: int, line: str) -> None:
    with transaction.atomic():
        job = EvaluationJob.objects.select_for_update().filter(pk=job_id).first()
        if job is not None:
            job.log = _append(job.log, line)
            job.save(update_fields=["log", "updated_at"])


def job_release(job_id: int, task_id: str, line: str) -> bool:
    """Before our own retry of a running attempt (a transient error): the job is queued again under the
    same task id, which the retry re-sends, and the attempt is given back (a retry continues it, it is
    no new attempt). False when the attempt no longer owns the job."""
    with transaction.atomic():
        job = EvaluationJob.objects.select_for_update().filter(
            pk=job_id, task_id=task_id, status=EvaluationJob.Status.RUNNING).first()
        if job is None:
            return False
        job.status, job.stage, job.message = EvaluationJob.Status.QUEUED, "", line[:300]
        job.attempts = max(job.attempts - 1, 0)
        job.log = _append(job.log, line)
        job.save()
    return True


# -- the submitter's and staff's actions ----------------------------------------------------------

def job_cancel(job: EvaluationJob) -> bool:
    """Cancel a queued or running job: mark it, then revoke (terminating a running task) after commit."""
    with transaction.atomic():
        job = EvaluationJob.objects.select_for_update().get(pk=job.pk)
        if job.is_finished:
            return False
        job.status = EvaluationJob.Status.CANCELLED
        job.finished_at = timezone.now()
        job.log = _append(job.log, "cancelled")
        job.save()
        tasks = [job.task_id, *_shards_stop(job)]   # a sharded job's shards stop too
        transaction.on_commit(lambda: [_revoke(task) for task in tasks])
    return True


def job_rerun(job: EvaluationJob, *, by=None, fresh: bool = False) -> EvaluationJob:
    """A staff re-run: a new job of the same submission, benchmark, scheme and protocols. The earlier job
    and its results stay (its results are superseded when the new ones land, kept in the history);
    `fresh` extracts the features again instead of reading the feature cache."""
    protocols = list(job.protocols) or [jr.protocol for jr in job.job_results.all()]
    with transaction.atomic():
        rerun = _job_create(job.submission, job.benchmark, job.dataset, job.multiclass, protocols)
        rerun.use_feature_cache = not fresh
        who = f" by {by}" if by is not None else ""
        afresh = ", features extracted afresh" if fresh else ""
        rerun.log = _append(rerun.log, f"re-run of job {job.pk}{who}{afresh}")
        rerun.save(update_fields=["use_feature_cache", "log"])
    return rerun


def _revoke(task_id: str) -> None:
    try:
        celery_app.control.revoke(task_id, terminate=True, signal="SIGTERM")
    except (BrokerError, RedisError, OSError) as exc:  # the job is cancelled in the DB: the task will skip it
        log.warning("could not revoke task %s: %s", task_id, exc)


def submission_make_public(submission: Submission) -> Submission:
    """Publish a submission and its results to the live boards."""
    with transaction.atomic():
        submission.is_public = True
        submission.save(update_fields=["is_public"])
        Result.objects.filter(job_result__job__submission=submission, job_result__superseded=False).update(
            is_public=True)
    return submission


class BundleUnavailable(Exception):
    """The result's features are no longer stored, so no reproduction bundle can be made."""


def result_bundle(job_result: JobResult) -> Path:
    """The reproduction zip of one protocol's result, written once under MEDIA_ROOT/bundles, then reused."""
    media = Path(settings.MEDIA_ROOT)
    if job_result.bundle and (media / job_result.bundle).is_file():
        return media / job_result.bundle
    job = job_result.job
    features = job.evaluation.get("artifacts", {}).get("features.npz")
    entry = next((e for e in job.evaluation.get("protocols", []) if e["name"] == job_result.protocol), None)
    if not features or not Path(features).is_file() or entry is None:
        raise BundleUnavailable("The features of this result are no longer stored; no bundle can be made.")
    units = entry.get("artifacts", {}).get("units.npz")
    target = media / "bundles" / f"shelfmark-{job.benchmark}-{job_result.protocol}-result-{job_result.result_id}.zip"
    engine.write_result_bundle(
        target, features_npz=Path(features), protocol=entry["settings"], provenance=job_result.result.provenance,
        score=entry["score"], metric=entry["metric"], confidence_interval=entry.get("confidence_interval"),
        units_npz=Path(units) if units and Path(units).is_file() else None,
    )
    JobResult.objects.filter(pk=job_result.pk).update(bundle=str(target.relative_to(media)))
    return target


def job_bundle(job: EvaluationJob) -> Path:
    """The reproduction zip of a job's headline result (its first protocol's)."""
    job_result = job.job_results.filter(result_id=job.result_id).select_related("job", "result").first()
    if job_result is None:
        raise BundleUnavailable("This job has no result with a reproduction bundle.")
    return result_bundle(job_result)


def submissions_hide(submissions) -> None:
    """Make submissions private again and take their results off the live boards (staff moderation)."""
    with transaction.atomic():
        submissions.update(is_public=False)
        Result.objects.filter(job_result__job__submission__in=submissions).update(is_public=False)

