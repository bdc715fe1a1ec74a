"""Submissions and the evaluation jobs they start.

A `Submission` is what a user sent (a model, weights, ONNX file or precomputed features); each
benchmark it asked for gets one `EvaluationJob`. The job row is written before anything is sent to
the broker, so a broker or worker outage never loses work: `sent_at` stays empty until the broker
took the message, and the requeue schedule (leaderboard/submissions/queue.py) re-sends such jobs;
a running job's `heartbeat_at` is written by its worker every few seconds, and a job whose heartbeat
stopped (its worker died) is queued again with a new `task_id`, so a message of a lost attempt that
the broker delivers later is recognised and dropped. A finished job points at the registry `Result`s
it produced, which is what makes a rerun of the task harmless.
"""
from django.conf import settings
from django.db import models
from django.urls import reverse

from leaderboard.registry.models import Dataset, Method, Result


class Submission(models.Model):
    class Source(models.TextChoices):
        BUILTIN = "builtin", "model by name (built-in, Hub id, or random init)"
        WEIGHTS = "weights", "architecture + weights file"
        MODEL_FOLDER = "model_folder", "model folder (.zip: transformers, timm or OpenCLIP layout)"
        FEATURES = "features", "precomputed features (.npz)"
        ONNX = "onnx", "ONNX model"

    class Multiclass(models.TextChoices):
        """How multi-class benchmarks train their linear SVMs (multi-label VOC always trains one per class)."""

        PAPER = "paper", "as the paper [1]: one-vs-one on MIT67, CUB-200-2011 and Flowers 102, else one-vs-rest"
        OVR = "ovr", "one-vs-rest on every benchmark"
        OVO = "ovo", "one-vs-one (with voting) on every benchmark"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="submissions")
    model_name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    paper_url = models.URLField(max_length=500, blank=True)
    bibtex = models.TextField(blank=True)
    source = models.CharField(max_length=16, choices=Source.choices)
    architecture = models.CharField(max_length=300, blank=True,
                                    help_text="the model's name: engine name, timm:ARCH, open_clip:ARCH or Hub id")
    readout = models.CharField(max_length=20, blank=True, help_text="what the features are read from (library models)")
    layer = models.CharField(max_length=200, blank=True, help_text="a layer to take features from; empty: the default")
    pooling = models.CharField(max_length=8, default="avg", help_text="avg | max, for feature maps and tokens")
    model_info = models.JSONField(default=dict, blank=True,
                                  help_text="what the name resolved to when submitted: family, preprocessing, commit")
    random_init = models.BooleanField(default=False)
    upload = models.CharField(max_length=500, blank=True, help_text="uploaded file, relative to MEDIA_ROOT")
    upload_format = models.CharField(max_length=20, blank=True)
    upload_sha256 = models.CharField(max_length=64, blank=True)
    kind = models.CharField(max_length=20, choices=Result.Kind.choices, default=Result.Kind.OFF_THE_SHELF)
    multiclass = models.CharField(max_length=8, choices=Multiclass.choices, default=Multiclass.PAPER,
                                  help_text="the submitter's choice; each job records what it means on its benchmark")
    is_public = models.BooleanField(default=False)
    method = models.OneToOneField(Method, null=True, blank=True, on_delete=models.SET_NULL, related_name="submission")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"#{self.pk} {self.model_name}"

    def get_absolute_url(self):
        return reverse("submission-detail", args=[self.pk])

    def is_visible_to(self, user) -> bool:
        return self.is_public or (user.is_authenticated and (user.pk == self.owner_id or user.is_staff))


class EvaluationJob(models.Model):
    """One (submission, benchmark) evaluation, with the live progress the status page polls."""

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        DONE = "done", "done"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"

    FINISHED = (Status.DONE, Status.FAILED, Status.CANCELLED)

    submission = models.ForeignKey(Submission, on_delete=models.CASCADE, related_name="jobs")
    benchmark = models.CharField(max_length=64, help_text="engine benchmark name")
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="evaluation_jobs")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    queue = models.CharField(max_length=64, default="cpu", help_text="the Celery queue it was sent to")
    multiclass = models.CharField(max_length=8, default="ovr",
                                  help_text="the SVM scheme on this benchmark: ovr (one-vs-rest) or ovo (one-vs-one)")
    task_id = models.CharField(max_length=64, blank=True, help_text="the message of the current attempt")
    sent_at = models.DateTimeField(null=True, blank=True, help_text="when the broker accepted the message")
    attempts = models.PositiveIntegerField(default=0)
    worker = models.CharField(max_length=200, blank=True, help_text="the Celery node running (or that ran) it")
    worker_pid = models.PositiveIntegerField(null=True, blank=True,
                                             help_text="the process running the attempt, on the worker's machine")
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="the running attempt's last sign of life")
    use_feature_cache = models.BooleanField(default=True, help_text="off: a staff re-run extracting afresh")
    stage = models.CharField(max_length=20, blank=True)
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    images_per_second = models.FloatField(default=0.0)
    message = models.CharField(max_length=300, blank=True)
    log = models.TextField(blank=True)
    error = models.TextField(blank=True, help_text="the message the submitter sees")
    error_details = models.TextField(blank=True, help_text="traceback: owner and staff only")
    hardware = models.CharField(max_length=200, blank=True)
    evaluation = models.JSONField(default=dict, blank=True, help_text="the engine's EvaluationResult")
    protocols = models.JSONField(default=list, blank=True,
                                 help_text="the protocols this job runs (workers/protocol_catalog.py); one result each")
    # the headline result (the first protocol's); `results` holds every protocol's, this one included
    result = models.OneToOneField(Result, null=True, blank=True, on_delete=models.SET_NULL, related_name="job")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["submission", "id"]

    def __str__(self):
        return f"job {self.pk}: {self.submission} on {self.benchmark} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def waiting_for_broker(self) -> bool:
        return self.status == self.Status.QUEUED and self.sent_at is None


class JobResult(models.Model):
    """One protocol's result of a job: a job scores its features with several protocols, one Result each."""

    job = models.ForeignKey(EvaluationJob, on_delete=models.CASCADE, related_name="job_results")
    result = models.OneToOneField(Result, on_delete=models.CASCADE, related_name="job_result")
    protocol = models.CharField(max_length=20)
    bundle = models.CharField(max_length=500, blank=True, help_text="reproduction zip, relative to MEDIA_ROOT")
    superseded = models.BooleanField(
        default=False, help_text="a later job of the submission scored this protocol again: kept, never shown live")

    class Meta:
        ordering = ["job", "id"]
        constraints = [models.UniqueConstraint(fields=["job", "protocol"], name="one_result_per_job_protocol")]

    def __str__(self):
        return f"{self.job} / {self.protocol}"


class Worker(models.Model):
    """A Celery worker as it last reported itself (every few seconds, from its main process): what the
    status page lists as online, with the queues it consumes and whether it has a GPU."""

    name = models.CharField(max_length=200, unique=True, help_text="Celery node name, e.g. celery@host")
    queues = models.JSONField(default=list, blank=True)
    hardware = models.CharField(max_length=200, blank=True)
    gpu = models.BooleanField(default=False)
    pid = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class ShardQuerySet(models.QuerySet):
    def pending(self):
        """The shards not in yet (queued or running): their job waits for them."""
        return self.filter(status__in=ExtractionShard.PENDING)


class ExtractionShard(models.Model):
    """One slice of a large job's feature extraction (workers/shards.py), sent as its own task to any worker
    of the job's queue. The shards of a job are a Celery group whose callback, the job's scoring step, is
    sent by the last shard to finish (a chord whose count lives here, so a shard whose worker died is
    sent again alone and the chord still closes: leaderboard/submissions/shards.py)."""

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        DONE = "done", "done"
        FAILED = "failed", "failed"

    PENDING = (Status.QUEUED, Status.RUNNING)   # not in yet: its job waits for it

    objects = ShardQuerySet.as_manager()

    job = models.ForeignKey(EvaluationJob, on_delete=models.CASCADE, related_name="shards")
    index = models.PositiveIntegerField()
    split = models.CharField(max_length=64)
    start = models.PositiveIntegerField()
    stop = models.PositiveIntegerField()
    jitter = models.CharField(max_length=10, blank=True, help_text="the split's jitter mode: average | keep")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    task_id = models.CharField(max_length=64, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    worker = models.CharField(max_length=200, blank=True)
    worker_pid = models.PositiveIntegerField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    done = models.PositiveIntegerField(default=0)
    images_per_second = models.FloatField(default=0.0)
    seconds = models.FloatField(default=0.0, help_text="the extraction's own time")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job", "index"]
        constraints = [models.UniqueConstraint(fields=["job", "index"], name="one_shard_per_job_index")]

    def __str__(self):
        return f"{self.job} shard {self.index} ({self.split} {self.start}-{self.stop}, {self.status})"

    @property
    def images(self) -> int:
        return self.stop - self.start
