"""Who sees what, and the versioned boards: permalinks that never change, diffs, publishing."""
import pytest
from django.core.management import call_command

from leaderboard.registry.models import Method, Result
from leaderboard.registry.services import publish_version
from leaderboard.submissions.services import SubmissionRequest, submission_create


@pytest.fixture
def private_submission(make_user, digits):
    return submission_create(SubmissionRequest(owner=make_user("ada"), model_name="Secret net", source="builtin",
                                               architecture="efficientnet_lite0", benchmarks=["digits"]))


def test_a_private_submission_is_a_404_for_other_users(client, make_user, private_submission):
    url = private_submission.get_absolute_url()
    client.force_login(make_user("eve"))
    assert client.get(url).status_code == 404
    assert client.get(f"{url}status.json").status_code == 404
    assert "Secret net" not in client.get("/submissions/").content.decode()

    client.force_login(private_submission.owner)
    assert client.get(url).status_code == 200
    client.force_login(make_user("staff", staff=True))
    assert client.get(url).status_code == 200


def test_make_public_is_for_the_owner(client, make_user, private_submission):
    url = f"/submissions/{private_submission.pk}/make-public/"
    client.force_login(make_user("eve"))
    assert client.post(url).status_code == 404
    client.force_login(private_submission.owner)
    assert client.post(url).status_code == 302
    private_submission.refresh_from_db()
    assert private_submission.is_public
    client.logout()
    assert client.get(private_submission.get_absolute_url()).status_code == 200


def test_signup_logs_in(client, db):
    response = client.post("/accounts/signup/", {"username": "newbie", "password1": "a-long-test-password",
                                                 "password2": "a-long-test-password"})
    assert response.status_code == 302
    assert client.get("/submissions/new/").status_code == 200


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


def test_downloads_lists_the_historical_items(client, digits):
    from leaderboard.registry.models import HistoricalDownload

    HistoricalDownload.objects.create(what="MIT67 features", size="1.2 GB", dataset=digits)
    page = client.get("/downloads/").content.decode()
    assert "MIT67 features" in page and "1.2 GB" in page


def test_staff_hiding_takes_a_public_submissions_results_off_the_board(client, digits, private_submission):
    from leaderboard.registry.selectors import board_rows
    from leaderboard.submissions.models import Submission
    from leaderboard.submissions.services import submission_make_public, submissions_hide

    job = private_submission.jobs.get()
    job.result = Result.objects.create(dataset=digits, method=Method.objects.create(name="Secret net"), score=87.4,
                                       metric=digits.metric, kind=Result.Kind.OFF_THE_SHELF,
                                       origin=Result.Origin.EVALUATED, is_public=False)
    job.save()
    submission_make_public(private_submission)
    assert "Secret net" in [row.method.name for row in board_rows(digits)]

    submissions_hide(Submission.objects.filter(pk=private_submission.pk))
    private_submission.refresh_from_db()
    assert not private_submission.is_public
    assert "Secret net" not in [row.method.name for row in board_rows(digits)]
