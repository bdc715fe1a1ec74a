"""The one form of the insights: a paper's reported number put beside a measurement."""
from django import forms

from .services import NOTE_MAX


class ReproductionForm(forms.Form):
    measured = forms.IntegerField(min_value=1, max_value=2**62, widget=forms.HiddenInput)
    reported = forms.IntegerField(min_value=1, max_value=2**62, label="the paper's reported number")
    note = forms.CharField(max_length=NOTE_MAX, required=False, strip=True,
                           label="why they are the same model (optional)")
    next = forms.CharField(max_length=500, required=False, widget=forms.HiddenInput)
