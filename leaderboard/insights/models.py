"""A paper's reported number linked to Shelfmark's own measurement of the same model on the same benchmark.

Both scores are in the metric's unit on the board (the worker scales the engine's fraction by
`metric.engine_scale` before storing, interval included), so they compare directly. The verdict is read
from the rows each time: a corrected reported number, or a re-measured one, changes it at once.
"""
from django.conf import settings
from django.db import models

from leaderboard.registry.models import Result

# Float noise of the engine's fraction times 100 must not turn a number on the interval's edge into a miss.
EDGE = 1e-9


class Reproduction(models.Model):
    """A reported Result beside an evaluated one, linked by the evaluation's submitter or a moderator."""

    reported = models.ForeignKey(Result, on_delete=models.CASCADE, related_name="reproductions_as_reported")
    measured = models.ForeignKey(Result, on_delete=models.CASCADE, related_name="reproductions_as_measured")
    linked_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+")
    note = models.CharField(max_length=300, blank=True, help_text="why these two are the same model")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["reported", "measured"], name="one_reproduction_per_pair"),
            models.CheckConstraint(condition=~models.Q(reported=models.F("measured")),
                                   name="reproduction_of_another_result"),
        ]

    def __str__(self):
        return f"{self.reported_id} reported vs {self.measured_id} measured"

    @property
    def delta(self) -> float:
        """Reported minus measured, in the board's unit: > 0 when the paper reports more than Shelfmark measured."""
        return self.reported.score - self.measured.score

    @property
    def reproduced(self) -> bool:
        """Whether the reported number lies inside the measurement's 95% bootstrap interval."""
        low, high = self.measured.ci_low, self.measured.ci_high
        return low is not None and high is not None and low - EDGE <= self.reported.score <= high + EDGE

    @property
    def delta_text(self) -> str:
        """"+2.3" or "−0.8" (a true minus sign); two decimals when one would read as zero."""
        text = f"{self.delta:+.2f}" if abs(self.delta) < 0.05 else f"{self.delta:+.1f}"
        return text.replace("-", "−")

    @property
    def verdict(self) -> str:
        return "reproduced" if self.reproduced else f"not reproduced (Δ = {self.delta_text})"
