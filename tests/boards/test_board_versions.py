"""Versioned boards: permalinks that never change (and carry nothing personal), diffs, publishing."""
from django.core.management import call_command

from leaderboard.boards.services import publish_version
from leaderboard.registry.models import Method, Result


def test_a_frozen_version_is_served_immutable_with_its_hash_as_etag(client, digits, make_user):
    client.force_login(make_user("ada"))
    response = client.get("/leaderboards/digits/v0/")
    version = digits.versions.get(number=0)
    assert response.status_code == 200
    assert response["ETag"] == f'"{version.content_hash}"'
    assert response["Cache-Control"] == "public, max-age=31536000, immutable"
    assert "ada" not in response.content.decode(), "a shared cached page carries nothing personal"

    again = client.get("/leaderboards/digits/v0/", HTTP_IF_NONE_MATCH=response["ETag"])
    assert again.status_code == 304
    assert client.get("/leaderboards/digits/v9/").status_code == 404


def test_diff_lists_added_removed_and_rank_changes(client, digits):
    metric = digits.metric
    old = Result.objects.get(dataset=digits)
    newcomer = Result.objects.create(dataset=digits, method=Method.objects.create(name="Newcomer"), score=95.0,
                                     metric=metric, kind="off_the_shelf", origin="evaluated")
    publish_version(digits)                     # v1: Newcomer 1st, baseline 2nd
    old.delete()
    Result.objects.create(dataset=digits, method=Method.objects.create(name="Later"), score=99.0, metric=metric,
                          kind="off_the_shelf", origin="evaluated")
    publish_version(digits)                     # v2: Later 1st, Newcomer 2nd

    page = client.get("/leaderboards/digits/diff/?a=1&b=2").content.decode()
    assert "1 added, 1 removed, 1 changed" in page
    assert "Newcomer: #1 → #2" in page
    assert newcomer.pk
    assert client.get("/leaderboards/digits/").status_code == 200


def test_publish_command_prints_the_permalink_and_staff_only_button(client, digits, make_user, capsys):
    call_command("publish", "digits")
    assert capsys.readouterr().out.strip() == "/leaderboards/digits/v1/"
    client.force_login(make_user("eve"))
    assert client.post("/leaderboards/digits/publish/").status_code == 302   # to the admin login
    assert digits.versions.count() == 2
    client.force_login(make_user("boss", staff=True))
    response = client.post("/leaderboards/digits/publish/")
    assert response["Location"] == "/leaderboards/digits/v2/"
