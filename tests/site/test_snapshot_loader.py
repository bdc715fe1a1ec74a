"""`load_snapshot`: counts equal the source files, a reload changes nothing, bad rows are named."""
import re

import pytest
import yaml
from django.core.management import CommandError, call_command
from django.forms.models import model_to_dict
from snapshot_source import SNAPSHOT_DIR, source_benchmarks, source_bib_keys, source_snapshot

from leaderboard.registry.models import (
    Dataset,
    HistoricalDownload,
    LeaderboardEntry,
    LeaderboardVersion,
    Method,
    Metric,
    MissingCell,
    Reference,
    Result,
    TaskFamily,
)
from leaderboard.registry.snapshot import PAGE_KEYS, load_snapshot

pytestmark = pytest.mark.django_db

ALL_MODELS = [TaskFamily, Metric, Dataset, Reference, Method, Result, MissingCell, LeaderboardVersion,
              LeaderboardEntry, HistoricalDownload]


def registry_state() -> dict:
    """Every row of every registry table, as plain values, to compare two loads."""
    return {model.__name__: sorted((obj.pk, repr(model_to_dict(obj))) for obj in model.objects.all())
            for model in ALL_MODELS}


def test_counts_equal_the_source_files():
    source = source_snapshot()
    bib_keys = source_bib_keys()
    demos = source_benchmarks()["demo_datasets"]
    # The issue states these sizes; check that the shipped files still have them.
    counts = (len(source["task_families"]), len(source["datasets"]), len(source["results"]), len(bib_keys))
    assert counts == (8, 23, 95, 58)

    call_command("load_snapshot")

    assert TaskFamily.objects.count() == len(source["task_families"])
    assert Dataset.objects.filter(is_demo=False).count() == len(source["datasets"])
    assert Dataset.objects.filter(is_demo=True).count() == len(demos) == 2
    assert Result.objects.filter(origin=Result.Origin.SNAPSHOT).count() == len(source["results"])
    assert Reference.objects.count() == len(bib_keys)
    assert set(Reference.objects.values_list("key", flat=True)) == set(bib_keys)
    assert Metric.objects.count() == len(source["metrics"])
    assert MissingCell.objects.count() == len(source["missing"])
    assert HistoricalDownload.objects.count() == len(source["meta"]["downloads_listed_on_page"])


def test_second_load_changes_nothing(capsys):
    call_command("load_snapshot")
    before = registry_state()
    capsys.readouterr()

    call_command("load_snapshot")

    assert "nothing changed" in capsys.readouterr().out
    assert registry_state() == before


def test_version_zero_of_every_board_is_the_snapshot():
    load_snapshot(SNAPSHOT_DIR)
    for dataset in Dataset.objects.all():
        version = LeaderboardVersion.objects.get(dataset=dataset)
        assert version.number == 0
        assert re.fullmatch(r"[0-9a-f]{64}", version.content_hash)
        assert version.entries.count() == dataset.results.count()
    ilsvrc = LeaderboardVersion.objects.get(dataset__slug="ilsvrc2012_cls", number=0)
    assert [entry.score for entry in ilsvrc.entries.all()] == [8.06, 14.2, 14.8, 15.3, 26.2]  # error: lowest first


def test_metrics_scales_and_directions():
    load_snapshot(SNAPSHOT_DIR)
    assert Metric.objects.get(code="top5_error").higher_is_better is False
    assert Metric.objects.get(code="NS_score_pct").engine_scale == 25
    others = Metric.objects.exclude(code__in=["top5_error", "NS_score_pct"])
    assert all(m.higher_is_better and m.engine_scale == 100 for m in others)


def test_references_follow_the_page_order_then_outside_papers():
    load_snapshot(SNAPSHOT_DIR)
    page = list(Reference.objects.exclude(page_key="").values_list("page_key", flat=True))
    assert page == PAGE_KEYS
    assert Reference.objects.get(page_key="[+]").key == "Fukushima1980"
    outside = list(Reference.objects.filter(page_key="").values_list("key", flat=True))
    page_bib = set(source_snapshot()["meta"]["references"].values())
    assert outside == [key for key in source_bib_keys() if key not in page_bib]
    razavian = Reference.objects.get(key="Razavian2014")
    assert razavian.fields["eprint"] == "1403.6382" and razavian.authors.startswith("Ali Sharif Razavian")
    assert razavian.bibtex.startswith("@inproceedings{Razavian2014")


def test_datasets_engine_benchmarks_and_demos():
    load_snapshot(SNAPSHOT_DIR)
    engine = dict(Dataset.objects.exclude(engine_benchmark="").values_list("slug", "engine_benchmark"))
    assert engine == {
        "voc2007_cls": "voc2007", "mit67": "mit67", "cub200_2011": "cub200_2011", "flowers102": "flowers102",
        "sun397": "sun397", "caltech101": "caltech101", "caltech256": "caltech256", "holidays": "holidays",
        "oxford5k": "oxford5k", "paris6k": "paris6k", "ukbench": "ukbench",
        "digits": "digits", "skimage_holidays": "skimage_holidays",
    }
    digits = Dataset.objects.get(slug="digits")
    assert digits.is_demo and digits.task_family.slug == "image_classification"
    assert digits.metric.code == "mean_class_accuracy" and not digits.results.exists()
    demo_retrieval = Dataset.objects.get(slug="skimage_holidays")
    assert demo_retrieval.task_family.slug == "instance_retrieval" and demo_retrieval.metric.code == "mAP_ret"


def test_data_fixes_are_loaded():
    load_snapshot(SNAPSHOT_DIR)
    uiuc = Result.objects.get(dataset__slug="uiuc_attributes", method__name__startswith="Sparse representation")
    assert uiuc.metric.code == "mAUC" and "within-category" in uiuc.metric_label
    assert set(MissingCell.objects.filter(dataset__isnull=False).values_list("kind", flat=True)) == {"non_cnn"}
    assert MissingCell.objects.get(dataset__isnull=True).reference.page_key == "[14]"
    downloads = dict(HistoricalDownload.objects.values_list("size", "dataset__slug"))
    assert downloads == {"1.3G": "mit67", "3.6G": "mit67", "165M": "holidays", "119M": "holidays"}
    assert Result.objects.filter(confidence__in=["medium", "low"]).count() == 11


def _with_extra_row(directory, **changes):
    source = source_snapshot(directory)
    row = dict(source["results"][0], **changes)
    source["results"].append(row)
    (directory / "snapshot.yaml").write_text(yaml.safe_dump(source, sort_keys=False), encoding="utf-8")
    return len(source["results"]) - 1


def test_unknown_dataset_names_the_row_and_writes_nothing(snapshot_copy):
    index = _with_extra_row(snapshot_copy, dataset="imagenet_21k", method="A method nobody ran")

    with pytest.raises(CommandError) as error:
        call_command("load_snapshot", "--dir", str(snapshot_copy))

    message = str(error.value)
    assert f"results[{index}]" in message and "A method nobody ran" in message and "imagenet_21k" in message
    assert "unknown dataset" in message
    assert all(not model.objects.exists() for model in ALL_MODELS)


def test_unknown_reference_names_the_row_and_writes_nothing(snapshot_copy):
    index = _with_extra_row(snapshot_copy, method="Uncited method", ref="outside:Nobody2099")

    with pytest.raises(CommandError) as error:
        call_command("load_snapshot", "--dir", str(snapshot_copy))

    message = str(error.value)
    assert f"results[{index}]" in message and "Uncited method" in message and "Nobody2099" in message
    assert "unknown reference" in message
    assert all(not model.objects.exists() for model in ALL_MODELS)


def test_unknown_page_key_is_an_unknown_reference(snapshot_copy):
    _with_extra_row(snapshot_copy, method="Cites [15]", ref="[15]")
    with pytest.raises(CommandError, match=r"Cites \[15\].*unknown reference '\[15\]'"):
        call_command("load_snapshot", "--dir", str(snapshot_copy))


def test_a_corrected_file_updates_rows_in_place(snapshot_copy):
    load_snapshot(snapshot_copy)
    result = Result.objects.get(dataset__slug="mit67", method__name="CNNaug-SVM (OverFeat)")
    source = source_snapshot(snapshot_copy)
    row = next(r for r in source["results"] if r["dataset"] == "mit67" and r["method"] == "CNNaug-SVM (OverFeat)")
    row["score"] = 69.5
    source["results"] = [r for r in source["results"] if r["method"] != "CNN-SVM (OverFeat)" or r["dataset"] != "mit67"]
    (snapshot_copy / "snapshot.yaml").write_text(yaml.safe_dump(source, sort_keys=False), encoding="utf-8")

    report = load_snapshot(snapshot_copy)

    result.refresh_from_db()
    assert result.score == 69.5
    assert report.updated == {"results": 1} and report.removed == {"results": 1}
    assert report.versions_published == 0  # version 0 stays as published

