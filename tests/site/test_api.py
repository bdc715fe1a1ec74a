"""The read-only API: only public results, filters, references with BibTeX, and its OpenAPI schema."""
from types import SimpleNamespace

import bibtexparser
import pytest
import yaml
from django.db import transaction
from pytest_django.asserts import assertContains, assertNotContains
from snapshot_source import SNAPSHOT_DIR, source_bib_keys, source_snapshot

from leaderboard.registry.models import Dataset, Method, Result
from leaderboard.registry.snapshot import load_snapshot


pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def snapshot(django_db_setup, django_db_blocker):
    """The snapshot loaded once for the module, plus a private and a public evaluated MIT67 result."""
    with django_db_blocker.unblock(), transaction.atomic():
        load_snapshot(SNAPSHOT_DIR)
        mit67 = Dataset.objects.get(slug="mit67")
        Result.objects.create(dataset=mit67, method=Method.objects.create(name="private draft"), score=99.9,
                              metric=mit67.metric, kind=Result.Kind.SPECIALIZED, origin=Result.Origin.EVALUATED,
                              is_public=False)
        Result.objects.create(dataset=mit67, method=Method.objects.create(name="resnet (Shelfmark)"), score=70.1,
                              metric=mit67.metric, kind=Result.Kind.OFF_THE_SHELF, origin=Result.Origin.EVALUATED,
                              provenance={"model": "resnet"})
        yield SimpleNamespace(source=source_snapshot())
        transaction.set_rollback(True)


@pytest.fixture
def get(client):
    """GET an API URL; it must answer 200 with JSON."""
    def fetch(url, **params):
        response = client.get(url, params)
        assert response.status_code == 200, response.content[:500]
        return response.json()

    return fetch


def test_task_families(get, snapshot):
    families = get("/api/task-families/")["results"]
    assert [f["slug"] for f in families] == [f["id"] for f in snapshot.source["task_families"]]


def test_datasets_list_and_detail_with_ranked_public_results(get, snapshot):
    datasets = get("/api/datasets/")
    assert datasets["count"] == len(snapshot.source["datasets"]) + 2
    detail = get("/api/datasets/mit67/")
    assert detail["metric"]["code"] == "mean_class_accuracy"
    scores = [r["score"] for r in detail["results"]]
    assert scores == sorted(scores, reverse=True)
    assert [r["rank"] for r in detail["results"]] == list(range(1, len(scores) + 1))
    assert "private draft" not in [r["method"] for r in detail["results"]]
    assert "resnet (Shelfmark)" in [r["method"] for r in detail["results"]]


def test_lower_is_better_dataset_ranks_lowest_first(get, snapshot):
    detail = get("/api/datasets/ilsvrc2012_cls/")
    assert not detail["metric"]["higher_is_better"]
    assert detail["results"][0]["score"] == 8.06


def test_results_are_public_only_and_filterable(get, snapshot):
    everything = get("/api/results/")
    assert everything["count"] == len(snapshot.source["results"]) + 1
    assert "private draft" not in [r["method"] for r in everything["results"]]

    by_dataset = get("/api/results/", dataset="holidays", kind="off_the_shelf")["results"]
    expected = [r for r in snapshot.source["results"]
                if r["dataset"] == "holidays" and r["kind"] == "off-the-shelf CNN"]
    assert len(by_dataset) == len(expected)
    assert {r["dataset"] for r in by_dataset} == {"holidays"}

    evaluated = get("/api/results/", origin="evaluated")["results"]
    assert [r["method"] for r in evaluated] == ["resnet (Shelfmark)"]
    assert evaluated[0]["provenance"] == {"model": "resnet"}


def test_an_unknown_filter_value_is_a_clear_400(client, snapshot):
    response = client.get("/api/results/", {"kind": "quantum"})
    assert response.status_code == 400
    assert "unknown kind" in response.json()["kind"]


def test_private_result_is_not_reachable_by_id(client, snapshot):
    private = Result.objects.get(method__name="private draft")
    assert client.get(f"/api/results/{private.pk}/").status_code == 404


def test_references_with_bibtex(get, snapshot):
    references = get("/api/references/")["results"]
    assert {r["key"] for r in references} == set(source_bib_keys())
    assert references[0]["page_key"] == "[*]"
    one = get("/api/references/Razavian2014/")
    assert one["page_key"] == "[1]"
    assert bibtexparser.loads(one["bibtex"]).entries[0]["ID"] == "Razavian2014"


def test_schema_documents_every_endpoint(client, snapshot):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    assert schema["openapi"].startswith("3.")
    for endpoint in ["/api/task-families/", "/api/datasets/", "/api/datasets/{slug}/", "/api/results/",
                     "/api/references/", "/api/references/{key}/"]:
        assert endpoint in schema["paths"]
        assert set(schema["paths"][endpoint]) == {"get"}  # read-only
    parameters = {p["name"] for p in schema["paths"]["/api/results/"]["get"]["parameters"]}
    assert {"dataset", "kind", "origin"} <= parameters


def test_docs_page_lists_endpoints_without_a_cdn(client, snapshot):
    response = client.get("/api/docs/")
    assertContains(response, "/api/results/?dataset=")
    assertContains(response, 'href="/api/schema/"')
    assertNotContains(response, "cdn.")


def test_api_is_read_only(client, snapshot):
    assert client.post("/api/results/", {"score": 1}).status_code == 405
