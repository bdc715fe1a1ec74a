"""Honest boards: measured scores with their intervals, rank groups for rows a paired bootstrap cannot tell
apart, the protocol as a column and a filter (page, API, CSV), and published versions that freeze it all."""
import csv
import io

import numpy as np
import pytest

from leaderboard.boards.selectors import board_rows
from leaderboard.boards.services import publish_version, warm_rank_groups
from leaderboard.registry.models import Method, Result
from workers.confidence import save_units
from workers.protocols import UnitOutputs

pytestmark = pytest.mark.django_db


def _predictions(labels, accuracy, seed):
    rng = np.random.default_rng(seed)
    wrong = (labels + 1 + rng.integers(0, 3, size=len(labels))) % 4
    return np.where(rng.random(len(labels)) < accuracy, labels, wrong)


@pytest.fixture
def measured(digits, settings, tmp_path):
    """Three measured rows on the same 800 test images (two within noise of each other, one far below)
    and the board's reported baseline (90.0, from the digits fixture)."""
    settings.MEDIA_ROOT = tmp_path
    labels = np.arange(800) % 4
    rows = {}
    drawn = sorted((_predictions(labels, accuracy, seed) for accuracy, seed in ((0.95, 1), (0.948, 2), (0.70, 3))),
                   key=lambda p: -np.mean(p == labels))   # Net A scores highest, Net C lowest
    for (name, protocol), predictions in zip((("Net A", "knn"), ("Net B", "linear_probe"), ("Net C", "svm")), drawn):
        save_units(tmp_path / f"{name}.npz", UnitOutputs("predictions", predictions, labels=labels))
        score = float(np.mean(predictions == labels)) * 100
        rows[name] = Result.objects.create(
            dataset=digits, method=Method.objects.create(name=name), score=score, metric=digits.metric,
            kind=Result.Kind.OFF_THE_SHELF, origin=Result.Origin.EVALUATED, protocol=protocol,
            protocol_detail="k = 20, T = 0.07" if protocol == "knn" else "", ci_low=score - 1.5, ci_high=score + 1.5,
            units=f"{name}.npz")
    return rows


def test_rows_a_paired_bootstrap_cannot_separate_share_a_rank_group(measured, digits):
    # a page never runs the bootstrap: until the worker (or publishing) compared them, rows stand apart
    assert [r.rank_group for r in board_rows(digits)] == ["1", "2", "3", "4"]
    # one pair to compare: on the whole board only A-B are adjacent measured rows (the baseline sits
    # between B and C), and each protocol's filter holds a single measured row
    assert warm_rank_groups(digits) == 1
    rows = board_rows(digits)
    assert [(r.method.name, r.rank, r.rank_group) for r in rows] == [
        ("Net A", 1, "1–2"), ("Net B", 2, "1–2"), ("Pixels + linear SVM (baseline)", 3, "3"), ("Net C", 4, "4")]
    assert warm_rank_groups(digits) == 0   # the verdicts are kept: computed once


def test_the_board_page_shows_intervals_rank_groups_and_filters_by_protocol(client, measured, digits):
    warm_rank_groups(digits)
    page = client.get(digits.get_absolute_url()).content.decode()
    assert '<td class="num rank" title="rank 1">1–2</td>' in page
    assert "±&#8239;1.50" in page
    assert "weighted k-NN (k = 20), k = 20, T = 0.07" in page
    assert '<span class="badge reported">reported by a paper</span>' in page   # the baseline: no interval
    only_knn = client.get(digits.get_absolute_url(), {"protocol": "knn"}).content.decode()
    assert "Net A" in only_knn and "Net B" not in only_knn and "Pixels + linear SVM" not in only_knn
    reported = client.get(digits.get_absolute_url(), {"protocol": "reported"}).content.decode()
    assert "Pixels + linear SVM" in reported and "Net A" not in reported


def test_the_api_and_csv_carry_the_protocol_interval_and_rank_group(client, measured, digits):
    warm_rank_groups(digits)
    detail = client.get(f"/api/datasets/{digits.slug}/").json()["results"]
    first = detail[0]
    assert (first["protocol"], first["rank_group"]) == ("knn", "1–2")
    assert first["confidence_interval"]["low"] == pytest.approx(first["score"] - 1.5)
    assert detail[2]["protocol"] == "reported" and detail[2]["confidence_interval"] is None
    listed = client.get("/api/results/", {"protocol": "linear_probe"}).json()["results"]
    assert [r["method"] for r in listed] == ["Net B"]
    assert client.get("/api/results/", {"protocol": "bogus"}).status_code == 400
    rows = list(csv.DictReader(io.StringIO(client.get(f"/datasets/{digits.slug}.csv").content.decode())))
    assert [(r["method"], r["protocol"], r["rank_group"]) for r in rows][:3] == [
        ("Net A", "knn", "1–2"), ("Net B", "linear_probe", "1–2"), ("Pixels + linear SVM (baseline)", "reported", "3")]
    assert float(rows[0]["ci_low"]) == pytest.approx(float(rows[0]["score"]) - 1.5)


def test_a_published_version_freezes_the_intervals_and_rank_groups(client, measured, digits):
    version = publish_version(digits)
    frozen = {e.method_name: e for e in version.entries.all()}
    assert (frozen["Net B"].rank_group, frozen["Net B"].protocol) == ("1–2", "linear_probe")
    assert frozen["Net A"].ci_low == pytest.approx(measured["Net A"].ci_low)
    measured["Net B"].delete()   # later changes do not reach the frozen version
    page = client.get(version.get_absolute_url()).content.decode()
    assert "Net B" in page and "1–2" in page
