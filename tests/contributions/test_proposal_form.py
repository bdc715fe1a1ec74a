"""One proposal through the form: stored waiting for review with its first revision; every input bounded,
every error named on its field; CSRF and escaping intact."""
import pytest
from django.test import Client
from django.urls import reverse
from pytest_django.asserts import assertContains, assertNotContains

from leaderboard.contributions.models import Proposal, Revision
from leaderboard.registry.models import Reference, Result

pytestmark = pytest.mark.django_db


def test_the_form_asks_anonymous_visitors_to_log_in(client, board):
    response = client.get(reverse("proposal-new"))
    assert response.status_code == 302 and reverse("login") in response["Location"]
    response = client.post(reverse("proposal-new"), {"method_name": "x"})
    assert response.status_code == 302 and not Proposal.objects.exists()


def test_a_contribution_through_the_form(client, board, contributor, proposal_data):
    client.force_login(contributor)
    page = client.get(reverse("proposal-new"))
    assertContains(page, "MIT Indoor 67 (mean class accuracy, %)")
    assertContains(page, "frozen features + linear probe")

    response = client.post(reverse("proposal-new"), proposal_data(note="ViT-g/14, 224 px"), follow=True)

    proposal = Proposal.objects.get()
    assert response.redirect_chain[-1][0] == proposal.get_absolute_url()
    assert (proposal.contributor, proposal.dataset, proposal.score, proposal.kind, proposal.paper_protocol,
            proposal.location, proposal.note) == (contributor, board.dataset, 88.1, "off_the_shelf", "linear_probe",
                                                  "Table 10", "ViT-g/14, 224 px")
    assert (proposal.status, proposal.bibtex_key, proposal.arxiv_id, proposal.reference) == (
        "pending", "Oquab2023", "2304.07193", None)
    assertContains(response, "waiting for review")
    assertContains(response, "Where it would stand")        # rank 1 of 2, above CNN-SVM's 58.4
    assertContains(response, "Rank 1 of 2")
    revision = Revision.objects.get()
    assert (revision.proposal, revision.action, revision.author, revision.reason) == (
        proposal, "proposed", contributor, "Table 10 of Oquab2023")
    # Nothing on the board, nothing in the references until a moderator accepts it.
    assert Result.objects.count() == 1 and Reference.objects.count() == 1
    mine = client.get(reverse("proposal-mine"))
    assertContains(mine, "DINOv2 ViT-g/14 (frozen)")
    assertContains(mine, 'data-status="pending"')


def test_a_known_paper_by_doi_is_shown_as_reused(client, board, contributor, proposal_data):
    client.force_login(contributor)
    client.post(reverse("proposal-new"), proposal_data(paper="https://doi.org/10.1109/CVPRW.2014.131", bibtex="",
                                                       method_name="CNNaug-SVM (OverFeat)", score="69.0",
                                                       paper_protocol="svm", location="Table 2"))
    proposal = Proposal.objects.get()
    assert proposal.reference == board.razavian and proposal.doi == "10.1109/cvprw.2014.131"
    assertContains(client.get(proposal.get_absolute_url()), "in the references")


@pytest.mark.parametrize("changes, field, message", [
    ({"score": "880"}, "score", "not a percentage"),
    ({"score": "nan"}, "score", ""),
    ({"score": "twelve"}, "score", "Enter a number"),
    ({"dataset": "imagenet-21k"}, "dataset", "Select a valid choice"),
    ({"kind": "magic"}, "kind", "Select a valid choice"),
    ({"paper_protocol": "vibes"}, "paper_protocol", "Select a valid choice"),
    ({"location": ""}, "location", "required"),
    ({"method_name": "m" * 201}, "method_name", "at most 200"),
    ({"location": "T" * 101}, "location", "at most 100"),
    ({"note": "n" * 501}, "note", "at most 500"),
    ({"paper": "p" * 301, "bibtex": ""}, "paper", "at most 300"),
    ({"bibtex": "@misc{x, title={" + "t" * 20_000 + "}}"}, "bibtex", "at most 20000"),
    ({"bibtex": ""}, "paper", "Name the paper"),
    ({"bibtex": "@article{x, year={2020}}"}, "bibtex", "no title"),
])
def test_errors_are_named_on_their_field_and_nothing_is_stored(client, board, contributor, proposal_data, changes,
                                                               field, message):
    client.force_login(contributor)
    response = client.post(reverse("proposal-new"), proposal_data(**changes))
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert field in errors and message in " ".join(errors[field])
    assert not Proposal.objects.exists()


def test_the_same_number_twice_is_refused(client, board, contributor, proposal_data):
    client.force_login(contributor)
    client.post(reverse("proposal-new"), proposal_data())
    response = client.post(reverse("proposal-new"), proposal_data(method_name="dinov2 vit-g/14 (FROZEN)"))
    assert response.status_code == 400 and Proposal.objects.count() == 1
    assertContains(response, "You proposed", status_code=400)
    on_board = client.post(reverse("proposal-new"), proposal_data(method_name="CNN-SVM (OverFeat)", score="58.4"))
    assertContains(on_board, "already on the MIT Indoor 67 board", status_code=400)


def test_csrf_is_checked(board, contributor, proposal_data):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(contributor)
    assert strict.post(reverse("proposal-new"), proposal_data()).status_code == 403
    assert not Proposal.objects.exists()
    assertContains(strict.get(reverse("proposal-new")), "csrfmiddlewaretoken")


def test_what_a_contributor_types_is_escaped_everywhere(client, board, contributor, moderator, proposal_data):
    client.force_login(contributor)
    hostile = '<script>alert("x")</script>'
    bibtex = "@article{Evil2024,\n  title = {<img src=x onerror=alert(1)>},\n  year = {2024}\n}\n"
    client.post(reverse("proposal-new"), proposal_data(method_name=hostile, note=hostile, location="<b>T1</b>",
                                                       bibtex=bibtex))
    proposal = Proposal.objects.get()
    for user in (contributor, moderator):
        client.force_login(user)
        for url in (proposal.get_absolute_url(), reverse("proposal-mine"), reverse("proposal-queue")):
            response = client.get(url)
            if response.status_code != 200:
                continue
            assertNotContains(response, "<script>alert")
            assertNotContains(response, "<img src=x")
            assertNotContains(response, "<b>T1</b>")
    client.force_login(moderator)
    client.post(reverse("proposal-review", args=[proposal.pk]), {"decision": "accept", "version": proposal.version})
    proposal.refresh_from_db()
    page = client.get(reverse("result-detail", args=[proposal.result_id]))
    assertContains(page, "&lt;script&gt;alert")
    assertNotContains(page, "<script>alert")
    assertNotContains(page, "<img src=x")
    board_page = client.get(board.dataset.get_absolute_url())
    assertNotContains(board_page, "<script>alert")
