"""The read-only API: only public results, filters, references with BibTeX, and its OpenAPI schema."""
import bibtexparser
import yaml
from django.test import TestCase
from snapshot_source import SNAPSHOT_DIR, source_bib_keys, source_snapshot

from leaderboard.registry.models import Dataset, Method, Result
from leaderboard.registry.snapshot import load_snapshot


class ApiTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        load_snapshot(SNAPSHOT_DIR)
        cls.source = source_snapshot()
        mit67 = Dataset.objects.get(slug="mit67")
        Result.objects.create(dataset=mit67, method=Method.objects.create(name="private draft"), score=99.9,
                              metric=mit67.metric, kind=Result.Kind.SPECIALIZED, origin=Result.Origin.EVALUATED,
                              is_public=False)
        Result.objects.create(dataset=mit67, method=Method.objects.create(name="resnet (Shelfmark)"), score=70.1,
                              metric=mit67.metric, kind=Result.Kind.OFF_THE_SHELF, origin=Result.Origin.EVALUATED,
                              provenance={"model": "resnet"})

    def get(self, url, **params):
        response = self.client.get(url, params)
        self.assertEqual(response.status_code, 200, response.content[:500])
        return response.json()

    def test_task_families(self):
        families = self.get("/api/task-families/")["results"]
        self.assertEqual([f["slug"] for f in families], [f["id"] for f in self.source["task_families"]])

    def test_datasets_list_and_detail_with_ranked_public_results(self):
        datasets = self.get("/api/datasets/")
        self.assertEqual(datasets["count"], len(self.source["datasets"]) + 2)
        detail = self.get("/api/datasets/mit67/")
        self.assertEqual(detail["metric"]["code"], "mean_class_accuracy")
        scores = [r["score"] for r in detail["results"]]
        self.assertEqual(scores, sorted(scores, reverse=True))
        self.assertEqual([r["rank"] for r in detail["results"]], list(range(1, len(scores) + 1)))
        self.assertNotIn("private draft", [r["method"] for r in detail["results"]])
        self.assertIn("resnet (Shelfmark)", [r["method"] for r in detail["results"]])

    def test_lower_is_better_dataset_ranks_lowest_first(self):
        detail = self.get("/api/datasets/ilsvrc2012_cls/")
        self.assertFalse(detail["metric"]["higher_is_better"])
        self.assertEqual(detail["results"][0]["score"], 8.06)

    def test_results_are_public_only_and_filterable(self):
        everything = self.get("/api/results/")
        self.assertEqual(everything["count"], len(self.source["results"]) + 1)
        self.assertNotIn("private draft", [r["method"] for r in everything["results"]])

        by_dataset = self.get("/api/results/", dataset="holidays", kind="off_the_shelf")["results"]
        expected = [r for r in self.source["results"]
                    if r["dataset"] == "holidays" and r["kind"] == "off-the-shelf CNN"]
        self.assertEqual(len(by_dataset), len(expected))
        self.assertEqual({r["dataset"] for r in by_dataset}, {"holidays"})

        evaluated = self.get("/api/results/", origin="evaluated")["results"]
        self.assertEqual([r["method"] for r in evaluated], ["resnet (Shelfmark)"])
        self.assertEqual(evaluated[0]["provenance"], {"model": "resnet"})

    def test_an_unknown_filter_value_is_a_clear_400(self):
        response = self.client.get("/api/results/", {"kind": "quantum"})
        self.assertEqual(response.status_code, 400)
        self.assertIn("unknown kind", response.json()["kind"])

    def test_private_result_is_not_reachable_by_id(self):
        private = Result.objects.get(method__name="private draft")
        self.assertEqual(self.client.get(f"/api/results/{private.pk}/").status_code, 404)

    def test_references_with_bibtex(self):
        references = self.get("/api/references/")["results"]
        self.assertEqual({r["key"] for r in references}, set(source_bib_keys()))
        self.assertEqual(references[0]["page_key"], "[*]")
        one = self.get("/api/references/Razavian2014/")
        self.assertEqual(one["page_key"], "[1]")
        self.assertEqual(bibtexparser.loads(one["bibtex"]).entries[0]["ID"], "Razavian2014")

    def test_schema_documents_every_endpoint(self):
        response = self.client.get("/api/schema/")
        self.assertEqual(response.status_code, 200)
        schema = yaml.safe_load(response.content)
        self.assertTrue(schema["openapi"].startswith("3."))
        for endpoint in ["/api/task-families/", "/api/datasets/", "/api/datasets/{slug}/", "/api/results/",
                         "/api/references/", "/api/references/{key}/"]:
            self.assertIn(endpoint, schema["paths"])
            self.assertEqual(set(schema["paths"][endpoint]), {"get"})  # read-only
        parameters = {p["name"] for p in schema["paths"]["/api/results/"]["get"]["parameters"]}
        self.assertTrue({"dataset", "kind", "origin"} <= parameters)

    def test_docs_page_lists_endpoints_without_a_cdn(self):
        response = self.client.get("/api/docs/")
        self.assertContains(response, "/api/results/?dataset=")
        self.assertContains(response, 'href="/api/schema/"')
        self.assertNotContains(response, "cdn.")

    def test_api_is_read_only(self):
        self.assertEqual(self.client.post("/api/results/", {"score": 1}).status_code, 405)
