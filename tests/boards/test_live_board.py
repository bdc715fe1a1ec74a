"""`board_rows` ranks a board; `publish_version` freezes it into numbered, hashed versions."""
import pytest

from leaderboard.registry.models import Dataset, Method, Metric, Reference, Result, TaskFamily
from leaderboard.boards.selectors import board_rows
from leaderboard.boards.services import VersionExists, publish_version

pytestmark = pytest.mark.django_db


def make_board(higher_is_better=True, scores=(70.0, 80.0, 75.0)):
    family = TaskFamily.objects.create(slug="image_classification", name="Object image classification")
    metric = Metric.objects.create(code="m", name="metric", higher_is_better=higher_is_better)
    dataset = Dataset.objects.create(slug="bench", name="Bench", task_family=family, metric=metric)
    reference = Reference.objects.create(key="Paper2014", page_key="[1]")
    for index, score in enumerate(scores):
        Result.objects.create(dataset=dataset, method=Method.objects.create(name=f"method {index}"), score=score,
                              metric=metric, kind=Result.Kind.OFF_THE_SHELF, reference=reference)
    return dataset


def test_board_rows_rank_best_first():
    dataset = make_board()
    rows = board_rows(dataset)
    assert [(r.rank, r.score) for r in rows] == [(1, 80.0), (2, 75.0), (3, 70.0)]


def test_board_rows_respect_lower_is_better():
    dataset = make_board(higher_is_better=False)
    assert [r.score for r in board_rows(dataset)] == [70.0, 75.0, 80.0]


def test_equal_scores_share_a_rank():
    dataset = make_board(scores=(80.0, 80.0, 70.0))
    assert [r.rank for r in board_rows(dataset)] == [1, 1, 3]


def test_private_results_are_not_on_the_board():
    dataset = make_board()
    Result.objects.filter(score=80.0).update(is_public=False)
    assert [r.score for r in board_rows(dataset)] == [75.0, 70.0]


def test_publish_version_freezes_the_board_and_numbers_up():
    dataset = make_board()
    first = publish_version(dataset, note="snapshot")
    assert first.number == 0
    assert [(e.rank, e.method_name, e.score, e.reference_key) for e in first.entries.all()] == [
        (1, "method 1", 80.0, "Paper2014"), (2, "method 2", 75.0, "Paper2014"), (3, "method 0", 70.0, "Paper2014")]

    Result.objects.filter(score=80.0).update(score=60.0)  # live results move on ...
    second = publish_version(dataset)

    assert second.number == 1
    assert [e.score for e in first.entries.all()] == [80.0, 75.0, 70.0]  # ... the published version does not
    assert [e.score for e in second.entries.all()] == [75.0, 70.0, 60.0]
    assert first.content_hash != second.content_hash


def test_same_board_gives_the_same_hash():
    dataset = make_board()
    assert publish_version(dataset).content_hash == publish_version(dataset).content_hash


def test_publishing_an_existing_number_is_refused():
    dataset = make_board()
    publish_version(dataset, number=0)
    with pytest.raises(VersionExists):
        publish_version(dataset, number=0)
    assert publish_version(dataset, number=5).number == 5
    assert publish_version(dataset).number == 6
