"""Results contributed from papers, and the history of every result.

A `Proposal` is a number a signed-in user read in a paper (benchmark, method, score, where in the paper,
the paper's protocol, the paper itself). It waits for a moderator, who accepts it (it becomes a public
registry `Result` with origin "reported", on the live board and in the next published version), rejects
it with a reason, or asks for changes (the contributor edits it and sends it again).

A `Revision` is one step in a result's life, with its author, time and reason: the 2014 page's rows start
with "KTH page, 2014"; a contributed result carries its proposal's steps (proposed, changes requested,
resubmitted, accepted). The result's page shows them in order.
"""
from datetime import UTC

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from leaderboard.registry.models import Dataset, Reference, Result

MODERATORS = "moderators"   # the staff group whose members review proposals (superusers review too)
SNAPSHOT_REASON = "KTH page, 2014"


class Proposal(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "waiting for review"
        CHANGES_REQUESTED = "changes", "changes requested"
        ACCEPTED = "accepted", "accepted"
        REJECTED = "rejected", "rejected"

    class PaperProtocol(models.TextChoices):
        """How the paper obtained its number: what a reader needs to compare it with Shelfmark's protocols."""

        SVM = "svm", "frozen features + SVM"
        KNN = "knn", "frozen features + k-NN"
        LINEAR_PROBE = "linear_probe", "frozen features + linear probe"
        FINE_TUNED = "fine_tuned", "fine-tuned on the benchmark"
        EXTRA_DATA = "extra_data", "extra training data"

    contributor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="proposals")
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="proposals")
    method_name = models.CharField(max_length=200)
    score = models.FloatField(help_text="as the paper prints it, in the benchmark's unit")
    kind = models.CharField(max_length=20, choices=Result.Kind.choices)
    paper_protocol = models.CharField(max_length=20, choices=PaperProtocol.choices)
    location = models.CharField(max_length=100, help_text='where in the paper the number stands, e.g. "Table 3"')
    note = models.CharField(max_length=500, blank=True)
    # The paper, normalised (papers.py): what the Reference is found or made from when the proposal is accepted.
    doi = models.CharField(max_length=200, blank=True, db_index=True)
    arxiv_id = models.CharField(max_length=40, blank=True, db_index=True)
    bibtex = models.TextField(blank=True, help_text="one entry, as parsed and written again")
    bibtex_key = models.CharField(max_length=100, blank=True)
    paper_title = models.CharField(max_length=500, blank=True)
    paper_year = models.CharField(max_length=16, blank=True)
    reference = models.ForeignKey(Reference, null=True, blank=True, on_delete=models.SET_NULL, related_name="proposals",
                                  help_text="the registry's reference for this paper, once known")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    review_reason = models.TextField(blank=True, help_text="the last moderator's reason or request")
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="reviewed_proposals")
    reviewed_at = models.DateTimeField(null=True, blank=True)
    result = models.OneToOneField(Result, null=True, blank=True, on_delete=models.SET_NULL, related_name="proposal")
    batch = models.CharField(max_length=32, blank=True, help_text="the CSV upload it came from")
    batch_row = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["contributor", "status"])]

    def __str__(self):
        return f"#{self.pk} {self.dataset.slug}: {self.method_name} = {self.score}"

    def get_absolute_url(self):
        return reverse("proposal-detail", args=[self.pk])

    @property
    def is_open(self) -> bool:
        """Still the contributor's to edit: waiting for review, or sent back for changes."""
        return self.status in (self.Status.PENDING, self.Status.CHANGES_REQUESTED)

    @property
    def version(self) -> str:
        """What the moderator's review form was opened on: any edit (a new revision, or any save) changes it,
        and a review sent from an older page is refused (services._open_for_review)."""
        last = self.revisions.order_by("-pk").values_list("pk", flat=True).first() or 0
        stamp = self.updated_at.astimezone(UTC).strftime("%Y%m%d%H%M%S%f") if self.updated_at else ""
        return f"{last}-{stamp}"

    @property
    def paper_label(self) -> str:
        if self.reference_id:
            return str(self.reference)
        return (self.bibtex_key or (f"doi:{self.doi}" if self.doi else "")
                or (f"arXiv:{self.arxiv_id}" if self.arxiv_id else ""))


def keep_proposal_history(collector, field, sub_objs, using):
    """Revision.result's on_delete: a deleted result's revisions that belong to a proposal stay (SET_NULL: the
    proposal keeps its history); those of nothing else (the 2014 page's, corrections) go with it (CASCADE), as
    a revision must be of something (revision_of_something)."""
    models.SET_NULL(collector, field, sub_objs.filter(proposal__isnull=False), using)
    models.CASCADE(collector, field, sub_objs.filter(proposal__isnull=True), using)


class Revision(models.Model):
    class Action(models.TextChoices):
        SNAPSHOT = "snapshot", "from the 2014 page"
        CORRECTED = "corrected", "corrected"
        PROPOSED = "proposed", "proposed"
        EDITED = "edited", "edited by its contributor"
        CHANGES_REQUESTED = "changes", "changes requested"
        RESUBMITTED = "resubmitted", "sent again for review"
        REJECTED = "rejected", "rejected"
        ACCEPTED = "accepted", "accepted"

    result = models.ForeignKey(Result, null=True, blank=True, on_delete=keep_proposal_history,
                               related_name="revisions")
    proposal = models.ForeignKey(Proposal, null=True, blank=True, on_delete=models.CASCADE, related_name="revisions")
    action = models.CharField(max_length=12, choices=Action.choices)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="+")
    author_name = models.CharField(max_length=150, blank=True, help_text="kept if the account goes")
    reason = models.TextField(blank=True)
    changes = models.JSONField(default=dict, blank=True, help_text='{"field": [before, after]}')
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [models.CheckConstraint(
            condition=models.Q(result__isnull=False) | models.Q(proposal__isnull=False), name="revision_of_something")]

    def __str__(self):
        return f"{self.get_action_display()} by {self.author_name or '—'}: {self.reason[:40]}"
