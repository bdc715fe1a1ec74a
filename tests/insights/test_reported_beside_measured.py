"""A paper's reported number beside Shelfmark's measurement of the same model: linked from the submission's
page by its submitter (or a moderator), shown with the difference on the dataset and model pages, flagged
"not reproduced" when the reported number lies outside the measured 95% interval."""
import pytest
from django.contrib.auth.models import Group
from django.test import Client
from insights_helpers import measure, reported
from pytest_django.asserts import assertContains, assertNotContains

from leaderboard.insights.models import Reproduction
from leaderboard.insights.services import ReproductionRefused, reproduction_link
from leaderboard.registry.models import Result


@pytest.fixture
def owner(make_user):
    return make_user("ada")


@pytest.fixture
def measured(owner, digits):
    """ResNet-50 measured at 85.0 % (95%: 84.0–86.0) on digits: the engine's fractions, times engine_scale."""
    return measure(owner, digits, 0.85, 0.84, 0.86)


def link(client, measured_result, reported_result, follow=False, **extra):
    return client.post("/reproductions/", {"measured": measured_result.pk, "reported": reported_result.pk,
                                           "next": f"/submissions/{measured_result.owner.submissions.get().pk}/",
                                           **extra}, follow=follow)


def test_the_measurement_is_stored_in_the_boards_unit(measured):
    assert (measured.score, measured.ci_low, measured.ci_high) == pytest.approx((85.0, 84.0, 86.0))


def test_a_reported_number_outside_the_interval_is_flagged_not_reproduced(client, owner, digits, measured):
    paper = reported(digits, "ResNet-50 (He et al. 2016), as reported", 90.0)
    client.force_login(owner)
    response = link(client, measured, paper, note="same torchvision weights")
    submission = measured.owner.submissions.get()
    assert response.status_code == 302 and response["Location"] == f"/submissions/{submission.pk}/"
    pair = Reproduction.objects.get()
    assert (pair.reported, pair.measured, pair.linked_by) == (paper, measured, owner)
    assert pair.delta == pytest.approx(5.0) and not pair.reproduced
    assert pair.verdict == "not reproduced (Δ = +5.0)"

    client.logout()
    page = client.get("/datasets/digits/")
    assertContains(page, 'id="reported-beside-measured"')
    assertContains(page, "not reproduced (Δ = +5.0)")
    assertContains(page, "same torchvision weights")
    model_page = client.get(f"/models/{measured.method_id}/")
    assertContains(model_page, "not reproduced (Δ = +5.0)")


def test_a_reported_number_inside_the_interval_is_reproduced(client, owner, digits, measured):
    paper = reported(digits, "ResNet-50, as reported", 85.6)
    client.force_login(owner)
    link(client, measured, paper)
    pair = Reproduction.objects.get()
    assert pair.reproduced and pair.verdict == "reproduced"
    assert pair.delta_text == "+0.6"
    page = client.get("/datasets/digits/").content.decode()
    assert '<span class="verdict reproduced">reproduced</span>' in page
    assert 'class="verdict not-reproduced"' not in page


def test_the_edges_of_the_interval_count_as_inside_and_a_lower_number_has_a_negative_delta(owner, digits, measured):
    on_the_edge = reproduction_link(owner, reported=reported(digits, "edge", 84.0), measured=measured)
    below = reproduction_link(owner, reported=reported(digits, "below", 83.96), measured=measured)
    assert on_the_edge.reproduced
    assert not below.reproduced and below.verdict == "not reproduced (Δ = −1.0)"


def test_the_submission_page_offers_the_form_to_its_submitter_only(client, owner, digits, measured, make_user):
    reported(digits, "ResNet-50, as reported", 85.6)
    url = measured.owner.submissions.get().get_absolute_url()
    client.force_login(owner)
    page = client.get(url)
    assertContains(page, 'class="reproduction-form"')
    assertContains(page, "ResNet-50, as reported: 85.6")
    assertContains(page, "Pixels + linear SVM (baseline): 90.0")      # the board's other reported number
    client.force_login(make_user("bob"))
    assertNotContains(client.get(url), 'class="reproduction-form"')  # a public submission, somebody else's


def test_only_the_submitter_staff_and_moderators_may_link(client, owner, digits, measured, make_user):
    paper = reported(digits, "ResNet-50, as reported", 85.6)
    client.force_login(make_user("mallory"))
    response = link(client, measured, paper, follow=True)
    assertContains(response, "Only the submitter of this evaluation, staff or a moderator can link it.")
    assert not Reproduction.objects.exists()

    moderator = make_user("mo")
    moderator.groups.add(Group.objects.get_or_create(name="moderators")[0])
    client.force_login(moderator)
    link(client, measured, paper)
    assert Reproduction.objects.get().linked_by == moderator

    client.logout()
    assert client.post("/reproductions/", {}).status_code == 302                       # to the log-in page
    assert Reproduction.objects.count() == 1


def test_the_form_needs_its_csrf_token(owner, digits, measured):
    paper = reported(digits, "ResNet-50, as reported", 85.6)
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    assert link(client, measured, paper).status_code == 403
    assert not Reproduction.objects.exists()


@pytest.mark.parametrize("case", ["other board", "no interval", "two measurements", "other metric", "twice",
                                  "private paper number"])
def test_a_link_that_cannot_compare_is_refused(owner, digits, measured, case):
    from leaderboard.registry.models import Dataset

    paper = reported(digits, "ResNet-50, as reported", 85.6)
    if case == "other board":
        other = Dataset.objects.create(slug="digits2", name="Digits again", task_family=digits.task_family,
                                       metric=digits.metric)
        paper = reported(other, "elsewhere", 85.6)
    elif case == "no interval":
        Result.objects.filter(pk=measured.pk).update(ci_low=None, ci_high=None)
        measured.refresh_from_db()
    elif case == "two measurements":
        paper = measure(owner, digits, 0.8, 0.79, 0.81, model_name="another")
    elif case == "other metric":
        Result.objects.filter(pk=paper.pk).update(metric_label="top-1 on a different split")
        paper.refresh_from_db()
    elif case == "twice":
        reproduction_link(owner, reported=paper, measured=measured)
    elif case == "private paper number":
        Result.objects.filter(pk=paper.pk).update(is_public=False)
        paper.refresh_from_db()
    with pytest.raises(ReproductionRefused):
        reproduction_link(owner, reported=paper, measured=measured)
    assert Reproduction.objects.count() == (1 if case == "twice" else 0)


def test_a_private_measurement_shows_on_no_board(client, make_user, digits):
    owner = make_user("ada")
    private = measure(owner, digits, 0.85, 0.84, 0.86, public=False)
    reproduction_link(owner, reported=reported(digits, "ResNet-50, as reported", 90.0), measured=private)
    assertNotContains(client.get("/datasets/digits/"), "reported-beside-measured")
    assert client.get(f"/models/{private.method_id}/").status_code == 404


def test_the_submitter_can_remove_a_link_and_the_cached_board_follows(client, owner, digits, measured):
    pair = reproduction_link(owner, reported=reported(digits, "ResNet-50, as reported", 90.0), measured=measured)
    assertContains(client.get("/datasets/digits/"), "not reproduced (Δ")           # kept for visitors now
    client.force_login(owner)
    assert client.post(f"/reproductions/{pair.pk}/delete/").status_code == 302
    assert not Reproduction.objects.exists()
    client.logout()
    assertNotContains(client.get("/datasets/digits/"), "not reproduced (Δ")        # the insights table is watched


def test_the_boards_protocol_filter_applies_to_the_pairs_and_the_chart(client, owner, digits, measured):
    reproduction_link(owner, reported=reported(digits, "ResNet-50, as reported", 90.0), measured=measured)
    assertContains(client.get("/datasets/digits/?protocol=svm"), "not reproduced (Δ = +5.0)")
    papers_only = client.get("/datasets/digits/?protocol=reported")
    assertNotContains(papers_only, "not reproduced (Δ")
    assertNotContains(papers_only, "ResNet-50 (torchvision)")        # not in the chart's data either


def test_the_submission_page_lists_no_pair_whose_paper_number_is_hidden(client, owner, digits, measured):
    from leaderboard.insights.selectors import submission_measurements

    shown = reproduction_link(owner, reported=reported(digits, "ResNet-50, as reported", 85.6), measured=measured)
    hidden = reproduction_link(owner, reported=reported(digits, "ResNet-50, withdrawn", 90.0), measured=measured)
    Result.objects.filter(pk=hidden.reported_id).update(is_public=False)
    submission = measured.owner.submissions.get()

    (linkable,) = submission_measurements(submission, owner)

    assert linkable.pairs == [shown]
    client.force_login(owner)
    page = client.get(f"/submissions/{submission.pk}/")
    assertContains(page, "ResNet-50, as reported")
    assertNotContains(page, "ResNet-50, withdrawn")
