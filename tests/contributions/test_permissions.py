"""Who may do what: moderators (the "moderators" group, and superusers) review; nobody reviews their own
proposal; contributors see and edit only their own proposals; a private result's page is its owner's."""
import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from leaderboard.contributions import services
from leaderboard.contributions.forms import ProposalForm
from leaderboard.contributions.models import MODERATORS, Proposal
from leaderboard.contributions.selectors import is_moderator
from leaderboard.registry.models import Method, Result

pytestmark = pytest.mark.django_db


def test_the_moderators_group_exists_and_decides_who_reviews(make_user, moderator, django_user_model):
    assert Group.objects.filter(name=MODERATORS).exists()      # created by the data migration
    staff = make_user("stan", staff=True)
    root = django_user_model.objects.create_superuser("root", password="a-long-test-password")
    assert is_moderator(moderator) and is_moderator(root)
    assert not is_moderator(staff) and not is_moderator(make_user("someone"))
    moderator.is_active = False
    assert not is_moderator(moderator)


def test_non_moderators_cannot_review(client, proposal, contributor, make_user):
    for user in (contributor, make_user("stan", staff=True), make_user("eve")):
        client.force_login(user)
        assert client.get(reverse("proposal-queue")).status_code == 403
        response = client.post(reverse("proposal-review", args=[proposal.pk]), {"decision": "accept"})
        assert response.status_code == 403
        with pytest.raises(services.ReviewRefused, match="Only moderators"):
            services.accept(proposal, user)
    proposal.refresh_from_db()
    assert proposal.status == "pending" and not Result.objects.filter(origin="reported").exists()
    client.force_login(contributor)
    assert b'id="review-form"' not in client.get(proposal.get_absolute_url()).content


def test_anonymous_visitors_are_sent_to_log_in(client, proposal):
    for url in (reverse("proposal-mine"), reverse("proposal-queue"), reverse("proposal-batch"),
                proposal.get_absolute_url(), reverse("proposal-edit", args=[proposal.pk])):
        response = client.get(url)
        assert response.status_code == 302 and reverse("login") in response["Location"], url
    assert client.post(reverse("proposal-review", args=[proposal.pk]), {"decision": "accept"}).status_code == 302


def test_contributors_see_only_their_own(client, proposal, make_user, proposal_data):
    eve = make_user("eve")
    client.force_login(eve)
    assert client.get(proposal.get_absolute_url()).status_code == 404
    assert client.get(reverse("proposal-edit", args=[proposal.pk])).status_code == 404
    assert client.post(reverse("proposal-edit", args=[proposal.pk]), proposal_data(score="1")).status_code == 404
    assert b"DINOv2" not in client.get(reverse("proposal-mine")).content
    proposal.refresh_from_db()
    assert proposal.score == 88.1


def test_a_moderator_sees_any_proposal_but_edits_none_and_reviews_not_their_own(
        client, proposal, moderator, proposal_data):
    client.force_login(moderator)
    assert client.get(proposal.get_absolute_url()).status_code == 200
    assert client.get(reverse("proposal-edit", args=[proposal.pk])).status_code == 403
    form = ProposalForm(proposal_data(method_name="My own method"))
    assert form.is_valid()
    own = services.propose(moderator, form.proposal_data())
    page = client.get(own.get_absolute_url())
    assert b'id="review-form"' not in page.content
    response = client.post(reverse("proposal-review", args=[own.pk]), {"decision": "accept", "version": own.version})
    assert response.status_code == 400 and b"reviewed by another moderator" in response.content
    assert Proposal.objects.get(pk=own.pk).status == "pending"


def test_a_superuser_reviews(client, proposal, django_user_model):
    root = django_user_model.objects.create_superuser("root", password="a-long-test-password")
    client.force_login(root)
    client.post(reverse("proposal-review", args=[proposal.pk]), {"decision": "accept", "version": proposal.version})
    assert Proposal.objects.get(pk=proposal.pk).status == "accepted"


def test_a_private_result_page_is_its_owners(client, board, make_user):
    owner, other = make_user("olga"), make_user("eve")
    private = Result.objects.create(dataset=board.dataset, method=Method.objects.create(name="Draft"), score=1.0,
                                    metric=board.metric, kind="off_the_shelf", origin="evaluated", is_public=False,
                                    owner=owner)
    url = reverse("result-detail", args=[private.pk])
    assert client.get(url).status_code == 404
    client.force_login(other)
    assert client.get(url).status_code == 404
    client.force_login(owner)
    assert client.get(url).status_code == 200
    assert client.get(reverse("result-detail", args=[board.cnn_svm.pk])).status_code == 200
    assert client.get(reverse("result-detail", args=[999999])).status_code == 404


def test_the_nav_links_signed_in_users_to_their_contributions(client, board, contributor):
    assert b"My contributions" not in client.get("/").content
    client.force_login(contributor)
    assert f'href="{reverse("proposal-mine")}"'.encode() in client.get("/").content
