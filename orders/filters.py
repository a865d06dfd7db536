"""One FilterSet per list, shared by the console view and the REST endpoint."""

from __future__ import annotations

import django_filters
from django import forms
from django.db.models import Exists, OuterRef, Q

from orders.models import CaseStatus, ExceptionCase, ExceptionKind, Order, OrderLine, OrderStatus, Severity

DATETIME_INPUT = forms.DateTimeInput(attrs={"type": "datetime-local"})
YES_NO_ANY = forms.Select(choices=[("", "Any"), ("true", "Yes"), ("false", "No")])


def channel_kinds() -> list[tuple[str, str]]:
    """The channel account's kinds, read through the model so orders never imports channels."""
    return list(Order._meta.get_field("account").related_model._meta.get_field("kind").choices)


class OrderFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="filter_search", label="Search")
    status = django_filters.MultipleChoiceFilter(choices=OrderStatus.choices)
    channel = django_filters.ChoiceFilter(field_name="account__kind", choices=channel_kinds, label="Channel")
    account = django_filters.NumberFilter(field_name="account_id")
    ship_by_after = django_filters.IsoDateTimeFilter(
        field_name="ship_by", lookup_expr="gte", label="Ship by from", widget=DATETIME_INPUT
    )
    ship_by_before = django_filters.IsoDateTimeFilter(
        field_name="ship_by", lookup_expr="lt", label="Ship by before", widget=DATETIME_INPUT
    )
    on_hold = django_filters.BooleanFilter(widget=YES_NO_ANY)
    marketplace_fulfilled = django_filters.BooleanFilter(widget=YES_NO_ANY)

    class Meta:
        model = Order
        fields = ["q", "status", "channel", "account", "ship_by_after", "ship_by_before", "on_hold"]

    def filter_search(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        line_match = OrderLine.objects.filter(order=OuterRef("pk"), channel_sku=value)
        return queryset.filter(
            Q(external_id=value) | Q(external_reference=value) | Q(customer_name__icontains=value) | Exists(line_match)
        )


class ExceptionCaseFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=CaseStatus.choices)
    kind = django_filters.ChoiceFilter(choices=ExceptionKind.choices)
    severity = django_filters.ChoiceFilter(choices=Severity.choices)
    mine = django_filters.BooleanFilter(method="filter_mine", label="Assigned to me", widget=YES_NO_ANY)

    class Meta:
        model = ExceptionCase
        fields = ["status", "kind", "severity"]

    def filter_mine(self, queryset, name, value):
        if value and self.request is not None and self.request.user.is_authenticated:
            return queryset.filter(owner=self.request.user)
        return queryset
