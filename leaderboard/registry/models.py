"""The registry: task families, benchmarks, references, methods, results and leaderboard versions.

Reported numbers (the 2014 snapshot, papers) and numbers evaluated by Shelfmark's workers live in
the same `Result` table; `origin` tells them apart and `provenance` records how an evaluated number
was produced. A published `LeaderboardVersion` freezes copies of its rows (`LeaderboardEntry`) so a
permalink never changes, whatever happens to the live results later.
"""
from django.conf import settings
from django.db import models
from django.urls import reverse


class TaskFamily(models.Model):
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    order = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["order", "name"]
        verbose_name_plural = "task families"

    def __str__(self):
        return self.name


class Metric(models.Model):
    """How a benchmark is scored. `engine_scale` turns the engine's fraction (or N-S) into the unit shown."""

    code = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    higher_is_better = models.BooleanField(default=True)
    unit = models.CharField(max_length=32, default="%")
    engine_scale = models.FloatField(default=100.0)

    class Meta:
        ordering = ["code"]

    def __str__(self):
        return self.code


class Dataset(models.Model):
    """A benchmark: a dataset with a split, a protocol and a metric. Its leaderboard is its results."""

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    task_family = models.ForeignKey(TaskFamily, on_delete=models.PROTECT, related_name="datasets")
    metric = models.ForeignKey(Metric, on_delete=models.PROTECT, related_name="datasets")
    classes = models.PositiveIntegerField(null=True, blank=True)
    images = models.JSONField(default=dict, blank=True, help_text="image counts per split as published")
    protocol = models.TextField(blank=True)
    protocol_version = models.CharField(max_length=32, blank=True)
    official_files = models.JSONField(default=list, blank=True)
    engine_benchmark = models.CharField(
        max_length=64, blank=True, help_text="name of the workers' benchmark that evaluates this dataset"
    )
    is_demo = models.BooleanField(
        default=False, help_text="a small demo benchmark the engine runs without downloads (not in the 2014 page)"
    )
    order = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["task_family__order", "order", "name"]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("dataset-detail", args=[self.slug])


class Reference(models.Model):
    """A paper. `page_key` is the label the 2014 page gave it ("[1]", "[*]"), empty for outside papers."""

    key = models.CharField(max_length=100, unique=True, help_text="BibTeX citation key")
    page_key = models.CharField(max_length=8, blank=True, db_index=True)
    entry_type = models.CharField(max_length=32, default="article")
    fields = models.JSONField(default=dict, help_text="every BibTeX field, as in the .bib")
    title = models.TextField(blank=True)
    authors = models.TextField(blank=True)
    year = models.CharField(max_length=16, blank=True)
    venue = models.CharField(max_length=300, blank=True)
    url = models.URLField(max_length=500, blank=True)
    bibtex = models.TextField(blank=True)
    order = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["order", "key"]

    def __str__(self):
        return f"{self.page_key} {self.key}".strip()

    def get_absolute_url(self):
        return reverse("reference-list") + f"#ref-{self.key}"


class Method(models.Model):
    """A method or model as it appears in a results table."""

    name = models.CharField(max_length=300)
    description = models.TextField(blank=True)
    reference = models.ForeignKey(Reference, null=True, blank=True, on_delete=models.SET_NULL, related_name="methods")
    paper_url = models.URLField(max_length=500, blank=True)
    bibtex = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class Result(models.Model):
    class Kind(models.TextChoices):
        NON_CNN = "non_cnn", "non-CNN"
        OFF_THE_SHELF = "off_the_shelf", "off-the-shelf CNN"
        SPECIALIZED = "specialized", "fine-tuned/specialized CNN"

    class Confidence(models.TextChoices):
        HIGH = "high", "high"
        MEDIUM = "medium", "medium (unverified)"
        LOW = "low", "low (unverified)"

    class Origin(models.TextChoices):
        SNAPSHOT = "snapshot", "reported (2014 snapshot)"
        REPORTED = "reported", "reported by a paper"
        EVALUATED = "evaluated", "evaluated by Shelfmark"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="results")
    method = models.ForeignKey(Method, on_delete=models.PROTECT, related_name="results")
    score = models.FloatField()
    metric = models.ForeignKey(Metric, on_delete=models.PROTECT, related_name="results")
    metric_label = models.CharField(
        max_length=200, blank=True, help_text="set when the number is not the dataset's standard metric"
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    reference = models.ForeignKey(Reference, null=True, blank=True, on_delete=models.PROTECT, related_name="results")
    source = models.TextField(blank=True)
    confidence = models.CharField(max_length=10, choices=Confidence.choices, default=Confidence.HIGH)
    note = models.TextField(blank=True)
    origin = models.CharField(max_length=10, choices=Origin.choices, default=Origin.SNAPSHOT)
    is_public = models.BooleanField(default=True)
    provenance = models.JSONField(
        default=dict, blank=True,
        help_text="evaluated results: model and weights hash, code and protocol version, hardware, duration, date",
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="results"
    )
    # Measured results: the protocol that produced the score (workers/protocol_catalog.py: svm, knn,
    # linear_probe, fewshot, ranking, easy, medium, hard), its 95% bootstrap interval in the metric's
    # unit, and the per-image outputs the interval and the paired comparisons are drawn from.
    protocol = models.CharField(max_length=20, blank=True, db_index=True,
                                help_text="empty for numbers reported by papers")
    protocol_detail = models.CharField(max_length=100, blank=True, help_text="e.g. one-vs-one, k = 20")
    ci_low = models.FloatField(null=True, blank=True)
    ci_high = models.FloatField(null=True, blank=True)
    units = models.CharField(max_length=500, blank=True, help_text="per-unit outputs (.npz), relative to MEDIA_ROOT")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["dataset", "-score"]
        indexes = [models.Index(fields=["dataset", "kind"]), models.Index(fields=["origin", "is_public"])]

    def __str__(self):
        return f"{self.dataset.slug}: {self.method} = {self.score}"

    @property
    def is_unverified(self) -> bool:
        return self.confidence in (self.Confidence.MEDIUM, self.Confidence.LOW)

    @property
    def is_measured(self) -> bool:
        return self.origin == self.Origin.EVALUATED


class MissingCell(models.Model):
    """A cell of the 2014 table whose number could not be recovered: shown as missing, never as 0."""

    dataset = models.ForeignKey(Dataset, null=True, blank=True, on_delete=models.CASCADE, related_name="missing")
    reference = models.ForeignKey(Reference, null=True, blank=True, on_delete=models.CASCADE, related_name="missing")
    kind = models.CharField(max_length=20, choices=Result.Kind.choices, blank=True)
    what = models.TextField()
    reason = models.TextField(blank=True)

    def __str__(self):
        return self.what


class LeaderboardVersion(models.Model):
    """A published, immutable version of one benchmark's board. Version 0 is the 2014 snapshot."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    published_at = models.DateTimeField(auto_now_add=True)
    published_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    note = models.TextField(blank=True)
    content_hash = models.CharField(max_length=64, blank=True, help_text="SHA-256 of the frozen rows (the ETag)")

    class Meta:
        ordering = ["dataset", "number"]
        constraints = [models.UniqueConstraint(fields=["dataset", "number"], name="unique_version_per_dataset")]

    def __str__(self):
        return f"{self.dataset.slug} v{self.number}"

    def get_absolute_url(self):
        return reverse("leaderboard-version", args=[self.dataset.slug, self.number])


class LeaderboardEntry(models.Model):
    """A frozen row of a published version: copies, not references, so the page never changes."""

    version = models.ForeignKey(LeaderboardVersion, on_delete=models.CASCADE, related_name="entries")
    result = models.ForeignKey(Result, null=True, blank=True, on_delete=models.SET_NULL, related_name="entries")
    rank = models.PositiveIntegerField()
    method_name = models.CharField(max_length=300)
    score = models.FloatField()
    kind = models.CharField(max_length=20, choices=Result.Kind.choices)
    origin = models.CharField(max_length=10, choices=Result.Origin.choices)
    confidence = models.CharField(max_length=10, choices=Result.Confidence.choices)
    reference_key = models.CharField(max_length=100, blank=True)
    reference_label = models.CharField(max_length=300, blank=True)
    provenance = models.JSONField(default=dict, blank=True)
    protocol = models.CharField(max_length=20, blank=True)
    protocol_detail = models.CharField(max_length=100, blank=True)
    ci_low = models.FloatField(null=True, blank=True)
    ci_high = models.FloatField(null=True, blank=True)
    rank_group = models.CharField(max_length=16, blank=True, help_text='rows that cannot be told apart: "1–3"')

    class Meta:
        ordering = ["version", "rank"]

    def __str__(self):
        return f"{self.version} #{self.rank} {self.method_name}"


class HistoricalDownload(models.Model):
    """A download the 2014 page offered (scripts, features, jittered images), with its stated size."""

    what = models.TextField()
    size = models.CharField(max_length=32)
    dataset = models.ForeignKey(Dataset, null=True, blank=True, on_delete=models.SET_NULL)

    def __str__(self):
        return self.what
