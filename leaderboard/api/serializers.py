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

    class Meta:
        model = Result
        fields = ["id", "dataset", "rank", "method", "score", "metric", "metric_label", "kind", "origin",
                  "confidence", "reference", "source", "note", "provenance", "created_at"]

    def get_rank(self, result) -> int | None:
        """Rank on the dataset's board; set only when results are listed as a board (a dataset's results)."""
        return getattr(result, "rank", None)


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
