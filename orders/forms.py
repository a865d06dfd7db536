from __future__ import annotations

from django import forms

from orders.models import HoldKind


class HoldPlaceForm(forms.Form):
    kind = forms.ChoiceField(choices=HoldKind.choices)
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=2000, strip=True)


class ReasonForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=2000, strip=True)


class ResolveCaseForm(forms.Form):
    note = forms.CharField(
        label="Resolution note", widget=forms.Textarea(attrs={"rows": 2}), max_length=4000, strip=True
    )
