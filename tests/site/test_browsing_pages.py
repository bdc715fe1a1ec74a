"""Every browsing page and download, on the loaded snapshot (loaded once for the module)."""
import csv
import io
import json
import re
from html.parser import HTMLParser
from types import SimpleNamespace

import bibtexparser
import pytest
from django.db import connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import include, path
from pytest_django.asserts import assertContains, assertNotContains
from snapshot_source import SNAPSHOT_DIR, source_bib_keys, source_snapshot

from leaderboard.front.templatetags.shelfmark import url_if_exists
from leaderboard.registry.models import Dataset, Method, Reference, Result
from leaderboard.registry.snapshot import load_snapshot

pytestmark = pytest.mark.django_db


class Links(HTMLParser):
    """Collects ids, links (with their class) and json_script payloads of a page."""

    def __init__(self):
        super().__init__()
        self.ids, self.links, self.scripts, self._script = set(), [], {}, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "a" and "href" in attrs:
            self.links.append((attrs["href"], attrs.get("class", "")))
        if tag == "script" and attrs.get("type") == "application/json":
            self._script = attrs["id"]

    def handle_data(self, data):
        if self._script:
            self.scripts[self._script] = json.loads(data)
            self._script = None


def parse(response) -> Links:
    links = Links()
    links.feed(response.content.decode())
    return links


def home_cells(content: str, slug: str) -> tuple[str, list[str]]:
    """One dataset's row of the home table (its candidates table included) and its column cells."""
    row = re.search(rf'<tr id="dataset-{slug}">(.*?)</tr>\s*(?:<tr id="dataset-|</tbody>\s*</table>\s*</div>)',
                    content, re.DOTALL).group(1)
    return row, re.findall(r'<td data-column="[^"]+">(.*?)</td>', row, re.DOTALL)


@pytest.fixture(scope="module")
def snapshot(django_db_setup, django_db_blocker):
    """The snapshot loaded once for the module, with an evaluated public result and a private one (the first
    shows on the dataset page, never on home); rolled back when the module is done."""
    with django_db_blocker.unblock(), transaction.atomic():
        load_snapshot(SNAPSHOT_DIR)
        voc07 = Dataset.objects.get(slug="voc2007_cls")
        evaluated = Result.objects.create(
            dataset=voc07, method=Method.objects.create(name="efficientnet_lite0 (Shelfmark)"), score=79.5,
            metric=voc07.metric, kind=Result.Kind.OFF_THE_SHELF, origin=Result.Origin.EVALUATED,
            provenance={"model": "efficientnet_lite0", "weights_sha256": "ab" * 32, "hardware": "cpu"},
        )
        private = Result.objects.create(
            dataset=voc07, method=Method.objects.create(name="Secret draft"), score=99.0,
            metric=voc07.metric, kind=Result.Kind.SPECIALIZED, origin=Result.Origin.EVALUATED, is_public=False,
        )
        yield SimpleNamespace(source=source_snapshot(), voc07=voc07, evaluated=evaluated, private=private)
        transaction.set_rollback(True)


# ---- the home page -----------------------------------------------------------------------------------

def test_every_dataset_of_the_snapshot_is_listed_by_family(client, snapshot):
    response = client.get("/")
    assert response.status_code == 200
    page = parse(response)
    for family in snapshot.source["task_families"]:
        assert f"family-{family['id']}" in page.ids
    for dataset in snapshot.source["datasets"]:
        assert f"dataset-{dataset['id']}" in page.ids
    assertContains(response, "Best non-CNN")
    assertContains(response, "Off-the-shelf CNN")


def test_best_row_of_each_kind_fills_the_three_columns(client, snapshot):
    _, cells = home_cells(client.get("/").content.decode(), "voc2007_cls")
    assert len(cells) == 3
    assert "71.1" in cells[0]  # AGS, best non-CNN
    assert "82.44" in cells[1]  # SPP-net features, best off-the-shelf
    assert "82.42" in cells[2]  # Chatfield fine-tuned, best specialized


def test_lower_is_better_picks_the_lowest_error(client, snapshot):
    row, cells = home_cells(client.get("/").content.decode(), "ilsvrc2012_cls")
    assert "8.06" in cells[2]
    assert "lower is better" in row


def test_every_number_links_to_an_existing_reference_anchor(client, snapshot):
    home = parse(client.get("/"))
    references = parse(client.get("/references/"))
    scores = [href for href, cls in home.links if "cell-score" in cls]
    filled_cells = len({(r["dataset"], r["kind"]) for r in snapshot.source["results"]})
    assert len(scores) == len(snapshot.source["results"]) + filled_cells  # candidates + the columns
    for href in scores:
        assert href.startswith("/references/#ref-"), href
        assert href.split("#")[1] in references.ids


def test_unverified_numbers_are_marked(client, snapshot):
    content = client.get("/").content.decode()
    # NUS-PSL VOC2012 82.2 is a low-confidence recollection: dagger with an explaining title.
    assert re.search('>82.2</a><abbr class="unverified" title="unverified \\(low \\(unverified\\)\\)', content)
    daggers = content.count('class="unverified" title="unverified (')
    unverified_rows = sum(1 for r in snapshot.source["results"] if r["confidence"] != "high")
    assert daggers >= unverified_rows


def test_missing_cells_say_missing_with_the_reason_never_zero(client, snapshot):
    content = client.get("/").content.decode()
    _, cells = home_cells(content, "voc2012_action")
    assert ">missing<" in cells[0]
    assert "not recovered" in cells[0]
    assert not re.search(">\\s*0(\\.0)?\\s*<", cells[0])
    assert "—" in cells[1]# no off-the-shelf row at all: a dash, not a number
    assert "Azizpour" in content  # [14]'s numbers are listed as not recovered


def test_home_shows_the_snapshot_only(client, snapshot):
    content = client.get("/").content.decode()
    assert "efficientnet_lite0 (Shelfmark)" not in content
    assert "Secret draft" not in content


def test_filter_by_family_and_kind(client, snapshot):
    response = client.get("/", {"family": "scene_recognition", "kind": "off_the_shelf"})
    page = parse(response)
    assert {i for i in page.ids if i.startswith("dataset-")} == {"dataset-mit67", "dataset-sun397"}
    assertContains(response, "Off-the-shelf CNN")
    assertNotContains(response, "<th>Best non-CNN</th>")
    assertNotContains(response, "MLrep")  # a non-CNN candidate


def test_unknown_filter_values_show_the_full_table_with_an_error(client, snapshot):
    response = client.get("/", {"family": "astrology"})
    assert response.status_code == 200
    assertContains(response, "The full table is shown")
    assert "dataset-lfw" in parse(response).ids


def test_demo_benchmarks_have_their_own_block(client, snapshot):
    response = client.get("/")
    block = response.content.decode().split('id="demo-benchmarks"')[1]
    assert "/datasets/digits/" in block
    assert "/datasets/skimage_holidays/" in block
    assert "dataset-digits" not in parse(response).ids


def test_home_needs_few_queries(client, snapshot):
    with CaptureQueriesContext(connection) as queries:
        client.get("/")
    assert len(queries) <= 10


# ---- a dataset's page --------------------------------------------------------------------------------

def test_results_are_ranked_with_origin_and_provenance(client, snapshot):
    response = client.get("/datasets/voc2007_cls/")
    assert response.status_code == 200
    content = response.content.decode()
    cells = re.findall(r'<a class="cell-score"[^>]*>([\d.]+)</a>|<span class="cell-score">([\d.]+)</span>', content)
    ranks = [float(s) for s in cells for s in s if s]
    assert ranks == sorted(ranks, reverse=True)
    assert len(ranks) == 9  # 8 snapshot rows + the public evaluated one
    assertContains(response, "evaluated by Shelfmark")
    assertContains(response, "efficientnet_lite0")
    assertContains(response, "abababababab…")  # weights hash, shortened
    assertNotContains(response, "Secret draft")


def test_chart_data_holds_every_row_in_rank_order(client, snapshot):
    page = parse(client.get("/datasets/ilsvrc2012_cls/"))
    bars = page.scripts["board-chart-data"]["bars"]
    assert [b["score"] for b in bars] == [8.06, 14.2, 14.8, 15.3, 26.2]
    assert "lower is better" in page.scripts["board-chart-data"]["title"]
    assert {b["kind"] for b in bars} == {"non_cnn", "specialized"}


def test_demo_dataset_page_without_results(client, snapshot):
    response = client.get("/datasets/digits/")
    assertContains(response, "demo benchmark")
    assertContains(response, "No public results yet")


def test_unknown_dataset_is_404(client, snapshot):
    assert client.get("/datasets/no-such-benchmark/").status_code == 404
    assert client.get("/datasets/no-such-benchmark.csv").status_code == 404


def test_versions_link_only_when_that_page_exists(client, snapshot):
    with override_settings(ROOT_URLCONF=WithoutVersionsURLConf):
        assertNotContains(client.get("/datasets/mit67/"), "Published versions")
    with override_settings(ROOT_URLCONF=WithVersionsURLConf):
        assertContains(client.get("/datasets/mit67/"), 'href="/versions-of/mit67/"')


def _placeholder(request, slug):  # pragma: no cover - only reversed, never requested
    raise AssertionError


class WithoutVersionsURLConf:
    urlpatterns = [path("api/", include("leaderboard.api.urls")), path("", include("leaderboard.front.urls"))]


class WithVersionsURLConf:
    urlpatterns = WithoutVersionsURLConf.urlpatterns + [
        path("versions-of/<slug:slug>/", _placeholder, name="leaderboard-versions")]


# ---- downloads ---------------------------------------------------------------------------------------

def test_csv_parses_back_in_rank_order(client, snapshot):
    response = client.get("/datasets/ukbench.csv")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="ukbench.csv"'
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    expected = sorted((r["score"] for r in snapshot.source["results"] if r["dataset"] == "ukbench"), reverse=True)
    assert [float(r["score"]) for r in rows] == expected
    assert [r["rank"] for r in rows] == ["1", "2", "3", "4"]
    assert rows[0]["metric"] == "NS_score_pct"
    assert rows[0]["reference_page_key"] == "[1]"


def test_csv_quotes_a_name_a_spreadsheet_would_run_as_a_formula(client, snapshot):
    from leaderboard.registry.models import Dataset, Method, Result

    dataset = Dataset.objects.get(slug="ukbench")
    Result.objects.create(dataset=dataset, method=Method.objects.create(name='=HYPERLINK("http://x")'),
                          score=99.0, metric=dataset.metric, kind=Result.Kind.OFF_THE_SHELF)
    rows = list(csv.DictReader(io.StringIO(client.get("/datasets/ukbench.csv").content.decode())))
    assert rows[0]["method"] == '\'=HYPERLINK("http://x")'
    assert rows[1]["method"] == "CNNaug-ss"


def test_json_parses_back_with_metric_and_results(client, snapshot):
    response = client.get("/datasets/voc2007_cls.json")
    assert response["Content-Disposition"] == 'attachment; filename="voc2007_cls.json"'
    document = json.loads(response.content)
    assert document["dataset"]["slug"] == "voc2007_cls"
    assert document["metric"]["higher_is_better"]
    assert len(document["results"]) == 9
    assert document["results"][0]["score"] == 82.44
    evaluated = [r for r in document["results"] if r["origin"] == "evaluated"]
    assert evaluated[0]["provenance"]["model"] == "efficientnet_lite0"


def test_bibtex_download_parses_back_to_every_reference(client, snapshot):
    response = client.get("/references.bib")
    assert response["Content-Disposition"] == 'attachment; filename="references.bib"'
    database = bibtexparser.loads(response.content.decode())
    assert [e["ID"] for e in database.entries] == list(Reference.objects.values_list("key", flat=True))
    assert {e["ID"] for e in database.entries} == set(source_bib_keys())
    razavian = next(e for e in database.entries if e["ID"] == "Razavian2014")
    assert razavian["eprint"] == "1403.6382"


# ---- the references page -----------------------------------------------------------------------------

def test_page_references_first_in_page_order_then_outside_papers(client, snapshot):
    content = client.get("/references/").content.decode()
    keys = re.findall(r'<span class="ref-key">(\[[^\]]+\])</span>', content)
    assert keys == ["[*]", "[+]"] + [f"[{n}]" for n in range(15)]
    anchors = re.findall(r'<li id="ref-([^"]+)">', content)
    assert anchors == list(Reference.objects.values_list("key", flat=True))


def test_each_reference_lists_the_results_citing_it_and_its_bibtex(client, snapshot):
    response = client.get("/references/")
    content = response.content.decode()
    item = content.split('<li id="ref-Donahue2014">')[1].split("</li>")[0]
    assert "/datasets/caltech101/#result-" in item
    assert "/datasets/sun397/#result-" in item
    assert '<pre id="bib-Donahue2014">@inproceedings{Donahue2014' in item
    assert 'data-copy-target="bib-Donahue2014"' in item
    azizpour = content.split('<li id="ref-Azizpour2014">')[1].split("</li>")[0]
    assert ">missing<" in azizpour


def test_latex_is_shown_as_text(client, snapshot):
    assertContains(client.get("/references/"), "Léon Bottou")


# ---- the overview and the navigation -----------------------------------------------------------------

def test_overview_has_a_chart_per_family_with_the_three_columns(client, snapshot):
    response = client.get("/overview/")
    page = parse(response)
    series = page.scripts["overview-data"]
    assert [f["family"] for f in series] == [f["id"] for f in snapshot.source["task_families"]]
    for family in series:
        assert f"overview-{family['family']}" in page.ids
    voc = next(d for f in series for d in f["datasets"] if d["slug"] == "voc2007_cls")
    assert voc["best"]["off_the_shelf"]["score"] == 82.44
    ytf = next(d for f in series for d in f["datasets"] if d["slug"] == "ytf")
    assert ytf["best"]["non_cnn"] is None
    assertContains(response, "/static/vendor/plotly.min.js")


def test_plotly_is_served_from_our_own_static_files(client, snapshot):
    response = client.get("/static/vendor/plotly.min.js")
    assert response.status_code == 200
    assert b"window.Plotly" in b"".join(response.streaming_content)


def test_nav_links_to_the_main_pages(client, snapshot):
    links = [href for href, _ in parse(client.get("/references/")).links]
    for href in ["/", "/overview/", "/references/", "/api/docs/"]:
        assert href in links


def test_links_of_other_apps_appear_only_when_their_url_exists(client, snapshot):
    assert url_if_exists("no-such-page") == ""
    assert url_if_exists("dataset-detail", "mit67") == "/datasets/mit67/"
    with override_settings(ROOT_URLCONF=WithoutVersionsURLConf):
        content = client.get("/").content.decode()
    assert "Submit" not in content
    assert "Log in" not in content


# ---- the admin ---------------------------------------------------------------------------------------

def test_every_registry_changelist_loads_with_search_and_filters(client, snapshot):
    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.create_superuser("editor", "e@example.org", "pw-123456"))
    for model in ["taskfamily", "metric", "dataset", "reference", "method", "result", "missingcell",
                  "leaderboardversion", "historicaldownload"]:
        response = client.get(f"/admin/registry/{model}/", {"q": "voc"})
        assert response.status_code == 200, model
    response = client.get("/admin/registry/result/", {"kind__exact": "non_cnn", "q": "Fisher"})
    assertContains(response, "Fisher vectors")
    assertNotContains(response, "CNNaug-SVM")


def test_a_published_version_is_read_only_in_the_admin(client, snapshot):
    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.create_superuser("editor", "e@example.org", "pw-123456"))
    version = snapshot.voc07.versions.get(number=0)
    response = client.get(f"/admin/registry/leaderboardversion/{version.pk}/change/")
    assert response.status_code == 200
    assertNotContains(response, 'name="content_hash"')
