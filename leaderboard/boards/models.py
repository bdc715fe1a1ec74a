"""What the boards remember between page views: whether two measured results can be told apart.

A paired bootstrap over two results' test units (workers/confidence.py) costs seconds on large test
sets, and its answer never changes for the same two results, so it is computed once and kept.
"""
from django.db import models

from leaderboard.registry.models import Result


class PairedComparison(models.Model):
    """The paired-bootstrap verdict on two results scored on the same test units."""

    first = models.ForeignKey(Result, on_delete=models.CASCADE, related_name="+")
    second = models.ForeignKey(Result, on_delete=models.CASCADE, related_name="+")
    separable = models.BooleanField(null=True, help_text="None: not scored on the same test units")
    computed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["first", "second"], name="one_comparison_per_pair")]

    def __str__(self):
        return f"{self.first_id} vs {self.second_id}: {self.separable}"
