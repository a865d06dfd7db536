from __future__ import annotations

import uuid

from django import forms

from config.kernel.limits import INT32_MAX
from inventory.models import Location


class AdjustmentForm(forms.Form):
    location = forms.ModelChoiceField(queryset=Location.objects.order_by("code"), to_field_name="code")
    delta = forms.IntegerField(
        label="Change (+/- units)",
        help_text="Positive adds units, negative removes them",
        min_value=-INT32_MAX,
        max_value=INT32_MAX,
    )
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=2000, strip=True)
    reference = forms.CharField(max_length=128, required=False)
    # One key per rendered form: a double submit is a replay and changes nothing.
    idempotency_key = forms.CharField(widget=forms.HiddenInput, max_length=255)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.initial.setdefault("idempotency_key", f"console:{uuid.uuid4()}")

    def clean_delta(self) -> int:
        delta = self.cleaned_data["delta"]
        if delta == 0:
            raise forms.ValidationError("The change must not be zero.")
        return delta


class ReceiveForm(forms.Form):
    """One quantity field per inbound line (named line_<id>); blank or 0 receives nothing for it."""

    idempotency_key = forms.CharField(widget=forms.HiddenInput, max_length=255)

    def __init__(self, *args, lines=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.lines = list(lines)
        if not self.is_bound:
            self.initial.setdefault("idempotency_key", f"console:{uuid.uuid4()}")
        for line in self.lines:
            self.fields[f"line_{line.pk}"] = forms.IntegerField(
                min_value=0,
                max_value=INT32_MAX,
                required=False,
                label=f"{line.sku.code} (outstanding {line.quantity_outstanding})",
            )

    def line_fields(self):
        return [(line, self[f"line_{line.pk}"]) for line in self.lines]

    def clean(self):
        cleaned = super().clean()
        quantities = {line.pk: cleaned.get(f"line_{line.pk}") for line in self.lines if cleaned.get(f"line_{line.pk}")}
        if not quantities and not self.errors:
            raise forms.ValidationError("Enter a quantity received for at least one line.")
        cleaned["quantities"] = quantities
        return cleaned
