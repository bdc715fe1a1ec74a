from django import forms

from leaderboard.registry.models import Result, TaskFamily


class SnapshotFilterForm(forms.Form):
    """The home page's filters (query parameters `family` and `kind`); blank means all."""

    family = forms.ModelChoiceField(
        queryset=TaskFamily.objects.all(), to_field_name="slug", required=False, empty_label="All task families"
    )
    kind = forms.ChoiceField(choices=[("", "All kinds")] + list(Result.Kind.choices), required=False)
