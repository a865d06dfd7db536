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


class ReasonForm(forms.Form):
    reason = forms.CharField(label="Reason", max_length=2000, strip=True)


class CancelUnitsForm(forms.Form):
    """Units per order line come as ``line_<id>`` fields; ``whole_order`` cancels every open unit."""

    reason = forms.CharField(label="Reason", max_length=2000, strip=True)
    initiator = forms.ChoiceField(
        choices=[("seller", "Seller"), ("buyer", "Buyer"), ("marketplace", "Marketplace")], initial="seller"
    )
    whole_order = forms.BooleanField(required=False)

    def line_quantities(self, data) -> dict[int, int]:
        quantities: dict[int, int] = {}
        for key, value in data.items():
            if not key.startswith("line_"):
                continue
            line = key.removeprefix("line_")
            if not line.isdigit():
                continue
            value = (value or "").strip() or "0"
            if not value.isdigit():
                raise forms.ValidationError(f"units to cancel must be whole numbers (got {value!r})")
            if int(value):
                quantities[int(line)] = int(value)
        return quantities


class CaseFixForm(forms.Form):
    """One fix applied to the ticked (or all matching) cases of the exception queue: their orders rerouted
    (to a named node or the best one), backordered, or cancelled."""

    action = forms.ChoiceField(choices=[("reroute", "Reroute"), ("backorder", "Backorder"), ("cancel", "Cancel")])
    location = forms.ModelChoiceField(
        queryset=Location.objects.filter(is_active=True, can_ship=True), required=False, label="Reroute to node"
    )
    reason = forms.CharField(label="Reason", max_length=2000, strip=True)
