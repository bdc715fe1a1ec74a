"""An accepted proposal joins the live board (reported, beside the 2014 rows), the next published version,
and the version diff, which names its contributor; the 2014 rows' history starts with "KTH page, 2014"."""
import pytest
import yaml
from contribution_helpers import SNAPSHOT_DIR
from django.urls import reverse
from pytest_django.asserts import assertContains

from leaderboard.boards.selectors import REPORTED, board_rows, version_diff
from leaderboard.boards.services import publish_version
from leaderboard.contributions import services
from leaderboard.contributions.forms import ProposalForm
from leaderboard.contributions.models import Revision
from leaderboard.registry.models import LeaderboardVersion, Result
from leaderboard.registry.snapshot import load_snapshot

pytestmark = pytest.mark.django_db


@pytest.fixture
def accepted(board, contributor, moderator, proposal_data):
    form = ProposalForm(proposal_data())
    assert form.is_valid(), form.errors
    return services.accept(services.propose(contributor, form.proposal_data()), moderator, "checked")


def test_the_accepted_result_is_on_the_live_board_as_reported(client, board, accepted):
    rows = board_rows(board.dataset)
    assert [(row.method.name, row.rank) for row in rows] == [("DINOv2 ViT-g/14 (frozen)", 1), ("CNN-SVM (OverFeat)", 2)]
    assert accepted in board_rows(board.dataset, protocol=REPORTED)
    page = client.get(board.dataset.get_absolute_url())
    assertContains(page, "DINOv2 ViT-g/14 (frozen)")
    assertContains(page, "reported by a paper")
    assertContains(page, "contributed by carol, reviewed by mona")
    api = client.get("/api/results/", {"dataset": "mit67"}).json()
    rows = api["results"] if isinstance(api, dict) else api
    row = next(r for r in rows if r["score"] == 88.1)
    assert row["protocol"] == "reported" and row["provenance"]["contributed_by"] == "carol"


def test_the_next_published_version_freezes_it_and_its_diff_names_the_contributor(client, board, accepted, moderator):
    client.force_login(moderator)
    response = client.post(reverse("leaderboard-publish", args=["mit67"]), {"note": "a paper's number"})
    version = LeaderboardVersion.objects.get(dataset=board.dataset, number=1)
    assert response["Location"] == version.get_absolute_url()
    entry = version.entries.get(result=accepted)
    assert (entry.rank, entry.origin, entry.provenance["contributed_by"], entry.reference_key) == (
        1, "reported", "carol", "Oquab2023")
    assertContains(client.get(version.get_absolute_url()), "DINOv2 ViT-g/14 (frozen)")

    diff = version_diff(LeaderboardVersion.objects.get(dataset=board.dataset, number=0), version)
    assert [e.method_name for e in diff.added] == ["DINOv2 ViT-g/14 (frozen)"] and diff.contributors == ["carol"]
    page = client.get(reverse("leaderboard-diff", args=["mit67"]), {"a": 0, "b": 1})
    assertContains(page, "Contributed by <strong>carol</strong>")
    assertContains(page, "contributed by carol")
    assertContains(page, f'href="/results/{accepted.pk}/"')

    result_page = client.get(reverse("result-detail", args=[accepted.pk]))
    assertContains(result_page, f'href="{version.get_absolute_url()}">v1</a> (#1)')


def test_a_diff_without_contributions_names_nobody(board):
    publish_version(board.dataset, note="nothing new")
    versions = list(LeaderboardVersion.objects.filter(dataset=board.dataset))
    assert version_diff(*versions).contributors == []


def test_the_snapshot_rows_start_with_the_kth_page(client):
    report = load_snapshot(SNAPSHOT_DIR)
    snapshot = Result.objects.filter(origin=Result.Origin.SNAPSHOT)
    assert report.created["revisions"] == snapshot.count() == 95
    first = Revision.objects.filter(action="snapshot")
    assert first.count() == 95 and set(first.values_list("reason", flat=True)) == {"KTH page, 2014"}
    assert load_snapshot(SNAPSHOT_DIR).changed_anything is False          # a reload adds none
    result = snapshot.get(dataset__slug="mit67", method__name="CNNaug-SVM (OverFeat)")
    page = client.get(reverse("result-detail", args=[result.pk]))
    for text in ("KTH page, 2014", "from the 2014 page", "Razavian2014", "@inproceedings{Razavian2014",
                 'href="/leaderboards/mit67/v0/">v0</a>', "From the 2014 KTH page"):
        assertContains(page, text)


def test_a_snapshot_row_corrected_in_the_files_gets_a_revision(snapshot_copy):
    load_snapshot(snapshot_copy)
    source = yaml.safe_load((snapshot_copy / "snapshot.yaml").read_text(encoding="utf-8"))
    row = next(r for r in source["results"] if r["dataset"] == "mit67" and r["method"] == "CNNaug-SVM (OverFeat)")
    row["score"] = 69.5
    (snapshot_copy / "snapshot.yaml").write_text(yaml.safe_dump(source, sort_keys=False), encoding="utf-8")

    load_snapshot(snapshot_copy)

    result = Result.objects.get(dataset__slug="mit67", method__name="CNNaug-SVM (OverFeat)")
    assert [(r.action, r.changes) for r in result.revisions.all()] == [
        ("snapshot", {}), ("corrected", {"score": [69.0, 69.5]})]


def test_rows_loaded_before_histories_existed_get_their_first_revision(db):
    load_snapshot(SNAPSHOT_DIR)
    Revision.objects.all().delete()            # as in a database loaded before this feature
    report = load_snapshot(SNAPSHOT_DIR)
    assert report.created == {"revisions": 95}
    assert not Result.objects.filter(origin="snapshot", revisions__isnull=True).exists()


def test_deleting_a_result_keeps_its_proposals_history(board, accepted):
    proposal = accepted.proposal
    steps = list(Revision.objects.filter(proposal=proposal).values_list("action", flat=True))
    assert steps == ["proposed", "accepted"]
    snapshot_step = Revision.objects.create(result=board.cnn_svm, action=Revision.Action.SNAPSHOT,
                                            reason="KTH page, 2014")

    accepted.delete()

    proposal.refresh_from_db()
    kept = Revision.objects.filter(proposal=proposal)
    assert list(kept.values_list("action", flat=True)) == steps        # kept, no longer of a result
    assert set(kept.values_list("result", flat=True)) == {None}
    assert (proposal.status, proposal.result) == ("accepted", None)
    # A revision of the result alone (no proposal to keep it for) goes with its result: a revision is of something.
    board.cnn_svm.delete()
    assert not Revision.objects.filter(pk=snapshot_step.pk).exists()


def test_a_reviewed_proposal_is_read_only_in_the_admin(client, board, accepted, contributor, django_user_model,
                                                       proposal_data):
    root = django_user_model.objects.create_superuser("root", password="a-long-test-password")
    client.force_login(root)
    proposal = accepted.proposal
    change = reverse("admin:contributions_proposal_change", args=[proposal.pk])
    page = client.get(change)
    assert page.status_code == 200 and b'name="_save"' not in page.content      # shown, not editable
    assert client.post(change, {"method_name": "Changed", "score": "1"}).status_code == 403
    assert client.get(reverse("admin:contributions_proposal_delete", args=[proposal.pk])).status_code == 403
    proposal.refresh_from_db()
    assert proposal.method_name == "DINOv2 ViT-g/14 (frozen)"
    # An open one is still the admins' to correct.
    form = ProposalForm(proposal_data(method_name="Still open"))
    assert form.is_valid(), form.errors
    pending = services.propose(contributor, form.proposal_data())
    assert b'name="_save"' in client.get(reverse("admin:contributions_proposal_change", args=[pending.pk])).content
