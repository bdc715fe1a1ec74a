"""Review: a moderator accepts (a public reported Result), rejects with a reason, or asks for changes (the
contributor edits and sends it again); every step is a revision with its author, time and reason."""
import pytest
from django.core import mail
from django.urls import reverse
from pytest_django.asserts import assertContains

from leaderboard.contributions import services
from leaderboard.contributions.forms import ProposalForm
from leaderboard.contributions.models import Proposal, Revision
from leaderboard.registry.models import Result

pytestmark = pytest.mark.django_db


def review(client, proposal, decision, reason="", version=None):
    """The review form sent as the page gives it: with the version of the proposal it showed."""
    version = Proposal.objects.get(pk=proposal.pk).version if version is None else version
    return client.post(reverse("proposal-review", args=[proposal.pk]),
                       {"decision": decision, "reason": reason, "version": version}, follow=True)


def actions(revisions):
    return [(r.action, r.author_name, r.reason) for r in revisions]


def test_the_queue_lists_what_waits(client, proposal, moderator):
    client.force_login(moderator)
    queue = client.get(reverse("proposal-queue"))
    assertContains(queue, "DINOv2 ViT-g/14 (frozen)")
    assertContains(queue, "waiting for review (1)")
    page = client.get(proposal.get_absolute_url())
    assertContains(page, 'id="review-form"')
    assertContains(page, "Rank 1 of 2")


def test_accept(client, board, proposal, contributor, moderator, django_capture_on_commit_callbacks):
    contributor.email = "carol@example.org"
    contributor.save()
    client.force_login(moderator)

    with django_capture_on_commit_callbacks(execute=True):   # the email goes once the review is committed
        response = review(client, proposal, "accept", "checked against Table 10")

    proposal.refresh_from_db()
    result = proposal.result
    assertContains(response, f"is on the MIT Indoor 67 board (result #{result.pk})")
    assert (proposal.status, proposal.reviewed_by, proposal.review_reason) == ("accepted", moderator,
                                                                               "checked against Table 10")
    assert (result.origin, result.is_public, result.protocol, result.score, result.kind, result.owner) == (
        Result.Origin.REPORTED, True, "", 88.1, "off_the_shelf", contributor)
    assert result.protocol_detail == "frozen features + linear probe" and result.note == ""
    assert result.source == "Table 10, frozen features + linear probe; contributed by carol, reviewed by mona"
    assert result.provenance == {"contributed_by": "carol", "reviewed_by": "mona", "proposal": proposal.pk,
                                 "paper_location": "Table 10", "paper_protocol": "linear_probe"}
    assert result.reference.key == "Oquab2023" and result.method.reference == result.reference
    assert actions(result.revisions.all()) == [("proposed", "carol", "Table 10 of Oquab2023"),
                                               ("accepted", "mona", "checked against Table 10")]
    assert [m.to for m in mail.outbox] == [["carol@example.org"]]
    assert "accepted" in mail.outbox[0].subject and f"/results/{result.pk}/" in mail.outbox[0].body

    client.force_login(contributor)
    mine = client.get(reverse("proposal-mine"))
    assertContains(mine, f"on the board: result #{result.pk}")
    # Reviewed once: a second decision is refused.
    client.force_login(moderator)
    again = review(client, proposal, "reject", "changed my mind")
    assertContains(again, "no longer waiting for review", status_code=400)
    assert Result.objects.filter(origin="reported").count() == 1


def test_reject_needs_a_reason_and_keeps_it(client, board, proposal, contributor, moderator):
    client.force_login(moderator)
    without = review(client, proposal, "reject")
    assert without.status_code == 400 and "Say why" in " ".join(without.context["review_form"].errors["reason"])
    with pytest.raises(services.ReviewRefused, match="needs a reason"):
        services.reject(proposal, moderator, "  ")

    review(client, proposal, "reject", "Table 10 reports ImageNet, not MIT67")

    proposal.refresh_from_db()
    assert proposal.status == "rejected" and proposal.result is None
    assert not Result.objects.filter(origin="reported").exists()
    assert actions(proposal.revisions.all())[-1] == ("rejected", "mona", "Table 10 reports ImageNet, not MIT67")
    client.force_login(contributor)
    mine = client.get(reverse("proposal-mine"))
    assertContains(mine, 'data-status="rejected"')
    assertContains(mine, "Table 10 reports ImageNet, not MIT67")
    assert client.get(reverse("proposal-edit", args=[proposal.pk])).status_code == 302   # closed: no edit


def test_changes_requested_then_edited_resubmitted_and_accepted_with_the_whole_history(
        client, board, proposal, contributor, moderator, proposal_data):
    client.force_login(moderator)
    review(client, proposal, "changes", "The paper says 88.3 in Table 10, and it is a k-NN number")
    proposal.refresh_from_db()
    assert proposal.status == "changes"

    client.force_login(contributor)
    detail = client.get(proposal.get_absolute_url())
    assertContains(detail, "The paper says 88.3")
    assertContains(detail, "Edit and send again")
    edit = client.get(reverse("proposal-edit", args=[proposal.pk]))
    assert edit.context["form"].initial["bibtex"].startswith("@article{Oquab2023")
    response = client.post(reverse("proposal-edit", args=[proposal.pk]),
                           proposal_data(score="88.3", paper_protocol="knn", comment="fixed both"), follow=True)
    assertContains(response, "waits for review again")
    proposal.refresh_from_db()
    assert (proposal.status, proposal.score, proposal.paper_protocol) == ("pending", 88.3, "knn")

    client.force_login(moderator)
    review(client, proposal, "accept")
    proposal.refresh_from_db()
    history = list(proposal.result.revisions.all())
    assert actions(history) == [
        ("proposed", "carol", "Table 10 of Oquab2023"),
        ("changes", "mona", "The paper says 88.3 in Table 10, and it is a k-NN number"),
        ("resubmitted", "carol", "fixed both"),
        ("accepted", "mona", "accepted"),
    ]
    assert history[2].changes == {"score": [88.1, 88.3], "paper_protocol": ["linear_probe", "knn"]}
    assert [r.created_at for r in history] == sorted(r.created_at for r in history)
    assert proposal.result.score == 88.3 and proposal.result.protocol_detail == "frozen features + k-NN"

    page = client.get(reverse("result-detail", args=[proposal.result_id]))
    for text in ("sent again for review", "changes requested", "fixed both", "88.1 → 88.3", "Contributed by",
                 "carol", "Reviewed by", "@article{Oquab2023", "Copy BibTeX"):
        assertContains(page, text)


def test_a_pending_proposal_can_be_edited_by_its_contributor(client, proposal, contributor, proposal_data):
    client.force_login(contributor)
    client.post(reverse("proposal-edit", args=[proposal.pk]), proposal_data(location="Table 11"))
    proposal.refresh_from_db()
    assert proposal.location == "Table 11" and proposal.status == "pending"
    edit = Revision.objects.filter(proposal=proposal).last()
    assert (edit.action, edit.changes) == ("edited", {"location": ["Table 10", "Table 11"]})


def test_a_review_of_a_proposal_changed_since_its_page_was_opened_is_refused(
        client, board, proposal, contributor, moderator, proposal_data):
    client.force_login(moderator)
    page = client.get(proposal.get_absolute_url())
    seen = page.context["review_form"].initial["version"]
    assertContains(page, f'name="version" value="{seen}"')
    # Meanwhile its contributor changes the number.
    form = ProposalForm(proposal_data(score="95.0"))
    assert form.is_valid(), form.errors
    services.edit(proposal, contributor, form.proposal_data())

    stale = review(client, proposal, "accept", "looks right", version=seen)

    assert stale.status_code == 409
    assertContains(stale, "The proposal changed since you opened it: look again.", status_code=409)
    assert stale.context["proposal"].score == 95.0                    # shown as it stands now
    proposal.refresh_from_db()
    assert proposal.status == "pending" and not Result.objects.filter(origin="reported").exists()
    with pytest.raises(services.ProposalChanged, match="look again"):
        services.accept(proposal, moderator, version=seen)
    # A form without the version is refused too; the page's fresh version is accepted.
    without = client.post(reverse("proposal-review", args=[proposal.pk]), {"decision": "accept"})
    assertContains(without, "open the proposal again", status_code=400)
    fresh = stale.context["review_form"].initial["version"]
    assert fresh == Proposal.objects.get(pk=proposal.pk).version != seen
    assertContains(review(client, proposal, "accept", version=fresh), "is on the MIT Indoor 67 board")
    assert Result.objects.get(origin="reported").score == 95.0


def test_the_same_number_from_two_contributors_is_accepted_once(board, proposal, moderator, make_user, proposal_data):
    form = ProposalForm(proposal_data(method_name="dinov2 vit-g/14 (FROZEN)"))
    assert form.is_valid(), form.errors
    other = services.propose(make_user("dave"), form.proposal_data())    # not a duplicate yet: nothing accepted
    first = services.accept(proposal, moderator)

    with pytest.raises(services.ReviewRefused, match=rf"already on the MIT Indoor 67 board \(result #{first.pk}\)"):
        services.accept(other, moderator)

    other.refresh_from_db()
    assert other.status == "pending" and other.result is None
    assert Result.objects.filter(origin="reported").count() == 1
    services.reject(other, moderator, f"a duplicate of result #{first.pk}")


def test_a_failing_email_does_not_undo_the_review_or_fail_the_page(
        client, proposal, contributor, moderator, proposal_data, monkeypatch, django_capture_on_commit_callbacks):
    tried = []

    def broken(*args, **kwargs):
        tried.append(args)
        raise RuntimeError("the mail server is on fire")

    monkeypatch.setattr(services, "notify", broken)
    with django_capture_on_commit_callbacks(execute=True):     # run once the review is committed, as in a request
        result = services.review(proposal, moderator, "accept", "fine")
    assert tried and tried[0][0] == contributor                 # the email was attempted, and failed
    proposal.refresh_from_db()
    assert proposal.status == "accepted" and proposal.result == result

    # Through the page too: the next review's page answers, not a 500.
    form = ProposalForm(proposal_data(method_name="Another number", score="70.0"))
    assert form.is_valid(), form.errors
    other = services.propose(contributor, form.proposal_data())
    client.force_login(moderator)
    with django_capture_on_commit_callbacks(execute=True):
        response = review(client, other, "reject", "not in the paper")
    assertContains(response, f"Proposal #{other.pk}: rejected")
    assert len(tried) == 2
