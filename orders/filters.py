"""One FilterSet per list, shared by the console view and the REST endpoint."""

from __future__ import annotations

import django_filters
from django import forms
from django.db.models import Exists, OuterRef, Q

from config.kernel import accounts
from orders.models import CaseStatus, ExceptionCase, ExceptionKind, Order, OrderLine, OrderStatus, Severity
from orders.search import order_search

DATETIME_INPUT = forms.DateTimeInput(attrs={"type": "datetime-local"})
YES_NO_ANY = forms.Select(choices=[("", "Any"), ("true", "Yes"), ("false", "No")])


def channel_kinds() -> list[tuple[str, str]]:
    """The channel account's kinds, read through the kernel's port so orders never imports channels."""
    return accounts.account_kinds()


class OrderFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="filter_search", label="Search")
    # One ``status IN (…)`` (the index on (account, status, ship_by) serves it with the channel and ship-by),
    # and no DISTINCT: a column of the order itself cannot repeat a row.
    status = django_filters.MultipleChoiceFilter(choices=OrderStatus.choices, method="filter_status")
    channel = django_filters.ChoiceFilter(method="filter_channel", choices=channel_kinds, label="Channel")
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

    # Set by filter_search: which search ran (trigram or prefix), shown on the page.
    search_info = None

    def filter_channel(self, queryset, name, value: str):
        # The accounts of that kind as a subquery: ``account_id IN (SELECT id …)``.
        return queryset.filter(account_id__in=accounts.account_ids(kind=value))

    def filter_search(self, queryset, name, value):
        queryset, self.search_info = order_search(queryset, value)
        return queryset

    def filter_status(self, queryset, name, value):
        return queryset.filter(status__in=value) if value else queryset


class ExceptionCaseFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="filter_search", label="Search")
    status = django_filters.ChoiceFilter(choices=CaseStatus.choices)
    kind = django_filters.ChoiceFilter(choices=ExceptionKind.choices)
    severity = django_filters.ChoiceFilter(choices=Severity.choices)
    mine = django_filters.BooleanFilter(method="filter_mine", label="Assigned to me", widget=YES_NO_ANY)
    unassigned = django_filters.BooleanFilter(field_name="owner", lookup_expr="isnull", widget=YES_NO_ANY)
    # The root cause of a group (exception_case_groups): one SKU, one account, one channel SKU.
    sku = django_filters.NumberFilter(field_name="sku_id", widget=forms.HiddenInput)
    account = django_filters.NumberFilter(field_name="account_id", widget=forms.HiddenInput)
    channel_sku = django_filters.CharFilter(method="filter_channel_sku", widget=forms.HiddenInput)
    order = django_filters.NumberFilter(field_name="order_id", widget=forms.HiddenInput)

    class Meta:
        model = ExceptionCase
        fields = ["q", "status", "kind", "severity"]

    def filter_search(self, queryset, name, value):
        value = value.strip().lstrip("#")
        if not value:
            return queryset
        if value.isdigit():
            return queryset.filter(Q(pk=int(value)) | Q(title__icontains=value))
        return queryset.filter(title__icontains=value)

    def filter_channel_sku(self, queryset, name, value):
        if not value:
            return queryset
        unmapped = OrderLine.objects.filter(order=OuterRef("order_id"), channel_sku=value, sku__isnull=True)
        return queryset.filter(Exists(unmapped))

    def filter_mine(self, queryset, name, value):
        if value and self.request is not None and self.request.user.is_authenticated:
            return queryset.filter(owner=self.request.user)
        return queryset
