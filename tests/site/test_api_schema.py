"""The API against its own schema: schemathesis fuzzes every operation of /api/schema/ (the schema's own
included, so endpoints added later are covered) on the 2014 snapshot, and every answer must be documented,
conform to the schema, and never be a server error. Then the bugs it found, one test each."""
import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, settings
from snapshot_source import SNAPSHOT_DIR

from leaderboard.registry.models import Dataset, Method, Reference, Result
from leaderboard.registry.snapshot import load_snapshot
from leaderboard.wsgi import application

pytestmark = pytest.mark.django_db

# Schemathesis leaves out the operation that served the schema unless a filter names it.
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application).include(path_regex=".*")

# Enough for the coverage phase's edge values (huge numbers, negatives, repeated parameters) and a few
# random cases per operation, in ~20 s on 2 cores; the same cases every run.
FUZZ = settings(max_examples=15, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def snapshot(django_db_setup, django_db_blocker):
    """The snapshot, plus an evaluated result with an interval (the other branch of the serializer) and a
    private one (never to be served)."""
    with django_db_blocker.unblock(), transaction.atomic():
        load_snapshot(SNAPSHOT_DIR)
        mit67 = Dataset.objects.get(slug="mit67")
        Result.objects.create(dataset=mit67, method=Method.objects.create(name="resnet (Shelfmark)"), score=70.1,
                              metric=mit67.metric, kind=Result.Kind.OFF_THE_SHELF, origin=Result.Origin.EVALUATED,
                              protocol="linear_probe", ci_low=69.2, ci_high=71.0, provenance={"model": "resnet"})
        Result.objects.create(dataset=mit67, method=Method.objects.create(name="private draft"), score=99.9,
                              metric=mit67.metric, kind=Result.Kind.SPECIALIZED, origin=Result.Origin.EVALUATED,
                              is_public=False)
        yield
        transaction.set_rollback(True)


@pytest.fixture
def wsgi_calls(snapshot):
    """Schemathesis calls the WSGI app itself, whose request signals would close the test's database
    connection (and its transaction); Django's test client unhooks them the same way."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@schema.parametrize()
@FUZZ
def test_every_operation_answers_as_documented(case, wsgi_calls):
    case.call_and_validate()


def test_every_public_object_is_served_as_documented(wsgi_calls):
    """Random slugs and ids miss: each detail operation gets every identifier its list answers with."""
    for result in schema.get_all_operations():
        operation = result.ok()
        names = [parameter.name for parameter in operation.path_parameters]
        if names:
            for item in listed(operation.path.split("{")[0]):
                operation.Case(path_parameters={name: item[name] for name in names}).call_and_validate()


def listed(collection: str) -> list[dict]:
    """Every item of a list operation, page by page, each page checked against the schema."""
    items, page = [], {"next": True}
    while page["next"]:
        page = schema[collection]["GET"].Case(query={"limit": 1000, "offset": len(items)}).call_and_validate().json()
        items += page["results"]
    assert items, collection
    return items


def test_a_huge_limit_is_clamped_and_a_negative_offset_refused(client, snapshot):
    huge = 63876916315560686681664645735907328
    # Found by schemathesis: this limit reached SQLite's LIMIT clause (64-bit integers) and answered 500.
    response = client.get("/api/references/", {"limit": huge, "offset": -40457})
    assert response.status_code == 400
    assert response.json() == {"offset": "offset must be an integer of at least 0, not '-40457'"}

    page = client.get("/api/references/", {"limit": huge, "offset": 1}).json()
    assert len(page["results"]) == Reference.objects.count() - 1
    assert page["previous"].endswith("/api/references/?limit=1000")   # clamped to max_limit


@pytest.mark.parametrize("query", [{"limit": "ten"}, {"limit": 0}, {"limit": "-5"}, {"offset": "AAA"},
                                   {"offset": "1e3"}, {"offset": "١٢"}, {"offset": ["0", "0"]}])
def test_malformed_pagination_is_a_400_naming_the_parameter(client, snapshot, query):
    # DRF used to fall back to its defaults silently (schemathesis: "schema-violating request accepted").
    response = client.get("/api/task-families/", query)
    assert response.status_code == 400
    assert set(response.json()) == set(query)


def test_an_offset_past_the_end_is_an_empty_page(client, snapshot):
    response = client.get("/api/task-families/", {"offset": "9" * 5000, "limit": 5})
    assert response.status_code == 200
    assert response.json()["results"] == [] and response.json()["next"] is None


@pytest.mark.parametrize("query", [{"protocol": "name"}, {"dataset": "not a slug"}, {"dataset": "voc\x00"},
                                   {"kind": ["non_cnn", "specialized"]}])
def test_results_filters_refuse_what_the_schema_does_not_allow(client, snapshot, query):
    response = client.get("/api/results/", query)
    assert response.status_code == 400
    assert set(response.json()) == set(query)


def test_empty_filters_are_no_filter(client, snapshot):
    """The docs page's form sends ?dataset=&kind=&origin=&protocol=."""
    response = client.get("/api/results/", {"dataset": "", "kind": "", "origin": "", "protocol": ""})
    assert response.status_code == 200
    assert response.json()["count"] == Result.objects.filter(is_public=True).count()


@pytest.mark.parametrize("url", ["/api/datasets/a.b.c/", "/api/results/-1.5e-38/", "/api/references/a%0Ab/",
                                 "/api/task-families/%00/", "/api/nothing-here/"])
def test_an_unknown_api_url_is_a_json_404(client, snapshot, url):
    # Found by schemathesis: these fell through the API's routes to the site's HTML 404 page.
    response = client.get(url)
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_a_missing_slash_still_redirects(client, snapshot):
    response = client.get("/api/results")
    assert response.status_code == 301 and response["Location"] == "/api/results/"


def test_credentials_are_not_read(client, snapshot):
    # A malformed Authorization header used to be refused (403) by DRF's basic authentication.
    response = client.get("/api/results/", HTTP_AUTHORIZATION="Basic not-base64")
    assert response.status_code == 200


def test_an_unacceptable_media_type_is_a_documented_406(client, snapshot):
    response = client.get("/api/datasets/", HTTP_ACCEPT="application/xml")
    assert response.status_code == 406
    assert "406" in client.get("/api/schema/", {"format": "json"}).json()["paths"]["/api/datasets/"]["get"][
        "responses"]


@pytest.mark.parametrize("query", [{"format": "xml"}, {"lang": "zz"}, {"format": ["json", "yaml"]}])
def test_schema_parameters_are_checked_and_errors_are_json(client, query):
    response = client.get("/api/schema/", query)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert set(response.json()) == set(query)
