"""Every browsing page and download, on the loaded snapshot (loaded once per class)."""
import csv
import io
import json
import re
from html.parser import HTMLParser

import bibtexparser
from django.db import connection
from django.test import TestCase, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import include, path
from snapshot_source import SNAPSHOT_DIR, source_bib_keys, source_snapshot

from leaderboard.front.templatetags.shelfmark import url_if_exists
from leaderboard.registry.models import Dataset, Method, Reference, Result
from leaderboard.registry.snapshot import load_snapshot


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


class SnapshotPages(TestCase):
    @classmethod
    def setUpTestData(cls):
        load_snapshot(SNAPSHOT_DIR)
        cls.source = source_snapshot()
        cls.voc07 = Dataset.objects.get(slug="voc2007_cls")
        # An evaluated public result and a private one: the first shows on the dataset page, never on home.
        cls.evaluated = Result.objects.create(
            dataset=cls.voc07, method=Method.objects.create(name="efficientnet_lite0 (Shelfmark)"), score=79.5,
            metric=cls.voc07.metric, kind=Result.Kind.OFF_THE_SHELF, origin=Result.Origin.EVALUATED,
            provenance={"model": "efficientnet_lite0", "weights_sha256": "ab" * 32, "hardware": "cpu"},
        )
        cls.private = Result.objects.create(
            dataset=cls.voc07, method=Method.objects.create(name="Secret draft"), score=99.0,
            metric=cls.voc07.metric, kind=Result.Kind.SPECIALIZED, origin=Result.Origin.EVALUATED, is_public=False,
        )


class HomePageTests(SnapshotPages):
    def test_every_dataset_of_the_snapshot_is_listed_by_family(self):
        response = self.client.get("/")
        self.assertEqual(response.status_code, 200)
        page = parse(response)
        for family in self.source["task_families"]:
            self.assertIn(f"family-{family['id']}", page.ids)
        for dataset in self.source["datasets"]:
            self.assertIn(f"dataset-{dataset['id']}", page.ids)
        self.assertContains(response, "Best non-CNN")
        self.assertContains(response, "Off-the-shelf CNN")

    def test_best_row_of_each_kind_fills_the_three_columns(self):
        _, cells = home_cells(self.client.get("/").content.decode(), "voc2007_cls")
        self.assertEqual(len(cells), 3)
        self.assertIn("71.1", cells[0])  # AGS, best non-CNN
        self.assertIn("82.44", cells[1])  # SPP-net features, best off-the-shelf
        self.assertIn("82.42", cells[2])  # Chatfield fine-tuned, best specialized

    def test_lower_is_better_picks_the_lowest_error(self):
        row, cells = home_cells(self.client.get("/").content.decode(), "ilsvrc2012_cls")
        self.assertIn("8.06", cells[2])
        self.assertIn("lower is better", row)

    def test_every_number_links_to_an_existing_reference_anchor(self):
        home = parse(self.client.get("/"))
        references = parse(self.client.get("/references/"))
        scores = [href for href, cls in home.links if "cell-score" in cls]
        filled_cells = len({(r["dataset"], r["kind"]) for r in self.source["results"]})
        self.assertEqual(len(scores), len(self.source["results"]) + filled_cells)  # candidates + the columns
        for href in scores:
            self.assertTrue(href.startswith("/references/#ref-"), href)
            self.assertIn(href.split("#")[1], references.ids)

    def test_unverified_numbers_are_marked(self):
        content = self.client.get("/").content.decode()
        # NUS-PSL VOC2012 82.2 is a low-confidence recollection: dagger with an explaining title.
        self.assertRegex(content, r'>82.2</a><abbr class="unverified" title="unverified \(low \(unverified\)\)')
        daggers = content.count('class="unverified" title="unverified (')
        unverified_rows = sum(1 for r in self.source["results"] if r["confidence"] != "high")
        self.assertGreaterEqual(daggers, unverified_rows)

    def test_missing_cells_say_missing_with_the_reason_never_zero(self):
        content = self.client.get("/").content.decode()
        _, cells = home_cells(content, "voc2012_action")
        self.assertIn(">missing<", cells[0])
        self.assertIn("not recovered", cells[0])
        self.assertNotRegex(cells[0], r">\s*0(\.0)?\s*<")
        self.assertIn("—", cells[1])  # no off-the-shelf row at all: a dash, not a number
        self.assertIn("Azizpour", content)  # [14]'s numbers are listed as not recovered

    def test_home_shows_the_snapshot_only(self):
        content = self.client.get("/").content.decode()
        self.assertNotIn("efficientnet_lite0 (Shelfmark)", content)
        self.assertNotIn("Secret draft", content)

    def test_filter_by_family_and_kind(self):
        response = self.client.get("/", {"family": "scene_recognition", "kind": "off_the_shelf"})
        page = parse(response)
        self.assertEqual({i for i in page.ids if i.startswith("dataset-")}, {"dataset-mit67", "dataset-sun397"})
        self.assertContains(response, "Off-the-shelf CNN")
        self.assertNotContains(response, "<th>Best non-CNN</th>")
        self.assertNotContains(response, "MLrep")  # a non-CNN candidate

    def test_unknown_filter_values_show_the_full_table_with_an_error(self):
        response = self.client.get("/", {"family": "astrology"})
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "The full table is shown")
        self.assertIn("dataset-lfw", parse(response).ids)

    def test_demo_benchmarks_have_their_own_block(self):
        response = self.client.get("/")
        block = response.content.decode().split('id="demo-benchmarks"')[1]
        self.assertIn("/datasets/digits/", block)
        self.assertIn("/datasets/skimage_holidays/", block)
        self.assertNotIn("dataset-digits", parse(response).ids)

    def test_home_needs_few_queries(self):
        with CaptureQueriesContext(connection) as queries:
            self.client.get("/")
        self.assertLessEqual(len(queries), 10)


class DatasetPageTests(SnapshotPages):
    def test_results_are_ranked_with_origin_and_provenance(self):
        response = self.client.get("/datasets/voc2007_cls/")
        self.assertEqual(response.status_code, 200)
        content = response.content.decode()
        cells = re.findall(r'<a class="cell-score"[^>]*>([\d.]+)</a>|<span class="cell-score">([\d.]+)</span>', content)
        ranks = [float(s) for s in cells for s in s if s]
        self.assertEqual(ranks, sorted(ranks, reverse=True))
        self.assertEqual(len(ranks), 9)  # 8 snapshot rows + the public evaluated one
        self.assertContains(response, "evaluated by Shelfmark")
        self.assertContains(response, "efficientnet_lite0")
        self.assertContains(response, "abababababab…")  # weights hash, shortened
        self.assertNotContains(response, "Secret draft")

    def test_chart_data_holds_every_row_in_rank_order(self):
        page = parse(self.client.get("/datasets/ilsvrc2012_cls/"))
        bars = page.scripts["board-chart-data"]["bars"]
        self.assertEqual([b["score"] for b in bars], [8.06, 14.2, 14.8, 15.3, 26.2])
        self.assertIn("lower is better", page.scripts["board-chart-data"]["title"])
        self.assertEqual({b["kind"] for b in bars}, {"non_cnn", "specialized"})

    def test_demo_dataset_page_without_results(self):
        response = self.client.get("/datasets/digits/")
        self.assertContains(response, "demo benchmark")
        self.assertContains(response, "No public results yet")

    def test_unknown_dataset_is_404(self):
        self.assertEqual(self.client.get("/datasets/no-such-benchmark/").status_code, 404)
        self.assertEqual(self.client.get("/datasets/no-such-benchmark.csv").status_code, 404)

    def test_versions_link_only_when_that_page_exists(self):
        with override_settings(ROOT_URLCONF=WithoutVersionsURLConf):
            self.assertNotContains(self.client.get("/datasets/mit67/"), "Published versions")
        with override_settings(ROOT_URLCONF=WithVersionsURLConf):
            self.assertContains(self.client.get("/datasets/mit67/"), 'href="/versions-of/mit67/"')


def _placeholder(request, slug):  # pragma: no cover - only reversed, never requested
    raise AssertionError


class WithoutVersionsURLConf:
    urlpatterns = [path("api/", include("leaderboard.api.urls")), path("", include("leaderboard.front.urls"))]


class WithVersionsURLConf:
    urlpatterns = WithoutVersionsURLConf.urlpatterns + [
        path("versions-of/<slug:slug>/", _placeholder, name="leaderboard-versions")]


class DownloadTests(SnapshotPages):
    def test_csv_parses_back_in_rank_order(self):
        response = self.client.get("/datasets/ukbench.csv")
        self.assertEqual(response["Content-Type"], "text/csv; charset=utf-8")
        self.assertEqual(response["Content-Disposition"], 'attachment; filename="ukbench.csv"')
        rows = list(csv.DictReader(io.StringIO(response.content.decode())))
        expected = sorted((r["score"] for r in self.source["results"] if r["dataset"] == "ukbench"), reverse=True)
        self.assertEqual([float(r["score"]) for r in rows], expected)
        self.assertEqual([r["rank"] for r in rows], ["1", "2", "3", "4"])
        self.assertEqual(rows[0]["metric"], "NS_score_pct")
        self.assertEqual(rows[0]["reference_page_key"], "[1]")

    def test_csv_quotes_a_name_a_spreadsheet_would_run_as_a_formula(self):
        from leaderboard.registry.models import Dataset, Method, Result

        dataset = Dataset.objects.get(slug="ukbench")
        Result.objects.create(dataset=dataset, method=Method.objects.create(name='=HYPERLINK("http://x")'),
                              score=99.0, metric=dataset.metric, kind=Result.Kind.OFF_THE_SHELF)
        rows = list(csv.DictReader(io.StringIO(self.client.get("/datasets/ukbench.csv").content.decode())))
        self.assertEqual(rows[0]["method"], '\'=HYPERLINK("http://x")')
        self.assertEqual(rows[1]["method"], "CNNaug-ss")

    def test_json_parses_back_with_metric_and_results(self):
        response = self.client.get("/datasets/voc2007_cls.json")
        self.assertEqual(response["Content-Disposition"], 'attachment; filename="voc2007_cls.json"')
        document = json.loads(response.content)
        self.assertEqual(document["dataset"]["slug"], "voc2007_cls")
        self.assertTrue(document["metric"]["higher_is_better"])
        self.assertEqual(len(document["results"]), 9)
        self.assertEqual(document["results"][0]["score"], 82.44)
        evaluated = [r for r in document["results"] if r["origin"] == "evaluated"]
        self.assertEqual(evaluated[0]["provenance"]["model"], "efficientnet_lite0")

    def test_bibtex_download_parses_back_to_every_reference(self):
        response = self.client.get("/references.bib")
        self.assertEqual(response["Content-Disposition"], 'attachment; filename="references.bib"')
        database = bibtexparser.loads(response.content.decode())
        self.assertEqual([e["ID"] for e in database.entries], list(Reference.objects.values_list("key", flat=True)))
        self.assertEqual({e["ID"] for e in database.entries}, set(source_bib_keys()))
        razavian = next(e for e in database.entries if e["ID"] == "Razavian2014")
        self.assertEqual(razavian["eprint"], "1403.6382")


class ReferencePageTests(SnapshotPages):
    def test_page_references_first_in_page_order_then_outside_papers(self):
        content = self.client.get("/references/").content.decode()
        keys = re.findall(r'<span class="ref-key">(\[[^\]]+\])</span>', content)
        self.assertEqual(keys, ["[*]", "[+]"] + [f"[{n}]" for n in range(15)])
        anchors = re.findall(r'<li id="ref-([^"]+)">', content)
        self.assertEqual(anchors, list(Reference.objects.values_list("key", flat=True)))

    def test_each_reference_lists_the_results_citing_it_and_its_bibtex(self):
        response = self.client.get("/references/")
        content = response.content.decode()
        item = content.split('<li id="ref-Donahue2014">')[1].split("</li>")[0]
        self.assertIn("/datasets/caltech101/#result-", item)
        self.assertIn("/datasets/sun397/#result-", item)
        self.assertIn('<pre id="bib-Donahue2014">@inproceedings{Donahue2014', item)
        self.assertIn('data-copy-target="bib-Donahue2014"', item)
        azizpour = content.split('<li id="ref-Azizpour2014">')[1].split("</li>")[0]
        self.assertIn(">missing<", azizpour)

    def test_latex_is_shown_as_text(self):
        self.assertContains(self.client.get("/references/"), "Léon Bottou")


class OverviewAndNavigationTests(SnapshotPages):
    def test_overview_has_a_chart_per_family_with_the_three_columns(self):
        response = self.client.get("/overview/")
        page = parse(response)
        series = page.scripts["overview-data"]
        self.assertEqual([f["family"] for f in series], [f["id"] for f in self.source["task_families"]])
        for family in series:
            self.assertIn(f"overview-{family['family']}", page.ids)
        voc = next(d for f in series for d in f["datasets"] if d["slug"] == "voc2007_cls")
        self.assertEqual(voc["best"]["off_the_shelf"]["score"], 82.44)
        ytf = next(d for f in series for d in f["datasets"] if d["slug"] == "ytf")
        self.assertIsNone(ytf["best"]["non_cnn"])
        self.assertContains(response, "/static/vendor/plotly.min.js")

    def test_plotly_is_served_from_our_own_static_files(self):
        response = self.client.get("/static/vendor/plotly.min.js")
        self.assertEqual(response.status_code, 200)
        self.assertIn(b"window.Plotly", b"".join(response.streaming_content))

    def test_nav_links_to_the_main_pages(self):
        links = [href for href, _ in parse(self.client.get("/references/")).links]
        for href in ["/", "/overview/", "/references/", "/api/docs/"]:
            self.assertIn(href, links)

    def test_links_of_other_apps_appear_only_when_their_url_exists(self):
        self.assertEqual(url_if_exists("no-such-page"), "")
        self.assertEqual(url_if_exists("dataset-detail", "mit67"), "/datasets/mit67/")
        with override_settings(ROOT_URLCONF=WithoutVersionsURLConf):
            content = self.client.get("/").content.decode()
        self.assertNotIn("Submit", content)
        self.assertNotIn("Log in", content)


class AdminTests(SnapshotPages):
    def test_every_registry_changelist_loads_with_search_and_filters(self):
        from django.contrib.auth import get_user_model

        self.client.force_login(get_user_model().objects.create_superuser("editor", "e@example.org", "pw-123456"))
        for model in ["taskfamily", "metric", "dataset", "reference", "method", "result", "missingcell",
                      "leaderboardversion", "historicaldownload"]:
            response = self.client.get(f"/admin/registry/{model}/", {"q": "voc"})
            self.assertEqual(response.status_code, 200, model)
        response = self.client.get("/admin/registry/result/", {"kind__exact": "non_cnn", "q": "Fisher"})
        self.assertContains(response, "Fisher vectors")
        self.assertNotContains(response, "CNNaug-SVM")

    def test_a_published_version_is_read_only_in_the_admin(self):
        from django.contrib.auth import get_user_model

        self.client.force_login(get_user_model().objects.create_superuser("editor", "e@example.org", "pw-123456"))
        version = self.voc07.versions.get(number=0)
        response = self.client.get(f"/admin/registry/leaderboardversion/{version.pk}/change/")
        self.assertEqual(response.status_code, 200)
        self.assertNotContains(response, 'name="content_hash"')
