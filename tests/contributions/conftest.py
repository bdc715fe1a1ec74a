"""Contributions: a small MIT67 board with a known paper on it, a contributor and a moderator."""
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from contribution_helpers import DINO_BIB, RAZAVIAN_BIB, SNAPSHOT_DIR
from django.contrib.auth.models import Group


@pytest.fixture
def board(db):
    """MIT67 with one row of the 2014 page (Razavian et al.'s, a known reference) and version 0 published."""
    from leaderboard.boards.services import publish_version
    from leaderboard.registry.models import Dataset, Method, Metric, Reference, Result, TaskFamily

    family = TaskFamily.objects.create(slug="scene_recognition", name="Scene recognition", order=1)
    metric = Metric.objects.create(code="mean_class_accuracy", name="mean class accuracy", unit="%")
    mit67 = Dataset.objects.create(slug="mit67", name="MIT Indoor 67", task_family=family, metric=metric,
                                   engine_benchmark="mit67")
    razavian = Reference.objects.create(
        key="Razavian2014", page_key="[1]", entry_type="inproceedings", title="CNN Features off-the-shelf: an "
        "Astounding Baseline for Recognition", year="2014", bibtex=RAZAVIAN_BIB,
        fields={"doi": "10.1109/CVPRW.2014.131", "eprint": "1403.6382", "archiveprefix": "arXiv",
                "title": "{CNN} Features off-the-shelf: an Astounding Baseline for Recognition", "year": "2014"})
    cnn_svm = Result.objects.create(dataset=mit67, method=Method.objects.create(name="CNN-SVM (OverFeat)",
                                                                                reference=razavian),
                                    score=58.4, metric=metric, kind=Result.Kind.OFF_THE_SHELF, reference=razavian,
                                    origin=Result.Origin.SNAPSHOT, source="Table 2")
    publish_version(mit67, note="the 2014 KTH snapshot", number=0)
    return SimpleNamespace(dataset=mit67, metric=metric, razavian=razavian, cnn_svm=cnn_svm)


@pytest.fixture
def contributor(make_user):
    return make_user("carol")


@pytest.fixture
def moderator(make_user):
    user = make_user("mona", staff=True)
    user.groups.add(Group.objects.get(name="moderators"))   # the group the data migration creates
    return user


@pytest.fixture
def proposal_data():
    """The form's fields for DINOv2 on MIT67 from its BibTeX (a paper the registry does not know yet)."""
    def data(**changes):
        return {"dataset": "mit67", "method_name": "DINOv2 ViT-g/14 (frozen)", "score": "88.1",
                "kind": "off_the_shelf", "paper_protocol": "linear_probe", "location": "Table 10",
                "paper": "", "bibtex": DINO_BIB, "paper_title": "", "note": "", **changes}

    return data


@pytest.fixture
def snapshot_copy(tmp_path) -> Path:
    """A writable copy of fixtures/snapshot, to correct a number in."""
    target = tmp_path / "snapshot"
    shutil.copytree(SNAPSHOT_DIR, target)
    return target


@pytest.fixture
def proposal(board, contributor, proposal_data):
    """One proposal through the form's own cleaning, waiting for review."""
    from leaderboard.contributions import services
    from leaderboard.contributions.forms import ProposalForm

    form = ProposalForm(proposal_data())
    assert form.is_valid(), form.errors
    return services.propose(contributor, form.proposal_data())
