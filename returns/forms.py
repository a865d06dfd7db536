"""Console forms: parse and check input; the services decide and explain refusals."""

from __future__ import annotations

from django import forms

from channels.models import ChannelKind
from inventory.models import Location
from returns.models import Disposition, ExchangePolicy, ReturnReason

BUCKETS = [
    ("open", "Open"),
    ("awaiting_receipt", "Awaiting receipt"),
    ("awaiting_inspection", "Awaiting inspection"),
    ("overdue", "Overdue"),
    ("closed", "Closed"),
    ("all", "All"),
]


class QueueFilterForm(forms.Form):
    bucket = forms.ChoiceField(choices=BUCKETS, required=False)
    channel = forms.ChoiceField(choices=[("", "Any channel"), *ChannelKind.choices], required=False)
    q = forms.CharField(required=False, max_length=128, label="RMA, order or tracking")


class ReceiveForm(forms.Form):
    """One scan: the SKU or barcode, how many, and what becomes of them."""

    sku = forms.CharField(max_length=128, label="SKU or barcode")
    quantity = forms.IntegerField(min_value=1, max_value=100_000, initial=1)
    disposition = forms.ChoiceField(choices=Disposition.choices, initial=Disposition.RESTOCK)
    location = forms.ModelChoiceField(queryset=Location.objects.filter(is_active=True).order_by("code"))
    note = forms.CharField(max_length=2000, required=False)
    key = forms.CharField(max_length=255, widget=forms.HiddenInput)


class InspectForm(forms.Form):
    sku = forms.CharField(max_length=128, label="SKU or barcode")
    quantity = forms.IntegerField(min_value=1, max_value=100_000, initial=1)
    disposition = forms.ChoiceField(choices=[c for c in Disposition.choices if c[0] != Disposition.PENDING])
    key = forms.CharField(max_length=255, widget=forms.HiddenInput)


class RefundForm(forms.Form):
    shipping = forms.DecimalField(min_value=0, max_digits=12, decimal_places=2, initial=0, required=False)
    reason = forms.CharField(max_length=255)
    key = forms.CharField(max_length=255, widget=forms.HiddenInput)


class ExchangeForm(forms.Form):
    sku = forms.CharField(max_length=128, label="Replacement SKU")
    quantity = forms.IntegerField(min_value=1, max_value=1000, initial=1)
    unit_price = forms.DecimalField(min_value=0, max_digits=12, decimal_places=2, initial=0, label="Price difference")


class CloseForm(forms.Form):
    reason = forms.CharField(max_length=500, required=False)


class CreateRmaForm(forms.Form):
    reason = forms.ChoiceField(choices=ReturnReason.choices)
    customer_note = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False, max_length=4000)
    return_location = forms.ModelChoiceField(
        queryset=Location.objects.filter(is_active=True).order_by("code"), required=False
    )
    authorize = forms.BooleanField(required=False, initial=True, label="Authorize now")


class PolicyForm(forms.Form):
    exchange_policy = forms.ChoiceField(choices=ExchangePolicy.choices)
    overdue_after_days = forms.IntegerField(min_value=1, max_value=365)
