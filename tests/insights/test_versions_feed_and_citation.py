"""The Atom feed of published versions (read back with feedparser) and "cite this version": a BibTeX entry on
each permalink page and at cite.bib (read back with bibtexparser), stable and the same bytes every time."""
from datetime import UTC, datetime

import bibtexparser
import feedparser
import pytest
from django.core.cache import cache

from leaderboard.boards.services import publish_version
from leaderboard.registry.models import Dataset, LeaderboardVersion, Result


@pytest.fixture
def versions(digits):
    """digits v0 (from the fixture) and v1, and a board whose name needs LaTeX escaping, each at a known date."""
    Result.objects.filter(dataset=digits).update(score=91.5)
    publish_version(digits, note="the baseline re-read")
    odd = Dataset.objects.create(slug="voc2007_cls", name="PASCAL VOC 2007 & friends: 100% {fun}_#1",
                                 task_family=digits.task_family, metric=digits.metric)
    publish_version(odd)
    for number, (version, day) in enumerate(zip(LeaderboardVersion.objects.order_by("pk"), (1, 2, 3), strict=True)):
        LeaderboardVersion.objects.filter(pk=version.pk).update(published_at=datetime(2025, 3, day, 12, number,
                                                                                      tzinfo=UTC))
    return {(v.dataset.slug, v.number): v for v in LeaderboardVersion.objects.select_related("dataset")}


def test_the_feed_has_one_entry_per_published_version_newest_first(client, versions):
    response = client.get("/feeds/versions.atom")
    assert response.status_code == 200 and response["Content-Type"].startswith("application/atom+xml")
    feed = feedparser.parse(response.content)
    assert not feed.bozo, feed.bozo_exception
    assert feed.version == "atom10" and feed.feed.title == "Shelfmark: published leaderboard versions"
    assert [entry.link for entry in feed.entries] == [
        "http://testserver/leaderboards/voc2007_cls/v0/",
        "http://testserver/leaderboards/digits/v1/",
        "http://testserver/leaderboards/digits/v0/",
    ]
    assert [entry.title for entry in feed.entries][1] == "Digits (demo): version 1"
    newest = feed.entries[1]
    assert newest.published_parsed[:5] == (2025, 3, 2, 12, 1)
    assert newest.updated_parsed[:5] == (2025, 3, 2, 12, 1)
    assert "the baseline re-read" in newest.summary
    assert versions[("digits", 1)].content_hash in newest.summary
    assert newest.id == "http://127.0.0.1:8000/leaderboards/digits/v1/"   # stable: SHELFMARK_SITE_URL, not the host
    assert feed.feed.updated_parsed[:3] == (2025, 3, 3)


def test_cite_bib_is_a_bibtex_entry_with_a_stable_key(client, versions):
    v1 = versions[("digits", 1)]
    response = client.get("/leaderboards/digits/v1/cite.bib")
    assert response.status_code == 200 and response["Content-Type"] == "application/x-bibtex; charset=utf-8"
    [entry] = bibtexparser.loads(response.content.decode()).entries
    assert entry["ENTRYTYPE"] == "misc" and entry["ID"] == "shelfmark_digits_v1"
    assert entry["title"] == "{Digits (demo): Shelfmark leaderboard, version 1}"
    assert entry["url"] == "http://127.0.0.1:8000/leaderboards/digits/v1/"
    assert entry["year"] == "2025"
    assert entry["note"] == f"Published version, frozen on 2025-03-02; content SHA-256 {v1.content_hash}"
    assert client.get("/leaderboards/digits/v1/cite.bib").content == response.content
    assert client.get("/leaderboards/digits/v9/cite.bib").status_code == 404
    assert client.get("/leaderboards/nothing/v0/cite.bib").status_code == 404


def test_special_characters_of_a_board_name_are_escaped_for_latex(client, versions):
    [entry] = bibtexparser.loads(client.get("/leaderboards/voc2007_cls/v0/cite.bib").content.decode()).entries
    assert entry["ID"] == "shelfmark_voc2007_cls_v0"
    assert entry["title"] == (r"{PASCAL VOC 2007 \& friends: 100\% \{fun\}\_\#1: Shelfmark leaderboard, "
                              r"version 0}")


def test_the_permalink_page_shows_the_same_citation_and_stays_the_same_bytes(client, versions, settings):
    bib = client.get("/leaderboards/digits/v0/cite.bib").content.decode()
    page = client.get("/leaderboards/digits/v0/")
    content = page.content.decode()
    assert 'id="cite-this-version"' in content
    assert "@misc{shelfmark_digits_v0," in content and 'href="/leaderboards/digits/v0/cite.bib"' in content
    assert all(line in content for line in bib.splitlines())      # the entry, line by line, as cite.bib has it
    assert 'href="/feeds/versions.atom"' in content

    settings.SHELFMARK_PAGE_CACHE = False          # rendered afresh, under another host name: the same bytes
    cache.clear()
    again = client.get("/leaderboards/digits/v0/", HTTP_HOST="localhost")
    assert again.content == page.content
