from __future__ import annotations

from django import forms

from inventory.models import Location


class RerouteForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=2000, strip=True)
    location = forms.ModelChoiceField(
        queryset=Location.objects.filter(is_active=True).order_by("code"),
        required=False,
        empty_label="Best node under the current rules",
        label="Force node",
    )


class SimulatorForm(forms.Form):
    days = forms.IntegerField(min_value=1, max_value=90, initial=7)
