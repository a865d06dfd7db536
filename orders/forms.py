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


class BulkCaseForm(forms.Form):
    action = forms.ChoiceField(
        choices=[("assign", "Assign"), ("acknowledge", "Acknowledge"), ("resolve", "Resolve")], label="Action"
    )
    note = forms.CharField(label="Resolution note", required=False, max_length=4000, strip=True)
    # "me", a user id, or empty to unassign.
    assignee = forms.CharField(label="Assign to", required=False, max_length=20)

    def clean(self):
        data = super().clean()
        if data.get("action") == "resolve" and not data.get("note"):
            self.add_error("note", "Resolving cases needs a resolution note.")
        assignee = data.get("assignee") or ""
        if assignee and assignee != "me" and not assignee.isdigit():
            self.add_error("assignee", "Choose a person from the list.")
        return data


class BulkHoldReleaseForm(forms.Form):
    kind = forms.ChoiceField(choices=[("", "Every hold"), *HoldKind.choices], required=False, label="Holds to release")
    reason = forms.CharField(label="Reason", max_length=2000, strip=True)


class ShipToForm(forms.Form):
    name = forms.CharField(label="Name", max_length=255, required=False)
    company = forms.CharField(label="Company", max_length=255, required=False)
    line1 = forms.CharField(label="Street", max_length=255, required=False)
    line2 = forms.CharField(label="Street, line 2", max_length=255, required=False)
    line3 = forms.CharField(label="Street, line 3", max_length=255, required=False)
    city = forms.CharField(label="City", max_length=128, required=False)
    region = forms.CharField(label="State / region", max_length=128, required=False)
    postal_code = forms.CharField(label="Postal code", max_length=32, required=False)
    country_code = forms.CharField(label="Country (2 letters)", max_length=2, required=False)
    phone = forms.CharField(label="Phone", max_length=64, required=False)
    email = forms.CharField(label="Email", max_length=254, required=False)
    reason = forms.CharField(label="Reason", max_length=2000, strip=True)


class ServiceLevelForm(forms.Form):
    shipping_method = forms.CharField(label="Service level", max_length=64, strip=True)
    reason = forms.CharField(label="Reason", max_length=2000, strip=True)
