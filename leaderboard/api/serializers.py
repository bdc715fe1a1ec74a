"""Read-only representations of the registry. Only public results are ever serialized."""
from rest_framework import serializers

from leaderboard.registry.models import Dataset, Metric, Reference, Result, TaskFamily


class TaskFamilySerializer(serializers.ModelSerializer):
    class Meta:
        model = TaskFamily
        fields = ["slug", "name", "order"]


class MetricSerializer(serializers.ModelSerializer):
    class Meta:
        model = Metric
        fields = ["code", "name", "description", "higher_is_better", "unit"]


class ResultSerializer(serializers.ModelSerializer):
    dataset = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    method = serializers.CharField(source="method.name", read_only=True)
    metric = serializers.SlugRelatedField(slug_field="code", read_only=True)
    reference = serializers.SlugRelatedField(slug_field="key", read_only=True, allow_null=True)
    rank = serializers.SerializerMethodField()
    rank_group = serializers.SerializerMethodField()
    protocol = serializers.SerializerMethodField()
    confidence_interval = serializers.SerializerMethodField()

    class Meta:
        model = Result
        fields = ["id", "dataset", "rank", "rank_group", "method", "score", "confidence_interval", "metric",
                  "metric_label", "protocol", "protocol_detail", "kind", "origin", "confidence", "reference", "source",
                  "note", "provenance", "created_at"]

    def get_rank(self, result) -> int | None:
        """Rank on the dataset's board; set only when results are listed as a board (a dataset's results)."""
        return getattr(result, "rank", None)

    def get_rank_group(self, result) -> str | None:
        """"1–3" when a paired bootstrap cannot tell this row from its neighbours (board listings only)."""
        return getattr(result, "rank_group", None)

    def get_protocol(self, result) -> str:
        """The protocol Shelfmark measured it with (svm, knn, linear_probe, ...), or "reported" (a paper's)."""
        return result.protocol or "reported"

    def get_confidence_interval(self, result) -> dict | None:
        """The 95% bootstrap interval of a measured score, in the metric's unit; None for reported numbers."""
        if result.ci_low is None:
            return None
        return {"low": result.ci_low, "high": result.ci_high, "level": 0.95}


class DatasetSerializer(serializers.ModelSerializer):
    task_family = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    metric = MetricSerializer(read_only=True)
    url = serializers.SerializerMethodField()

    class Meta:
        model = Dataset
        fields = ["slug", "name", "task_family", "metric", "classes", "images", "protocol", "protocol_version",
                  "official_files", "engine_benchmark", "is_demo", "url"]

    def get_url(self, dataset) -> str:
        return dataset.get_absolute_url()


class DatasetDetailSerializer(DatasetSerializer):
    results = serializers.SerializerMethodField()

    class Meta(DatasetSerializer.Meta):
        fields = DatasetSerializer.Meta.fields + ["results"]

    def get_results(self, dataset) -> list[dict]:
        return ResultSerializer(self.context["board_rows"], many=True).data


class ReferenceSerializer(serializers.ModelSerializer):
    class Meta:
        model = Reference
        fields = ["key", "page_key", "entry_type", "title", "authors", "year", "venue", "url", "fields", "bibtex"]


# ---- /api/status/: the job queue (leaderboard/submissions/queue_selectors.py:status_summary) -------------

class QueueJobSerializer(serializers.Serializer):
    job = serializers.IntegerField()
    benchmark = serializers.CharField()
    submission = serializers.IntegerField(allow_null=True, help_text="null for a private submission")
    model = serializers.CharField(help_text='the model\'s name, or "a private submission"')
    mine = serializers.BooleanField(help_text="always false here: the API reads no credentials")


class RunningJobSerializer(QueueJobSerializer):
    stage = serializers.CharField(help_text="queued, loading, extracting, scoring, ...")
    done = serializers.IntegerField()
    total = serializers.IntegerField()


class WaitingJobSerializer(QueueJobSerializer):
    position = serializers.IntegerField(help_text="1: the next job this queue's workers take")
    eta_seconds = serializers.FloatField(allow_null=True, help_text="expected wait from recent run times; "
                                                                    "null when no worker serves the queue")
    eta = serializers.CharField(help_text='the same in words, e.g. "about 4 minutes"')
    waiting_for_broker = serializers.BooleanField(help_text="not yet sent: the broker was unreachable")


class WorkerSerializer(serializers.Serializer):
    name = serializers.CharField()
    queues = serializers.ListField(child=serializers.CharField())
    hardware = serializers.CharField()
    gpu = serializers.BooleanField()
    seen_seconds_ago = serializers.FloatField()
    current_job = RunningJobSerializer(allow_null=True)


class QueueSerializer(serializers.Serializer):
    name = serializers.CharField()
    workers = serializers.IntegerField()
    running = serializers.IntegerField()
    queued = serializers.IntegerField()
    waiting_for_broker = serializers.IntegerField()
    jobs = WaitingJobSerializer(many=True, help_text="the waiting jobs, in the order they will run")


class QueueStatusSerializer(serializers.Serializer):
    generated_at = serializers.DateTimeField()
    workers = WorkerSerializer(many=True, help_text="workers that reported within the heartbeat timeout")
    queues = QueueSerializer(many=True)
    heartbeat_timeout_seconds = serializers.IntegerField(
        help_text="a running job whose worker is silent this long is queued again")
