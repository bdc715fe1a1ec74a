"""The page cache (leaderboard/pagecache.py): home and dataset pages are kept as anonymous visitors see them
until the data under them changes; a frozen version's permalink is rendered once and its bytes served after."""
import pytest
from django.contrib import messages
from django.contrib.auth.models import AnonymousUser
from django.contrib.messages.storage.fallback import FallbackStorage
from django.contrib.sessions.backends.cache import SessionStore
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from leaderboard import pagecache
from leaderboard.boards import views as board_views
from leaderboard.front.views import dataset_detail
from leaderboard.registry.models import Method, Result

LIVE_PAGES = ["/", "/datasets/digits/"]


def queries_for(client, url: str) -> tuple[int, str]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(queries), response.content.decode()


@pytest.mark.parametrize("url", LIVE_PAGES)
def test_a_visitor_gets_the_stored_page_without_a_query(client, digits, url):
    first_queries, first = queries_for(client, url)
    second_queries, second = queries_for(client, url)
    assert first_queries > 0
    assert second_queries == 0
    assert second == first


def test_the_dataset_page_is_rendered_again_when_a_result_is_saved(client, digits):
    result = Result.objects.get(dataset=digits)
    assert "90.0" in queries_for(client, "/datasets/digits/")[1]

    result.score = 77.25
    result.save()
    queries, page = queries_for(client, "/datasets/digits/")
    assert queries > 0 and "77.2" in page and "90.0" not in page
    assert queries_for(client, "/datasets/digits/")[0] == 0   # and kept again


def test_the_home_page_is_rendered_again_when_a_dataset_is_renamed(client, digits):
    assert "Digits (demo)" in queries_for(client, "/")[1]
    digits.name = "Handwritten digits"
    digits.save()
    assert "Handwritten digits" in queries_for(client, "/")[1]


def test_a_queryset_update_or_a_new_row_counts_as_a_change(client, digits):
    queries_for(client, "/datasets/digits/")
    Result.objects.filter(dataset=digits).update(score=66.5)          # no save(), no signal
    assert "66.5" in queries_for(client, "/datasets/digits/")[1]

    Result.objects.create(dataset=digits, method=Method.objects.create(name="A newcomer net"), score=95.0,
                          metric=digits.metric, kind=Result.Kind.OFF_THE_SHELF, origin=Result.Origin.REPORTED)
    assert "A newcomer net" in queries_for(client, "/datasets/digits/")[1]


def test_a_write_in_a_transaction_changes_the_token_again_when_it_commits(transactional_db, digits):
    before = pagecache.data_version()
    with transaction.atomic():
        Result.objects.filter(dataset=digits).update(score=1.0)
        Result.objects.filter(dataset=digits).update(score=2.0)
        during = pagecache.data_version()   # a page another process renders now (from the old rows) is kept here
        assert during != before
        assert connection.run_on_commit and len(connection.run_on_commit) == 1
    assert pagecache.data_version() != during, "and dropped at the commit"


def test_signed_in_users_get_their_own_page_and_it_is_not_kept(client, digits, make_user):
    queries_for(client, "/datasets/digits/")                          # the visitors' copy is stored
    client.force_login(make_user("ada"))
    for _ in range(2):
        queries, page = queries_for(client, "/datasets/digits/")
        assert queries > 0 and "Log out (ada)" in page
    client.logout()
    assert "Log out (ada)" not in queries_for(client, "/datasets/digits/")[1]


def test_other_query_parameters_are_rendered_each_time_and_each_known_one_is_kept_apart(client, digits):
    for _ in range(2):
        assert queries_for(client, "/datasets/digits/?utm_source=mail")[0] > 0
    queries_for(client, "/?kind=off_the_shelf")
    assert queries_for(client, "/?kind=off_the_shelf")[0] == 0
    assert queries_for(client, "/?kind=non_cnn")[0] > 0


def test_a_visitor_with_a_message_waiting_gets_a_fresh_page(client, digits, rf):
    queries_for(client, "/datasets/digits/")                          # the visitors' copy is stored
    request = rf.get("/datasets/digits/")
    request.user, request.session = AnonymousUser(), SessionStore()
    request._messages = FallbackStorage(request)
    messages.success(request, "Your submission was received")
    assert "Your submission was received" in dataset_detail(request, slug="digits").content.decode()
    assert "Your submission was received" not in queries_for(client, "/datasets/digits/")[1]


def test_the_cache_can_be_turned_off(client, digits, settings):
    settings.SHELFMARK_PAGE_CACHE = False
    queries_for(client, "/")
    assert queries_for(client, "/")[0] > 0


def test_a_frozen_permalink_is_rendered_once_and_served_as_the_same_bytes(client, digits, make_user, monkeypatch):
    renders = []
    render = board_views.render_to_string
    monkeypatch.setattr(board_views, "render_to_string", lambda *a, **k: renders.append(a[0]) or render(*a, **k))

    first = client.get("/leaderboards/digits/v0/")
    Result.objects.filter(dataset=digits).update(score=12.5)          # the live board changes; v0 does not
    again = [client.get("/leaderboards/digits/v0/") for _ in range(3)]
    client.force_login(make_user("ada"))
    again.append(client.get("/leaderboards/digits/v0/"))

    assert renders == ["boards/version.html"]
    assert all(response.content == first.content for response in again)
    assert all(response["ETag"] == first["ETag"] and response["X-Frame-Options"] == "DENY" for response in again)
    assert b"90.0" in first.content and b"12.5" not in first.content
    assert b"ada" not in again[-1].content
    with CaptureQueriesContext(connection) as queries:
        stored = client.get("/leaderboards/digits/v0/")
    assert stored.status_code == 200 and len(queries) == 0, "served before the session and user are looked up"
    assert client.get("/leaderboards/digits/v0/", HTTP_IF_NONE_MATCH=first["ETag"]).status_code == 304


def test_a_removed_version_is_no_longer_served(client, digits):
    assert client.get("/leaderboards/digits/v0/").status_code == 200
    digits.versions.get(number=0).delete()
    assert client.get("/leaderboards/digits/v0/").status_code == 404


def test_publishing_keeps_the_stored_permalinks_right(client, digits):
    from leaderboard.boards.services import publish_version

    v0 = client.get("/leaderboards/digits/v0/").content
    assert client.get("/leaderboards/digits/v1/").status_code == 404
    Result.objects.filter(dataset=digits).update(score=55.5)
    publish_version(digits)
    assert b"55.5" in client.get("/leaderboards/digits/v1/").content
    assert client.get("/leaderboards/digits/v0/").content == v0


def test_without_the_page_cache_a_permalink_is_rendered_each_time(client, digits, settings):
    settings.SHELFMARK_PAGE_CACHE = False
    client.get("/leaderboards/digits/v0/")
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/leaderboards/digits/v0/").status_code == 200
    assert len(queries) > 0
