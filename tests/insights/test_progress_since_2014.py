"""The views that make the tables useful today, on the loaded 2014 snapshot: "since 2014" (the snapshot's best of
each kind against today's best), the state-of-the-art-over-time chart's series, and a page per model."""
import json
import re
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from leaderboard.insights import selectors
from leaderboard.registry.models import Dataset, Method, Reference, Result
from leaderboard.registry.snapshot import load_snapshot

pytestmark = pytest.mark.django_db
SNAPSHOT_DIR = settings.BASE_DIR / "fixtures" / "snapshot"


@pytest.fixture(scope="module")
def board(django_db_setup, django_db_blocker):
    """The snapshot, plus on VOC 2007 today's numbers: a Shelfmark measurement (off-the-shelf, 88.0) and a 2021
    paper's fine-tuned 92.5; on ILSVRC 2012 (top-5 error, lower is better) a 2021 paper's 3.5. Rolled back after."""
    with django_db_blocker.unblock(), transaction.atomic():
        load_snapshot(SNAPSHOT_DIR)
        voc07 = Dataset.objects.get(slug="voc2007_cls")
        ilsvrc = Dataset.objects.get(slug="ilsvrc2012_cls")
        paper = Reference.objects.create(key="Dosovitskiy2021", title="An image is worth 16x16 words",
                                         authors="Dosovitskiy, A. and others", year="2021", venue="ICLR")
        vit = Method.objects.create(name="ViT-L/16 fine-tuned", reference=paper)
        fine_tuned = Result.objects.create(dataset=voc07, method=vit, score=92.5, metric=voc07.metric,
                                           kind=Result.Kind.SPECIALIZED, origin=Result.Origin.REPORTED, reference=paper)
        Result.objects.create(dataset=ilsvrc, method=vit, score=3.5, metric=ilsvrc.metric,
                              kind=Result.Kind.SPECIALIZED, origin=Result.Origin.REPORTED, reference=paper)
        dino = Method.objects.create(name="DINOv2 ViT-S/14 (Shelfmark)")
        measured = Result.objects.create(
            dataset=voc07, method=dino, score=88.0, metric=voc07.metric, kind=Result.Kind.OFF_THE_SHELF,
            origin=Result.Origin.EVALUATED, protocol="svm", ci_low=87.4, ci_high=88.6,
            provenance={"submission": 7, "model": "hf-hub:facebook/dinov2-small", "weights_sha256": "cd" * 32,
                        "hardware": "NVIDIA H200", "code_version": "abc123", "protocol_version": "shelfmark/1.0"})
        Result.objects.create(dataset=voc07, method=Method.objects.create(name="A private draft"), score=99.0,
                              metric=voc07.metric, kind=Result.Kind.OFF_THE_SHELF, origin=Result.Origin.EVALUATED,
                              is_public=False, ci_low=98.0, ci_high=99.5)
        yield SimpleNamespace(voc07=voc07, ilsvrc=ilsvrc, vit=vit, dino=dino, measured=measured,
                              fine_tuned=fine_tuned)
        transaction.set_rollback(True)


def since(dataset):
    return {row.kind: (row.then and (row.then.method.name, row.then.score), row.now and row.now.score, row.gain)
            for row in selectors.since_2014(dataset)}


def test_since_2014_sets_the_snapshots_best_of_each_kind_against_todays(board):
    assert since(board.voc07) == {
        "non_cnn": (("AGS (subcategory-aware, Dong et al. CVPR 2013)", 71.1), 71.1, 0.0),
        "off_the_shelf": (("SPP-net Overfeat-7, full-image pool features + SVM, no fine-tuning", 82.44), 88.0,
                          pytest.approx(5.56)),
        "specialized": (("Chatfield et al. CNN-S, fine-tuned (TUNE-RNK) + multi-view", 82.42), 92.5,
                        pytest.approx(10.08)),
    }


def test_on_a_lower_is_better_board_a_lower_error_is_a_gain(board):
    assert since(board.ilsvrc) == {
        "non_cnn": (("ISI (Fisher vectors; 2nd place ILSVRC-2012)", 26.2), 26.2, 0.0),
        "off_the_shelf": (None, None, None),
        "specialized": (("SPP-net, 11-model combination (ILSVRC-2014 entry, rank #3)", 8.06), 3.5,
                        pytest.approx(4.56)),
    }


def test_a_board_the_2014_page_did_not_have_has_no_since_2014(board):
    assert selectors.since_2014(Dataset.objects.get(slug="digits")) == []


def test_the_dataset_page_shows_since_2014(client, board):
    page = client.get("/datasets/voc2007_cls/").content.decode()
    table = re.search(r'<section id="since-2014">(.*?)</section>', page, re.DOTALL).group(1)
    rows = dict(re.findall(r'<tr id="since-(\w+)">(.*?)</tr>', table, re.DOTALL))
    assert "unchanged since 2014" in rows["non_cnn"]
    assert "82.44" in rows["off_the_shelf"] and "88.0" in rows["off_the_shelf"] and "+5.6" in rows["off_the_shelf"]
    assert "measured" in rows["off_the_shelf"] and f'href="/models/{board.dino.pk}/"' in rows["off_the_shelf"]
    assert "+10.1" in rows["specialized"]
    assert "A private draft" not in page


def test_the_state_of_the_art_series_steps_through_each_years_record(board):
    now = timezone.now().year
    chart = selectors.sota_series(board.voc07)
    series = {s["kind"]: s for s in chart["series"]}
    records = {kind: [(r["year"], r["score"]) for r in s["records"]] for kind, s in series.items()}
    assert records == {
        "non_cnn": [(2011, 70.5), (2013, 71.1)],             # 2012's GHM (64.7) beat nothing: no record
        "off_the_shelf": [(2014, 82.44), (now, 88.0)],       # the measurement counts at the year it was measured
        "specialized": [(2014, 82.42), (2021, 92.5)],
    }
    assert series["off_the_shelf"]["records"][-1]["measured"] is True
    assert series["non_cnn"]["x"] == [2011, 2013, now] and series["non_cnn"]["y"] == [70.5, 71.1, 71.1]
    assert series["specialized"]["x"] == [2014, 2021, now]
    assert chart["undated"] == 0 and chart["unit"] == "%"


def test_on_a_lower_is_better_board_the_records_go_down(board):
    series = {s["kind"]: s for s in selectors.sota_series(board.ilsvrc)["series"]}
    assert [(r["year"], r["score"]) for r in series["specialized"]["records"]] == [
        (2012, 15.3), (2013, 14.8), (2014, 8.06), (2021, 3.5)]
    assert set(series) == {"non_cnn", "specialized"}


def test_the_dataset_page_carries_the_charts_data_for_its_script(client, board):
    page = client.get("/datasets/voc2007_cls/").content.decode()
    data = json.loads(re.search(r'<script id="sota-chart-data" type="application/json">(.*?)</script>', page,
                                re.DOTALL).group(1))
    assert data == json.loads(json.dumps(selectors.sota_series(board.voc07)))
    assert 'id="sota-chart"' in page and "js/insights.js" in page


def test_a_model_page_lists_its_results_with_provenance_and_references(client, board):
    response = client.get(f"/models/{board.vit.pk}/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "ViT-L/16 fine-tuned" in page
    assert 'href="/datasets/voc2007_cls/#result-' in page and 'href="/datasets/ilsvrc2012_cls/#result-' in page
    assert "Results on 2 boards" in page
    assert 'id="ref-Dosovitskiy2021"' in page                # its paper, with its BibTeX box

    measured = client.get(f"/models/{board.dino.pk}/").content.decode()
    assert "evaluated by Shelfmark" in measured
    assert "cdcdcdcdcdcd…" in measured and "NVIDIA H200" in measured      # provenance, hashes shortened
    assert 'href="/submissions/7/"' in measured and "full provenance" in measured


def test_board_rows_link_to_their_model_page(client, board):
    page = client.get("/datasets/voc2007_cls/").content.decode()
    assert f'<a href="/models/{board.dino.pk}/">DINOv2 ViT-S/14 (Shelfmark)</a>' in page


def test_a_model_without_a_public_result_is_not_found(client, board):
    private = Method.objects.get(name="A private draft")
    assert client.get(f"/models/{private.pk}/").status_code == 404
    assert client.get("/models/999999/").status_code == 404
